"""A subset of a V2 checkpoint written by copying its tensors' extents.

Every tensor (or slice of a partitioned variable) of a V2 bundle is one
contiguous extent of a data shard, and the index records its offset, size
and crc32c. A subset is therefore those extents copied, in shard order, into
one new data shard, plus a new index whose entries are the old ones with new
offsets: nothing is decoded, no TensorFlow op runs, the crc32c values stay,
and memory does not grow with the tensors' size. On a local filesystem the
kernel copies (`copy_file_range`, else `sendfile`); elsewhere a bounded
buffer goes through `tf.io.gfile`.

`plan` says when this cannot be done (a slice the graph reads that the
checkpoint does not store as such, an unreadable index); the caller then
streams the subset through TensorFlow ops instead.
"""

import dataclasses
import errno
import os
from typing import Callable, Dict, List, Tuple

import tensorflow as tf

from multimode_export import _filesystem as filesystem
from multimode_export.graph import _saver_spec as saver_spec
from multimode_export.variables import _bundle_index as bundle_index

_KERNEL_CHUNK = 64 << 20
DEFAULT_BUFFER_BYTES = 16 << 20


class UnsupportedSubsetError(Exception):
  """The subset cannot be written by extent copy; the message says why."""


@dataclasses.dataclass(frozen=True)
class CopyRun:
  """Contiguous bytes of one source shard that go to one output offset."""
  shard_id: int
  offset: int
  size: int
  target_offset: int


@dataclasses.dataclass(frozen=True)
class SubsetPlan:
  """What to copy and the index to write.

  Attributes:
    header: the new bundle's header (one shard).
    entries: key -> entry with its offset in the new data shard.
    runs: the copies, in source order (shard, offset), contiguous extents
      merged.
    bytes: tensor bytes copied.
    source_shards: the number of data shards of the source bundle.
  """
  header: bundle_index.Header
  entries: Dict[bytes, bundle_index.Entry]
  runs: Tuple[CopyRun, ...]
  bytes: int
  source_shards: int


def _slice_entries(entries) -> Dict[str, List[bytes]]:
  by_name: Dict[str, List[bytes]] = {}
  for key in entries:
    name = bundle_index.slice_name(key)
    if name is not None:
      by_name.setdefault(name, []).append(key)
  return by_name


def _needed_keys(name: str, spec: saver_spec.VariableSpec, entries,
                 slice_keys: Dict[str, List[bytes]]) -> List[bytes]:
  """The index keys `spec` reads: its own, and its slices' if partitioned."""
  key = name.encode('utf-8')
  entry = entries.get(key)
  if entry is None:
    raise UnsupportedSubsetError(f'{name!r} has no entry of its own')
  shape = [d.size for d in entry.shape.dim]
  stored = sorted(bundle_index.slice_bounds(shape, s) for s in entry.slices)
  # SaveV2 stores a slice covering the whole variable as a whole tensor.
  whole = tuple((0, d) for d in shape)
  read = sorted(bundle_index.spec_bounds(s)[1] if s else whole
                for s in spec.slices)
  if not stored and read == [whole]:
    return [key]
  if stored != read:
    how = f'as slices {stored}' if stored else 'whole'
    raise UnsupportedSubsetError(
        f'{name!r} is read as slices {list(spec.slices)} but stored {how}')
  keys = slice_keys.get(name, [])
  if len(keys) != len(stored):
    raise UnsupportedSubsetError(
        f'{name!r}: the index has {len(keys)} slice entries for '
        f'{len(stored)} slices')
  return [key] + keys


def plan(index_path: str,
         needed: Dict[str, saver_spec.VariableSpec]) -> SubsetPlan:
  """Plans the copy of `needed`'s entries out of the bundle at `index_path`.

  Raises:
    UnsupportedSubsetError: extent copy cannot write this subset.
  """
  try:
    header, entries = bundle_index.read(index_path)
  except (bundle_index.IndexFormatError, tf.errors.OpError) as e:
    raise UnsupportedSubsetError(f'index {index_path!r}: {e}') from e
  slice_keys = _slice_entries(entries)
  keys = []
  for name in sorted(needed):
    keys.extend(_needed_keys(name, needed[name], entries, slice_keys))
  order = sorted(keys, key=lambda k: (entries[k].shard_id, entries[k].offset))
  new_entries, runs, position = {}, [], 0
  for key in order:
    entry = bundle_index.Entry()
    entry.CopyFrom(entries[key])
    if entry.size:
      last = runs[-1] if runs else None
      if (last and last.shard_id == entry.shard_id and
          last.offset + last.size == entry.offset):
        runs[-1] = dataclasses.replace(last, size=last.size + entry.size)
      else:
        runs.append(CopyRun(entry.shard_id, entry.offset, entry.size, position))
      entry.offset = position
      position += entry.size
    entry.shard_id = 0
    new_entries[key] = entry
  new_header = bundle_index.Header()
  new_header.CopyFrom(header)
  new_header.num_shards = 1
  return SubsetPlan(new_header, new_entries, tuple(runs), position,
                    header.num_shards)


