"""The V2 checkpoint (tensor_bundle) index: reading it and writing one.

This module owns the bundle's index format. TensorFlow's checkpoint reader
opens only the index, so a data shard that is missing, truncated or replaced
by a shorter file goes unnoticed until a tensor is read, which an export that
links or copies the files never does. The index says where every tensor
lives: it is a LevelDB-format table (tensor_bundle writes it uncompressed)
whose empty key holds a `BundleHeaderProto` (number of shards) and every
other key a `BundleEntryProto` (dtype, shape, shard id, offset, size,
crc32c, and for a partitioned variable its slices). Comparing each shard's
size with the end of the last tensor in it finds truncation from metadata
alone; and since every tensor (or slice) is one contiguous extent of a data
shard, a subset of a bundle is its extents copied plus an index written here
(`serialize`), with no tensor decoded.

Layout (leveldb/table/format.{h,cc}, the same in tensorflow/tsl/lib/io):
* footer (last 48 bytes): metaindex handle, index handle (varint64 offset
  and size each), zero padding to 40 bytes, 8-byte magic 0xdb4775248b80fb57;
* a block: entries, then uint32 restart offsets and their uint32 count, then
  a 5-byte trailer (compression type, masked crc32c of block + type);
* an entry: varint32 shared key bytes, varint32 non-shared key bytes,
  varint32 value length, the non-shared key bytes, the value;
* the index block maps a key >= every key of a data block to that block's
  handle; keys ascend bytewise, the header's empty key first.

A slice of a partitioned variable has its own key (tensor_slice_util's
`EncodeTensorNameSlice`, an OrderedCode string): a 0x00 byte, the variable's
name with 0x00 escaped as 0x00 0xff and 0xff as 0xff 0x00, ended by 0x00
0x01, then the slice's extents.
"""

import struct
from typing import Dict, Iterator, Optional, Tuple

import google_crc32c
import tensorflow as tf
from tensorflow.core.protobuf import tensor_bundle_pb2

from multimode_export import _filesystem as filesystem

_FOOTER_BYTES = 48
_HANDLES_BYTES = 40
_MAGIC = 0xdb4775248b80fb57
_TRAILER_BYTES = 5
_NO_COMPRESSION = 0
_CRC_MASK_DELTA = 0xa282ead8
# TensorFlow's table defaults (tsl/lib/io/table_options.h).
_BLOCK_BYTES = 256 << 10
_RESTART_INTERVAL = 16

Header = tensor_bundle_pb2.BundleHeaderProto
Entry = tensor_bundle_pb2.BundleEntryProto


class IndexFormatError(ValueError):
  """The index is not a well-formed, uncompressed tensor_bundle table."""


def crc32c(data, crc: int = 0) -> int:
  """CRC-32C (Castagnoli) of `data` (bytes-like), extending `crc`."""
  return google_crc32c.extend(crc, data)


def mask(crc: int) -> int:
  """The masked form tables and string tensors store a crc32c in."""
  return ((((crc >> 15) | (crc << 17)) & 0xffffffff) +
          _CRC_MASK_DELTA) & 0xffffffff


def _unmask(masked: int) -> int:
  rot = (masked - _CRC_MASK_DELTA) & 0xffffffff
  return ((rot >> 17) | (rot << 15)) & 0xffffffff


def _varint(buf: bytes, pos: int, end: int) -> Tuple[int, int]:
  result, shift = 0, 0
  while pos < end and shift < 64:
    byte = buf[pos]
    pos += 1
    result |= (byte & 0x7f) << shift
    if not byte & 0x80:
      return result, pos
    shift += 7
  raise IndexFormatError(f'bad varint at byte {pos}')


def encode_varint(value: int) -> bytes:
  """`value` (>= 0) as a little-endian base-128 varint."""
  out = bytearray()
  while value >= 0x80:
    out.append((value & 0x7f) | 0x80)
    value >>= 7
  out.append(value)
  return bytes(out)


def _block(buf: bytes, offset: int, size: int) -> bytes:
  """The contents of the block at `offset`, its trailer checked."""
  end = offset + size
  if offset < 0 or end + _TRAILER_BYTES > len(buf):
    raise IndexFormatError(
        f'block [{offset}, {end}) runs past the end of the file '
        f'({len(buf)} bytes)')
  kind = buf[end]
  if kind != _NO_COMPRESSION:
    raise IndexFormatError(f'block at {offset} is compressed (type {kind})')
  (stored,) = struct.unpack_from('<I', buf, end + 1)
  if crc32c(buf[offset:end + 1]) != _unmask(stored):
    raise IndexFormatError(f'block at {offset}: checksum mismatch')
  return buf[offset:end]


