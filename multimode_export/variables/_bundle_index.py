"""Reading a V2 checkpoint's `.index` file, to check its data shards.

TensorFlow's checkpoint reader opens only the index, so a data shard that is
missing, truncated or replaced by a shorter file goes unnoticed until a
tensor is read, which an export that links or copies the files never does.
The index says where every tensor lives: it is a LevelDB-format table
(tensor_bundle writes it uncompressed) whose empty key holds a
`BundleHeaderProto` (number of shards) and every other key a
`BundleEntryProto` (shard id, offset, size, crc32c). Comparing each shard's
size with the end of the last tensor in it finds truncation from metadata
alone, in time proportional to the index, not to the data.

Layout read here (leveldb/table/format.{h,cc}, the same in
tensorflow/tsl/lib/io/format.h):
* footer (last 48 bytes): metaindex handle, index handle (varint64 offset
  and size each), zero padding, 8-byte magic 0xdb4775248b80fb57;
* a block: entries, then uint32 restart offsets and their uint32 count, then
  a 5-byte trailer (compression type, masked crc32c of block + type);
* an entry: varint32 shared key bytes, varint32 non-shared key bytes,
  varint32 value length, the non-shared key bytes, the value.
"""

import struct
from typing import Dict, Iterator, List, Tuple

import tensorflow as tf
from tensorflow.core.protobuf import tensor_bundle_pb2

_FOOTER_BYTES = 48
_MAGIC = 0xdb4775248b80fb57
_TRAILER_BYTES = 5
_NO_COMPRESSION = 0
_CRC_MASK_DELTA = 0xa282ead8

Header = tensor_bundle_pb2.BundleHeaderProto
Entry = tensor_bundle_pb2.BundleEntryProto


class IndexFormatError(ValueError):
  """The index is not a well-formed, uncompressed tensor_bundle table."""


def _crc32c_table() -> List[int]:
  table = []
  for i in range(256):
    crc = i
    for _ in range(8):
      crc = (crc >> 1) ^ (0x82f63b78 if crc & 1 else 0)
    table.append(crc)
  return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
  """CRC-32C (Castagnoli) of `data`; fast enough for index blocks."""
  crc = 0xffffffff
  table = _CRC_TABLE
  for byte in data:
    crc = table[(crc ^ byte) & 0xff] ^ (crc >> 8)
  return crc ^ 0xffffffff


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
  with tf.io.gfile.GFile(index_path, 'rb') as f:
    return parse(f.read())


def shard_extents(entries: Dict[bytes, Entry]) -> Dict[int, int]:
  """Shard id -> the byte offset where its last tensor ends."""
  extents: Dict[int, int] = {}
  for entry in entries.values():
    if entry.size:
      end = entry.offset + entry.size
      extents[entry.shard_id] = max(extents.get(entry.shard_id, 0), end)
  return extents
