"""Checking every tensor of a V2 bundle against its crc32c, in one pass.

The index stores, for each tensor (or slice), a masked crc32c of the bytes
its data shard holds for it. Each data shard is read once, sequentially,
through a bounded buffer, and every entry's checksum is computed as the
bytes go by: memory does not grow with the tensors, and no tensor is
decoded. What the checksum covers (tensorflow/core/util/tensor_bundle):

* a numeric or bool tensor: its bytes;
* a string tensor, stored as the element lengths (varint64 each), a masked
  crc32c of the lengths, then the elements' bytes: the lengths each as a
  little-endian uint32 (uint64 if larger), then the 4 bytes of that masked
  checksum, then the elements' bytes.

Other dtypes (variant) are read through TensorFlow's checkpoint reader,
which checks them.
"""

import dataclasses
import struct
import threading
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import tensorflow as tf

from multimode_export import _filesystem as filesystem
from multimode_export.variables import _bundle_index as bundle_index

DEFAULT_BUFFER_BYTES = 8 << 20
_STRING = tf.string.as_datatype_enum
_VARIANT = tf.variant.as_datatype_enum


class BundleDataError(Exception):
  """A tensor's bytes do not match the index; the message names it."""

  def __init__(self, key: str, detail: str):
    super().__init__(f'variable {key!r} unreadable: {detail}')
    self.key, self.detail = key, detail


class Stopped(Exception):
  """`check` ended early: its `stop` event was set."""


@dataclasses.dataclass(frozen=True)
class BundleCheck:
  """What `check` read.

  Attributes:
    entries: tensor (and slice) entries whose crc32c was checked.
    bytes: bytes of tensor data read.
    shards: data shards read.
  """
  entries: int
  bytes: int
  shards: int


def _display(key: bytes) -> str:
  name = bundle_index.slice_name(key)
  return key.decode('utf-8', 'replace') if name is None else f'{name} (a slice)'


class _StringCrc:
  """The crc32c of a string tensor's stored bytes, fed piece by piece."""

  def __init__(self, elements: int):
    self._left = elements  # lengths still to parse
    self._pending = b''  # bytes of a length (or of the checksum) not yet whole
    self._value, self._shift = 0, 0
    self.crc = 0

  def feed(self, data: bytes) -> None:
    pos = 0
    while pos < len(data) and (self._left or len(self._pending) < 4):
      if self._left:
        byte = data[pos]
        pos += 1
        self._value |= (byte & 0x7f) << self._shift
        self._shift += 7
        if not byte & 0x80:
          size = self._value
          packed = struct.pack('<I' if size <= 0xffffffff else '<Q', size)
          self.crc = bundle_index.crc32c(packed, self.crc)
          self._left -= 1
          self._value, self._shift = 0, 0
      else:
        take = data[pos:pos + 4 - len(self._pending)]
        self._pending += take
        pos += len(take)
        self.crc = bundle_index.crc32c(take, self.crc)
    if pos < len(data):
      self.crc = bundle_index.crc32c(data[pos:], self.crc)


def _elements(entry: bundle_index.Entry) -> int:
  return int(np.prod([d.size for d in entry.shape.dim], dtype=np.int64))


class _PieceReader:
  """A file read front to back in pieces of one size, whatever is asked.

  `read(n)` and forward `seek` are served from those pieces.
  """

  def __init__(self, path: str, piece_bytes: int):
    self._file = tf.io.gfile.GFile(path, 'rb')
    self._piece_bytes = piece_bytes
    self._buffer = b''
    self._position = 0  # of the first buffered byte

  def read(self, size: int) -> bytes:
    parts, wanted = [self._buffer], size - len(self._buffer)
    while wanted > 0:
      piece = self._file.read(self._piece_bytes)
      if not piece:
        break
      parts.append(piece)
      wanted -= len(piece)
    data = b''.join(parts)
    out, self._buffer = data[:size], data[size:]
    self._position += len(out)
    return out

  def seek(self, offset: int) -> None:
    if offset < self._position:
      raise ValueError(f'offset: expected >= {self._position} (forward '
                       f'only), got {offset}')
    while self._position < offset and self.read(
        min(self._piece_bytes, offset - self._position)):
      pass

  def __enter__(self) -> '_PieceReader':
    return self

  def __exit__(self, *exc) -> None:
    self._file.close()