def _entries(block: bytes) -> Iterator[Tuple[bytes, bytes]]:
  if len(block) < 4:
    raise IndexFormatError('block shorter than its restart count')
  (restarts,) = struct.unpack_from('<I', block, len(block) - 4)
  limit = len(block) - 4 * (restarts + 1)
  if limit < 0:
    raise IndexFormatError(f'bad restart count {restarts}')
  pos, key = 0, b''
  while pos < limit:
    shared, pos = _varint(block, pos, limit)
    unshared, pos = _varint(block, pos, limit)
    value_len, pos = _varint(block, pos, limit)
    if shared > len(key) or pos + unshared + value_len > limit:
      raise IndexFormatError(f'bad entry at byte {pos}')
    key = key[:shared] + block[pos:pos + unshared]
    pos += unshared
    yield key, block[pos:pos + value_len]
    pos += value_len


def parse(index: bytes) -> Tuple[Header, Dict[bytes, Entry]]:
  """Parses the bytes of a `.index` file.

  Returns:
    (header, {key: entry}) for every tensor (and tensor slice) entry.

  Raises:
    IndexFormatError: the bytes are not an uncompressed tensor_bundle table
      (truncated, corrupted, or another format).
  """
  if len(index) < _FOOTER_BYTES:
    raise IndexFormatError(
        f'{len(index)} bytes, shorter than a table footer')
  footer_at = len(index) - _FOOTER_BYTES
  (magic,) = struct.unpack_from('<Q', index, len(index) - 8)
  if magic != _MAGIC:
    raise IndexFormatError('no table magic number at the end (truncated?)')
  end = len(index) - 8
  _, pos = _varint(index, footer_at, end)  # metaindex offset
  _, pos = _varint(index, pos, end)  # metaindex size
  index_offset, pos = _varint(index, pos, end)
  index_size, pos = _varint(index, pos, end)
  header = None
  entries: Dict[bytes, Entry] = {}
  for _, handle in _entries(_block(index, index_offset, index_size)):
    offset, pos = _varint(handle, 0, len(handle))
    size, _ = _varint(handle, pos, len(handle))
    for key, value in _entries(_block(index, offset, size)):
      try:
        if not key:
          header = Header.FromString(value)
        else:
          entries[key] = Entry.FromString(value)
      except Exception as e:  # pylint: disable=broad-except
        raise IndexFormatError(f'entry {key!r} is not a bundle proto: '
                               f'{e}') from e
  if header is None:
    raise IndexFormatError('no bundle header (empty key)')
  return header, entries


def read(index_path: str) -> Tuple[Header, Dict[bytes, Entry]]:
  """Reads and parses the `.index` file at `index_path` (any filesystem)."""
  return parse(filesystem.read_bytes(index_path))


class _BlockBuilder:
  """One table block: prefix-compressed entries and their restart points."""

  def __init__(self, restart_interval: int):
    self._interval = restart_interval
    self.clear()

  def clear(self) -> None:
    self._buf, self._restarts = bytearray(), [0]
    self._count, self.last_key = 0, b''

  @property
  def empty(self) -> bool:
    return not self._buf

  @property
  def size(self) -> int:
    return len(self._buf) + 4 * (len(self._restarts) + 1)

  def add(self, key: bytes, value: bytes) -> None:
    shared = 0
    if self._count == self._interval:
      self._restarts.append(len(self._buf))
      self._count = 0
    else:
      limit = min(len(key), len(self.last_key))
      while shared < limit and key[shared] == self.last_key[shared]:
        shared += 1
    self._buf += (encode_varint(shared) + encode_varint(len(key) - shared) +
                  encode_varint(len(value)) + key[shared:] + value)
    self._count += 1
    self.last_key = key

  def finish(self) -> bytes:
    return bytes(self._buf) + struct.pack(
        f'<{len(self._restarts) + 1}I', *self._restarts, len(self._restarts))


def _append_block(out: bytearray, contents: bytes) -> bytes:
  """Appends a block and its trailer; returns the block's encoded handle."""
  handle = encode_varint(len(out)) + encode_varint(len(contents))
  trailer = bytes([_NO_COMPRESSION])
  out += contents + trailer + struct.pack(
      '<I', mask(crc32c(contents + trailer)))
  return handle


def serialize(header: Header, entries: Dict[bytes, Entry]) -> bytes:
  """The bytes of a `.index` file holding `header` and `entries`.

  Args:
    header: the bundle header (its `num_shards` must match the data files).
    entries: non-empty key -> entry, in any order.

  Returns:
    An uncompressed table TensorFlow's BundleReader (and `parse`) reads.
  """
  out = bytearray()
  data = _BlockBuilder(_RESTART_INTERVAL)
  index = _BlockBuilder(1)
  items = [(b'', header.SerializeToString())] + [
      (key, entries[key].SerializeToString()) for key in sorted(entries)]
  for key, value in items:
    data.add(key, value)
    if data.size >= _BLOCK_BYTES:
      index.add(data.last_key, _append_block(out, data.finish()))
      data.clear()
  if not data.empty:
    index.add(data.last_key, _append_block(out, data.finish()))
  metaindex_handle = _append_block(out, _BlockBuilder(1).finish())
  index_handle = _append_block(out, index.finish())
  handles = metaindex_handle + index_handle
  out += handles + bytes(_HANDLES_BYTES - len(handles))
  out += struct.pack('<Q', _MAGIC)
  return bytes(out)


