"""Producing a SavedModel's `variables/` straight from checkpoint files.

Four ways, chosen by `write_variables`:

* link: the checkpoint holds exactly the keys the export needs, so its index
  and data shards become `variables/variables.*` as they are. On a local
  filesystem each data shard is reflinked (copy-on-write, where the
  filesystem supports it), else hard-linked, else copied; the index (small:
  metadata only) is reflinked or copied, never hard-linked. A hard link is
  safe for data shards: TensorFlow writes every data shard under a temporary
  name and renames it into place, which leaves a linked inode alone, and
  deleting the checkpoint only drops one of the names. It is not safe for
  the index: a sharded Saver (the Estimator's) saving again to the same
  prefix rewrites `<prefix>.index` in place (MergeV2Checkpoints opens it
  with truncation). On other filesystems (`gs://`, `s3://`, `ram://`...)
  the files are copied in chunks.
* extent_copy: the checkpoint holds more than needed (optimizer slots in a
  PREDICT-only export): the needed entries' bytes are copied into a new data
  shard and a new index is written (`extent_copy`); nothing is decoded.
* stream: the fallback when a graph reads a variable in other slices than
  the checkpoint stores: only the needed entries are read, a bounded chunk
  at a time, written as small bundles and merged into one.
* session: the graph's saver cannot be read from the graph (a V1-format or
  exotic custom saver) or the checkpoint is V1: the values go through a
  Session restore/save, as in the stock export.

No path loads a value only to check it; what is needed is checked from
metadata beforehand (`checkpoint.check_mode_variables`).
"""

import errno
import fcntl
import os
import time
from typing import Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from multimode_export import _filesystem as filesystem
from multimode_export import _tf_private
from multimode_export import errors
from multimode_export.graph import _saver_spec as saver_spec
from multimode_export.variables import _checkpoint as checkpoint_lib
from multimode_export.variables import _extent_copy as extent_copy

VARIABLES_PREFIX = 'variables'  # variables/variables.{index,data-*}
_FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int)
_COPY_CHUNK = 64 << 20
DEFAULT_CHUNK_BYTES = 256 << 20


class _Progress:
  """Logs `done / total` bytes at most every few seconds."""

  def __init__(self, what: str, total: int, every_seconds: float = 5.0):
    self._what, self._total, self._every = what, total, every_seconds
    self._done, self._last = 0, time.monotonic()

  def add(self, n: int) -> None:
    self._done += n
    now = time.monotonic()
    if now - self._last >= self._every or self._done >= self._total:
      self._last = now
      logging.info('%s: %d / %d bytes (%.0f%%)', self._what, self._done,
                   self._total, 100.0 * self._done / max(self._total, 1))


def _target_name(source: str, prefix: str) -> str:
  return VARIABLES_PREFIX + source[len(prefix):]


def _reflink(src: str, dst: str) -> None:
  with open(src, 'rb') as fin, open(dst, 'xb') as fout:
    try:
      fcntl.ioctl(fout.fileno(), _FICLONE, fin.fileno())
    except OSError:
      fout.close()
      os.unlink(dst)
      raise


def _copy_local(src: str, dst: str, progress: _Progress) -> None:
  with open(src, 'rb') as fin, open(dst, 'xb') as fout:
    extent_copy.copy_range_local(fin.fileno(), fout.fileno(), 0, 0,
                                 os.fstat(fin.fileno()).st_size, progress.add)


def _copy(src: str, dst: str, size: int, progress: _Progress) -> None:
  """Copies through the filesystem: server-side within one object store
  (S3 CopyObject, GCS rewrite), streamed by TensorFlow otherwise.

  `dst` is in a new staging directory, so nothing there can be overwritten:
  no existence check (two requests per file on S3). The copy is checked
  when the written bundle is read back.
  """
  tf.io.gfile.copy(src, dst, overwrite=True)
  progress.add(size)


def link_or_copy_file(src: str, dst: str, size: int, *, local: bool,
                      allow_links: bool, may_hard_link: bool = True,
                      progress: Optional[_Progress] = None) -> str:
  """Puts `src`'s bytes at the new path `dst`; returns how: 'reflink',
  'hardlink' or 'copy'.

  Args:
    src: an existing file.
    dst: a path in a new staging directory (nothing there to overwrite).
    size: `src`'s size in bytes (for progress).
    local: whether both paths are on local filesystems.
    allow_links: whether a local file may be reflinked or hard-linked.
    may_hard_link: False for a file that its writer may rewrite in place
      (a checkpoint's index): a reflink or a copy only.
    progress: counts the bytes copied.
  """
  progress = progress or _Progress(f'copying {src}', size)
  if local:
    src, dst = filesystem.local_path(src), filesystem.local_path(dst)
  if local and allow_links:
    try:
      _reflink(src, dst)
      return 'reflink'
    except OSError:
      pass
    if may_hard_link:
      try:
        os.link(src, dst)
        return 'hardlink'
      except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK,
                           errno.ENOTSUP, errno.EACCES):
          raise
  if local:
    _copy_local(src, dst, progress)
  else:
    _copy(src, dst, size, progress)
  return 'copy'


