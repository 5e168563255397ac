"""A bundle whose new keys point at another bundle's extents.

A TF2 SavedModel's checkpoint stores each variable under an object-based key
(`variables/3/.ATTRIBUTES/VARIABLE_VALUE`) next to a
`_CHECKPOINTABLE_OBJECT_GRAPH` entry, while a TF1 checkpoint stores the same
values under variable names. Since an index entry only says where a tensor's
bytes are (shard, offset, size) and what they are (dtype, shape, crc32c),
the TF2 checkpoint can be an index whose entries are copies of the TF1
entries under new keys, over the TF1 data shards linked (or copied) as they
are: no tensor is read, decoded or rewritten.

`extend_with_extents` does this to a small bundle that already holds what is
new (the object graph, written by TensorFlow): its data shards are renamed
to come after the source's, and its index is rewritten with both.

A partitioned TF1 variable is stored as one entry per slice (see
`bundle_index`). A new key maps onto exactly one stored tensor: a whole
variable, or one stored slice of a partitioned one (a TF2 model imported
from the TF1 graph has one variable per partition). Asking for a partitioned
variable whole, or for a slice the checkpoint does not store as such, raises
`RekeyError`: such a value would have to be read and rewritten.
"""

import dataclasses
from typing import Dict, Mapping, NamedTuple, Tuple

import tensorflow as tf

from multimode_export import _filesystem as filesystem
from multimode_export.variables import _bundle_index as bundle_index
from multimode_export.variables import _transfer as transfer


class RekeyError(ValueError):
  """A new key cannot point at the source bundle; the message says why."""


class SourceEntry(NamedTuple):
  """A tensor of the source checkpoint.

  Attributes:
    key: its checkpoint key (a TF1 variable name).
    slice_spec: '' for the whole tensor, else the Saver's slice string of
      one stored slice of a partitioned variable ('10 4 0,5:0,4').
  """
  key: str
  slice_spec: str = ''


@dataclasses.dataclass(frozen=True)
class ExtendResult:
  """What `extend_with_extents` wrote.

  Attributes:
    method: how the source's data shards were put next to the bundle
      ('reflink', 'hardlink' or 'copy'; the weakest if they differ;
      'none' when no key was added and nothing was done).
    keys: the number of keys pointing into the source's shards.
    source_bytes: the size of the source's data shards.
  """
  method: str
  keys: int
  source_bytes: int


def _shard_path(prefix: str, shard_id: int, num_shards: int) -> str:
  return f'{prefix}.data-{shard_id:05d}-of-{num_shards:05d}'


def _source_entry(new_key: str, source: SourceEntry,
                  entries: Mapping[bytes, bundle_index.Entry]
                  ) -> bundle_index.Entry:
  """The stored entry holding exactly `source`'s tensor."""
  entry = entries.get(source.key.encode('utf-8'))
  if entry is None:
    raise RekeyError(f'{new_key!r}: the source checkpoint has no key '
                     f'{source.key!r}')
  shape = tuple(d.size for d in entry.shape.dim)
  whole = tuple((0, d) for d in shape)
  if source.slice_spec:
    full_shape, bounds = bundle_index.spec_bounds(source.slice_spec)
    if full_shape != shape:
      raise RekeyError(
          f'{new_key!r}: slice {source.slice_spec!r} of {source.key!r} is of '
          f'a tensor of shape {list(full_shape)}; the checkpoint stores '
          f'{list(shape)}')
  else:
    bounds = whole
  if not entry.slices:
    if bounds == whole:
      return entry  # SaveV2 stores a whole-variable "slice" as a tensor.
    raise RekeyError(
        f'{new_key!r}: slice {source.slice_spec!r} of {source.key!r}: the '
        'checkpoint stores it whole, not as slices')
  for stored in entry.slices:
    if bundle_index.slice_bounds(shape, stored) == bounds:
      key = bundle_index.slice_key(source.key, stored)
      if key not in entries:
        raise RekeyError(f'{new_key!r}: the index lists slice {bounds} of '
                         f'{source.key!r} but has no entry for it')
      return entries[key]
  stored_bounds = sorted(bundle_index.slice_bounds(shape, s)
                         for s in entry.slices)
  what = (f'slice {source.slice_spec!r}' if source.slice_spec else
          'the whole tensor')
  raise RekeyError(
      f'{new_key!r}: {what} of {source.key!r} is not stored as such; the '
      f'checkpoint stores it as {len(stored_bounds)} slices '
      f'{stored_bounds} (a new key maps onto one stored tensor or slice)')