def write(index_path: str, header: Header, entries: Dict[bytes, Entry]) -> None:
  """Writes a `.index` file (any filesystem); see `serialize`."""
  with tf.io.gfile.GFile(index_path, 'wb') as f:
    f.write(serialize(header, entries))


def slice_name(key: bytes) -> Optional[str]:
  """The variable a slice entry's key belongs to; None for a whole tensor."""
  if not key.startswith(b'\x00'):
    return None
  name, pos = bytearray(), 1
  while pos + 1 < len(key):
    byte, following = key[pos], key[pos + 1]
    if byte == 0x00 and following == 0x01:
      return name.decode('utf-8')
    if byte in (0x00, 0xff):
      name.append(byte)
      pos += 2
    else:
      name.append(byte)
      pos += 1
  raise IndexFormatError(f'slice key {key!r} has no end of name')


def _ordered_unsigned(value: int) -> bytes:
  """OrderedCode's WriteNumIncreasing: a length byte, then big-endian bytes."""
  data = value.to_bytes((value.bit_length() + 7) // 8, 'big')
  return bytes([len(data)]) + data


# OrderedCode's header bits of a signed number encoded in n bytes (n <= 10).
_SIGNED_HEADER = ((0, 0), (0x80, 0), (0xc0, 0), (0xe0, 0), (0xf0, 0),
                  (0xf8, 0), (0xfc, 0), (0xfe, 0), (0xff, 0), (0xff, 0x80),
                  (0xff, 0xc0))


def _ordered_signed(value: int) -> bytes:
  """OrderedCode's WriteSignedNumIncreasing (lexicographic order = numeric).

  n bytes hold n header bits, a sign bit and 7n - 1 bits of magnitude;
  the header's ones are XORed into the two's-complement big-endian value.
  """
  magnitude = ~value if value < 0 else value
  length = (magnitude.bit_length() + 7) // 7
  data = bytearray(value.to_bytes(10, 'big', signed=True)[10 - length:])
  data[0] ^= _SIGNED_HEADER[length][0]
  if length > 1:
    data[1] ^= _SIGNED_HEADER[length][1]
  return bytes(data)


def slice_key(name: str, tensor_slice) -> bytes:
  """The index key of one stored slice of variable `name`.

  tensor_slice_util's `EncodeTensorNameSlice`: 0, the escaped name, the
  rank, then each dimension's start and length (-1 where the
  TensorSliceProto `tensor_slice` leaves the dimension whole), in
  OrderedCode. The variable's own entry lists its slices' protos.
  """
  escaped = bytearray()
  for byte in name.encode('utf-8'):
    escaped += {0x00: b'\x00\xff', 0xff: b'\xff\x00'}.get(byte, bytes([byte]))
  key = _ordered_unsigned(0) + bytes(escaped) + b'\x00\x01'
  key += _ordered_unsigned(len(tensor_slice.extent))
  for extent in tensor_slice.extent:
    length = extent.length if extent.HasField('length') else -1
    key += _ordered_signed(extent.start) + _ordered_signed(length)
  return key


Bounds = Tuple[Tuple[int, int], ...]


def slice_bounds(shape, tensor_slice) -> Bounds:
  """(start, length) per dimension of a TensorSliceProto of a tensor of
  `shape`; a dimension the proto leaves open is (0, its size)."""
  return tuple((e.start, e.length) if e.HasField('length') else (0, dim)
               for dim, e in zip(shape, tensor_slice.extent))


def spec_bounds(spec: str) -> Tuple[Tuple[int, ...], Bounds]:
  """(full shape, bounds) of a Saver slice string such as '4 3 0,1:-'."""
  *dims, extents = spec.split(' ')
  shape = tuple(int(d) for d in dims)
  bounds = []
  for dim, extent in zip(shape, extents.split(':')):
    if extent == '-':
      bounds.append((0, dim))
    else:
      start, length = extent.split(',')
      bounds.append((int(start), int(length)))
  return shape, tuple(bounds)


def shard_extents(entries: Dict[bytes, Entry]) -> Dict[int, int]:
  """Shard id -> the byte offset where its last tensor ends."""
  extents: Dict[int, int] = {}
  for entry in entries.values():
    if entry.size:
      end = entry.offset + entry.size
      extents[entry.shard_id] = max(extents.get(entry.shard_id, 0), end)
  return extents


def variable_bytes(entries: Dict[bytes, Entry]) -> Dict[str, int]:
  """Variable name -> bytes its data takes (a partitioned one: its slices')."""
  sizes: Dict[str, int] = {}
  for key, entry in entries.items():
    name = slice_name(key)
    if name is None:
      name = key.decode('utf-8')
    sizes[name] = sizes.get(name, 0) + entry.size
  return sizes