def copy_range_local(source_fd: int, target_fd: int, offset: int,
                     target_offset: int, size: int,
                     progress: Callable[[int], None]) -> None:
  """Copies `size` bytes inside the kernel, as `cp` does.

  `copy_file_range`, falling back to `sendfile` (which writes at the target's
  file position) where the kernel or filesystem refuses it. A read/write
  loop through Python buffers was several times slower than `cp`.
  """
  copy_range = getattr(os, 'copy_file_range', None)
  done = 0
  while done < size:
    count = min(_KERNEL_CHUNK, size - done)
    sent = 0
    if copy_range is not None:
      try:
        sent = copy_range(source_fd, target_fd, count, offset + done,
                          target_offset + done)
      except OSError:  # EXDEV on older kernels, ENOSYS, EINVAL...
        copy_range = None
    if copy_range is None:
      os.lseek(target_fd, target_offset + done, os.SEEK_SET)
      sent = os.sendfile(target_fd, source_fd, offset + done, count)
    if sent == 0:
      raise OSError(errno.EIO, f'source ended at byte {offset + done}, '
                    f'{size - done} bytes short')
    done += sent
    progress(sent)


def _shard_path(prefix: str, shard_id: int, num_shards: int) -> str:
  return f'{prefix}.data-{shard_id:05d}-of-{num_shards:05d}'


def _copy_local(source_prefix: str, num_shards: int, runs, target: str,
                progress: Callable[[int], None]) -> None:
  sources = {}
  try:
    with open(target, 'xb') as out:
      for run in runs:
        if run.shard_id not in sources:
          sources[run.shard_id] = open(  # pylint: disable=consider-using-with
              _shard_path(source_prefix, run.shard_id, num_shards), 'rb')
        copy_range_local(sources[run.shard_id].fileno(), out.fileno(),
                         run.offset, run.target_offset, run.size, progress)
  finally:
    for f in sources.values():
      f.close()


def _copy_gfile(source_prefix: str, num_shards: int, runs, target: str,
                buffer_bytes: int, progress: Callable[[int], None]) -> None:
  with tf.io.gfile.GFile(target, 'wb') as out:
    source, source_id = None, None
    try:
      for run in runs:
        if run.shard_id != source_id:
          if source is not None:
            source.close()
          source_id = run.shard_id
          source = tf.io.gfile.GFile(
              _shard_path(source_prefix, run.shard_id, num_shards), 'rb')
        source.seek(run.offset)
        left = run.size
        while left:
          chunk = source.read(min(buffer_bytes, left))
          if not chunk:
            raise OSError(errno.EIO, f'shard {run.shard_id} of '
                          f'{source_prefix} ended {left} bytes early')
          out.write(chunk)
          left -= len(chunk)
          progress(len(chunk))
    finally:
      if source is not None:
        source.close()


def write_subset(source_prefix: str, subset: SubsetPlan, target_prefix: str,
                 *, buffer_bytes: int = DEFAULT_BUFFER_BYTES,
                 progress: Callable[[int], None] = lambda n: None) -> None:
  """Writes `target_prefix`.{data-00000-of-00001,index} from a `plan`.

  Args:
    source_prefix: the checkpoint the plan was made from.
    subset: the plan.
    target_prefix: the new bundle's prefix; its files must not exist.
    buffer_bytes: the read size where the kernel cannot copy (other
      filesystems): the memory this uses.
    progress: called with the number of bytes after each copied piece.
  """
  num_shards = subset.source_shards
  data = _shard_path(target_prefix, 0, 1)
  local = (filesystem.is_local(source_prefix) and
           filesystem.is_local(target_prefix))
  if local:
    _copy_local(filesystem.local_path(source_prefix), num_shards, subset.runs,
                filesystem.local_path(data), progress)
  else:
    _copy_gfile(source_prefix, num_shards, subset.runs, data, buffer_bytes,
                progress)
  bundle_index.write(target_prefix + '.index', subset.header, subset.entries)