def plan(source_entries: Mapping[bytes, bundle_index.Entry],
         sources: Mapping[str, SourceEntry]) -> Dict[bytes, bundle_index.Entry]:
  """New key -> a copy of its source's entry (shard, offset, size, crc32c,
  dtype, shape all kept).

  Raises:
    RekeyError: a source is missing or not stored as one tensor.
  """
  planned = {}
  for new_key in sorted(sources):
    entry = bundle_index.Entry()
    entry.CopyFrom(_source_entry(new_key, SourceEntry(*sources[new_key]),
                                 source_entries))
    planned[new_key.encode('utf-8')] = entry
  return planned


def extend_with_extents(prefix: str, source_prefix: str,
                        sources: Mapping[str, SourceEntry], *,
                        allow_links: bool = True) -> ExtendResult:
  """Adds keys pointing into another bundle's data shards to a bundle.

  The bundle at `prefix` (e.g. the object graph TensorFlow wrote) keeps its
  entries; its data shards are renamed to follow the source's, which are
  linked or copied next to them (`transfer.link_or_copy_file`), and its
  index is rewritten with the entries of `sources` added.

  Args:
    prefix: a bundle in a directory being staged (its files are rewritten).
    source_prefix: the checkpoint holding the values (not modified).
    sources: new key -> the source tensor it holds (a `SourceEntry`, or a
      (key, slice_spec) pair).
    allow_links: whether local data shards may be reflinked or hard-linked.

  Returns:
    An `ExtendResult`.

  Raises:
    RekeyError: a source tensor is missing or not stored as one tensor, or
      a new key is already in the bundle. Raised before any file changes.
  """
  header, entries = bundle_index.read(prefix + '.index')
  source_header, source_entries = bundle_index.read(source_prefix + '.index')
  added = plan(source_entries, sources)
  taken = sorted(k.decode('utf-8', 'replace') for k in added if k in entries)
  if taken:
    raise RekeyError(f'{prefix!r} already holds {taken}: a value written '
                     'there would be shadowed by the source checkpoint')
  if not added:
    return ExtendResult('none', 0, 0)
  count, own = source_header.num_shards, header.num_shards
  total = count + own
  for shard_id in reversed(range(own)):  # new names: total > own, no clash
    tf.io.gfile.rename(_shard_path(prefix, shard_id, own),
                       _shard_path(prefix, count + shard_id, total))
  methods, size = _link_shards(source_prefix, count, prefix, total,
                               allow_links)
  for entry in entries.values():
    entry.shard_id += count
  entries.update(added)
  header.num_shards = total
  # Removed first: on ram:// a GFile opened 'wb' appends to an existing file.
  tf.io.gfile.remove(prefix + '.index')
  bundle_index.write(prefix + '.index', header, entries)
  return ExtendResult(transfer.weakest_method(methods), len(added), size)


def _link_shards(source_prefix: str, count: int, prefix: str, total: int,
                 allow_links: bool) -> Tuple[list, int]:
  """Links or copies the source's data shards as shards 0..count-1 of
  `total`; returns (the method per shard, their bytes)."""
  local = filesystem.is_local(prefix) and filesystem.is_local(source_prefix)
  methods, size = [], 0
  for shard_id in range(count):
    src = _shard_path(source_prefix, shard_id, count)
    length = tf.io.gfile.stat(src).length
    methods.append(transfer.link_or_copy_file(
        src, _shard_path(prefix, shard_id, total), length, local=local,
        allow_links=allow_links))
    size += length
  return methods, size