def weakest_method(methods: List[str]) -> str:
  """The method describing a transfer made of `methods` ('copy' if none)."""
  for method in ('copy', 'hardlink', 'reflink'):
    if method in methods:
      return method
  return 'copy'


def link_or_copy_bundle(checkpoint: checkpoint_lib.CheckpointInfo,
                        variables_dir: str, allow_links: bool = True
                        ) -> Tuple[str, int]:
  """Puts the checkpoint's own files in `variables_dir` under the SavedModel's
  names. Returns the method used for the data shards ('reflink',
  'hardlink' or 'copy'; the weakest if they differ) and the bytes of the
  files (each file's size read once: a request on a remote checkpoint)."""
  sizes = {f: tf.io.gfile.stat(f).length for f in checkpoint.files}
  total = sum(sizes.values())
  progress = _Progress(f'copying checkpoint {checkpoint.prefix}', total)
  local = filesystem.is_local(variables_dir) and filesystem.is_local(
      checkpoint.prefix)
  methods = []
  for src, size in sizes.items():
    dst = filesystem.join(variables_dir, _target_name(src, checkpoint.prefix))
    # The index may be rewritten in place by a later save to the same prefix.
    is_index = src.endswith('.index')
    method = link_or_copy_file(src, dst, size, local=local,
                               allow_links=allow_links,
                               may_hard_link=not is_index, progress=progress)
    if not is_index:
      methods.append(method)
  return weakest_method(methods), total


def _entry_bytes(spec: saver_spec.VariableSpec, slice_spec: str,
                 shape: Tuple[int, ...]) -> int:
  dims = shape
  if slice_spec:
    # "<full dims> <extent>:<extent>...", an extent "start,length" or "-"
    # for the whole dimension.
    dims = []
    extents = slice_spec.split(' ')[-1].split(':')
    for full, extent in zip(shape, extents):
      dims.append(full if extent == '-' else int(extent.split(',')[1]))
  dtype = tf.as_dtype(spec.dtype)
  item = dtype.size if dtype != tf.string else 64
  return int(np.prod(dims, dtype=np.int64)) * item


def _plan_chunks(needed: Dict[str, saver_spec.VariableSpec],
                 checkpoint: checkpoint_lib.CheckpointInfo,
                 chunk_bytes: int) -> List[List[Tuple[str, str, str, int]]]:
  """Groups (key, slice, dtype, bytes) entries into chunks of bounded size."""
  chunks, current, current_bytes = [], [], 0
  for name in sorted(needed):
    spec = needed[name]
    for slice_spec in spec.slices:
      size = _entry_bytes(spec, slice_spec, checkpoint.variables[name][1])
      if current and current_bytes + size > chunk_bytes:
        chunks.append(current)
        current, current_bytes = [], 0
      current.append((name, slice_spec, spec.dtype, size))
      current_bytes += size
  if current:
    chunks.append(current)
  return chunks


def stream_subset(checkpoint: checkpoint_lib.CheckpointInfo,
                  needed: Dict[str, saver_spec.VariableSpec],
                  variables_dir: str,
                  chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                  constants: Optional[Dict[str, np.ndarray]] = None) -> int:
  """Writes only `needed` entries of the checkpoint as one bundle.

  Reads at most `chunk_bytes` of tensors at a time (a single larger entry is
  read alone), writes each chunk as a bundle and merges the bundles.
  Partitioned variables are read and written slice by slice. `constants`
  (key -> value) are written as given, not read from the checkpoint.

  Returns:
    The number of tensor bytes written.
  """
  chunks = _plan_chunks(needed, checkpoint, chunk_bytes)
  total = sum(e[3] for chunk in chunks for e in chunk)
  logging.info('streaming %d bytes of %s in %d chunk(s) of at most %d bytes',
               total, checkpoint.prefix, len(chunks), chunk_bytes)
  progress = _Progress(f'writing {len(needed)} variables of '
                       f'{checkpoint.prefix}', total)
  parts_dir = filesystem.join(variables_dir, '.parts')
  filesystem.makedirs(parts_dir)
  prefixes = []
  with _tf_private.eager_mode():
    for i, chunk in enumerate(chunks):
      names = [e[0] for e in chunk]
      slices = [e[1] for e in chunk]
      dtypes = [tf.as_dtype(e[2]) for e in chunk]
      try:
        tensors = tf.raw_ops.RestoreV2(
            prefix=checkpoint.prefix, tensor_names=names,
            shape_and_slices=slices, dtypes=dtypes)
      except tf.errors.OpError as e:
        # The checkpoint's bytes are at fault (e.g. a crc32c mismatch), not
        # the export being written.
        raise errors.CheckpointReadError(
            checkpoint.prefix, f'reading {", ".join(names[:5])}'
            f'{" ..." if len(names) > 5 else ""}: {e.message}') from e
      part = filesystem.join(parts_dir, f'part-{i:05d}')
      tf.raw_ops.SaveV2(prefix=part, tensor_names=names,
                        shape_and_slices=slices, tensors=tensors)
      del tensors
      prefixes.append(part)
      progress.add(sum(e[3] for e in chunk))
    if constants:
      part = filesystem.join(parts_dir, 'constants')
      names = sorted(constants)
      tf.raw_ops.SaveV2(prefix=part, tensor_names=names,
                        shape_and_slices=[''] * len(names),
                        tensors=[tf.constant(constants[n]) for n in names])
      prefixes.append(part)
    tf.raw_ops.MergeV2Checkpoints(
        checkpoint_prefixes=prefixes,
        destination_prefix=filesystem.join(variables_dir, VARIABLES_PREFIX),
        delete_old_dirs=False)
  filesystem.rmtree_if_present(parts_dir)  # gone on S3 with the merged parts
  return total