def _open(path: str):
  if filesystem.is_local(path):
    return open(filesystem.local_path(path), 'rb')  # pylint: disable=consider-using-with
  # Not read entry by entry: see filesystem.READ_PIECE_BYTES.
  return _PieceReader(path, filesystem.READ_PIECE_BYTES)


def _read_extents(path: str, extents: List[Tuple[bytes, bundle_index.Entry]],
                  buffer_bytes: int) -> Iterator[Tuple[bytes, bytes]]:
  """Yields (key, piece) over `extents` (sorted by offset), reading `path`
  once, sequentially, at most `buffer_bytes` at a time."""
  with _open(path) as f:
    position = 0
    for key, entry in extents:
      if entry.offset != position:
        f.seek(entry.offset)
        position = entry.offset
      left = entry.size
      while left:
        piece = f.read(min(buffer_bytes, left))
        if not piece:
          raise BundleDataError(
              _display(key), f'{path} ends at byte {position}, the index '
              f'needs {entry.offset + entry.size}')
        position += len(piece)
        left -= len(piece)
        yield key, piece


def _checker(entry: bundle_index.Entry) -> Tuple[Callable[[bytes], None],
                                                  Callable[[], int]]:
  """(feed, result) computing the entry's checksum as stored."""
  if entry.dtype == _STRING:
    state = _StringCrc(_elements(entry))
    return state.feed, lambda: state.crc
  holder = [0]

  def feed(piece: bytes) -> None:
    holder[0] = bundle_index.crc32c(piece, holder[0])

  return feed, lambda: holder[0]


def _check_shard(path: str, extents, buffer_bytes: int,
                 stop: Optional[threading.Event]) -> None:
  current, feed, result = None, None, None

  def finish():
    if current is not None and bundle_index.mask(result()) != \
        extents_by_key[current].crc32c:
      raise BundleDataError(_display(current),
                            f'checksum mismatch in {path}: stored '
                            f'{extents_by_key[current].crc32c:#x}, computed '
                            f'{bundle_index.mask(result()):#x}')

  extents_by_key = dict(extents)
  for key, piece in _read_extents(path, extents, buffer_bytes):
    if stop is not None and stop.is_set():
      raise Stopped(f'stopped while reading {path}')
    if key != current:
      finish()
      current = key
      feed, result = _checker(extents_by_key[key])
    feed(piece)
  finish()


def check(prefix: str, *, buffer_bytes: int = DEFAULT_BUFFER_BYTES,
          stop: Optional[threading.Event] = None) -> BundleCheck:
  """Reads every data shard of the bundle at `prefix` once; checks each
  tensor's crc32c.

  Args:
    prefix: the bundle's prefix (`<dir>/variables/variables`), any
      filesystem.
    buffer_bytes: the read size: the memory this uses.
    stop: when set (from another thread), the pass ends after the piece it
      is reading, raising `Stopped`.

  Returns:
    A BundleCheck.

  Raises:
    bundle_index.IndexFormatError: the index is unreadable.
    BundleDataError: a tensor's bytes are short or do not match its crc32c.
    Stopped: `stop` was set.
  """
  header, entries = bundle_index.read(prefix + '.index')
  by_shard: Dict[int, List[Tuple[bytes, bundle_index.Entry]]] = {}
  variants = []
  for key, entry in entries.items():
    if entry.dtype == _VARIANT:
      variants.append(key)
    elif entry.size:
      by_shard.setdefault(entry.shard_id, []).append((key, entry))
  for shard_id, extents in sorted(by_shard.items()):
    extents.sort(key=lambda item: item[1].offset)
    path = f'{prefix}.data-{shard_id:05d}-of-{header.num_shards:05d}'
    _check_shard(path, extents, buffer_bytes, stop)
  if variants:
    reader = tf.compat.v1.train.NewCheckpointReader(prefix)
    for key in variants:
      reader.get_tensor(key.decode('utf-8'))
  checked = sum(len(e) for e in by_shard.values())
  size = sum(e.size for extents in by_shard.values() for _, e in extents)
  return BundleCheck(checked + len(variants), size, len(by_shard))