def save_with_session(graph: tf.Graph, saver: tf.compat.v1.train.Saver,
                      checkpoint_prefix: str, variables_dir: str,
                      session_config: Optional[tf.compat.v1.ConfigProto] = None
                     ) -> None:
  """The fallback: restore into a Session and save through the graph's saver."""
  with tf.compat.v1.Session(graph=graph, config=session_config) as session:
    saver.restore(session, checkpoint_prefix)
    saver.save(session, filesystem.join(variables_dir, VARIABLES_PREFIX),
               write_meta_graph=False, write_state=False)


def _holds_constants(checkpoint: checkpoint_lib.CheckpointInfo,
                     constants: Dict[str, np.ndarray]) -> bool:
  """Whether the checkpoint already holds these values (small: object graph)."""
  if not constants:
    return True
  reader = tf.train.load_checkpoint(checkpoint.prefix)
  return all(np.array_equal(reader.get_tensor(k), v)
             for k, v in constants.items())


def write_variables(checkpoint: checkpoint_lib.CheckpointInfo,
                    needed: Dict[str, saver_spec.VariableSpec],
                    variables_dir: str, *, allow_links: bool = True,
                    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                    constants: Optional[Dict[str, np.ndarray]] = None
                   ) -> None:
  """Writes `variables_dir/variables.*` holding exactly `needed` entries.

  Args:
    checkpoint: the source checkpoint (V2 format).
    needed: the entries every exported graph restores, already checked
      against the checkpoint's metadata.
    variables_dir: an existing, empty directory.
    allow_links: whether local files may be reflinked or hard-linked.
    chunk_bytes: memory bound of the streamed path.
    constants: entries to write with the given values (the carrier saver's
      `saver_spec.saved_constants`).
  """
  constants = constants or {}
  keys = tuple(sorted(set(needed) | set(constants)))
  if (set(keys) == set(checkpoint.variables) and
      _holds_constants(checkpoint, constants)):
    method, size = link_or_copy_bundle(checkpoint, variables_dir, allow_links)
  else:
    method, size = _write_subset(checkpoint, needed, variables_dir,
                                 chunk_bytes, constants)
  logging.info('variables/ written by %s: %d keys, %d bytes', method,
               len(keys), size)


def _write_subset(checkpoint: checkpoint_lib.CheckpointInfo,
                  needed: Dict[str, saver_spec.VariableSpec],
                  variables_dir: str, chunk_bytes: int,
                  constants: Dict[str, np.ndarray]) -> Tuple[str, int]:
  """Writes a subset by extent copy, else streams it; returns (method, bytes)."""
  try:
    if not _holds_constants(checkpoint, constants):
      raise extent_copy.UnsupportedSubsetError(
          'the saver writes constants the checkpoint does not hold: '
          f'{", ".join(sorted(constants))}')
    copied = dict(needed)
    for name, value in constants.items():
      copied[name] = saver_spec.VariableSpec(name, value.dtype.name, None)
    subset = extent_copy.plan(checkpoint.prefix + '.index', copied)
  except extent_copy.UnsupportedSubsetError as e:
    logging.info('extent copy cannot write this subset (%s); streaming it '
                 'through TensorFlow ops', e)
    return 'stream', stream_subset(checkpoint, needed, variables_dir,
                                   chunk_bytes, constants)
  progress = _Progress(f'copying {len(subset.entries)} entries of '
                       f'{checkpoint.prefix}', subset.bytes)
  extent_copy.write_subset(
      checkpoint.prefix, subset,
      filesystem.join(variables_dir, VARIABLES_PREFIX),
      progress=progress.add)
  return 'extent_copy', subset.bytes


def written_variables(variables_dir: str) -> Dict[str, Tuple[str, Tuple[int, ...]]]:
  """Reads back the metadata of a written `variables/` bundle."""
  return checkpoint_lib.read(
      filesystem.join(variables_dir, VARIABLES_PREFIX)).variables

