"""Sizes tensors claim, judged from their protos and headers alone.

A constant's `TensorProto` and a `variables/` index entry each say a dtype
and a shape; a reader allocates what they claim. The safety scan compares
the claim with the bytes stored, without expanding anything (no
`tf.make_ndarray`, no read of the data), and refuses a claim that does not
match, naming the node or entry:

- a constant whose `tensor_content` is not exactly its shape's bytes, that
  stores more values than its shape holds, or whose shape asks more than
  `BROADCAST_LIMIT` bytes from fewer stored values (TensorFlow repeats the
  last stored value to fill the shape: a one-element string constant can
  claim `[2**34]`);
- a constant of dtype variant: a serialized object (a dataset graph, a
  tensor list) TensorFlow would decode, never needed by a model's graph;
- an index entry whose bytes are not what its dtype and shape need: exactly,
  for fixed-size dtypes; at least one byte per element for strings and
  variants (each is stored with its length).
"""

from typing import Optional, Tuple

import tensorflow as tf
from tensorflow.core.framework import types_pb2

from multimode_export.checks import _wording as wording

# The most a constant may expand to beyond its stored bytes (64 MiB).
BROADCAST_LIMIT = 64 << 20
_VALUE_FIELDS = ('half_val', 'float_val', 'double_val', 'int_val',
                 'string_val', 'int64_val', 'bool_val', 'uint32_val',
                 'uint64_val', 'resource_handle_val', 'variant_val')
_COMPLEX_FIELDS = ('scomplex_val', 'dcomplex_val')  # two numbers per value
_VARIABLE_SIZE = (types_pb2.DT_STRING, types_pb2.DT_VARIANT,
                  types_pb2.DT_RESOURCE)


def _describe(dtype_enum: int, dims) -> Tuple[str, int]:
  """('float32[2,3]', element count); a negative dimension counts as 0."""
  try:
    name = tf.as_dtype(dtype_enum).name
  except TypeError:
    name = f'dtype {dtype_enum}'
  count = 1
  for dim in dims:
    count *= max(dim, 0)
  return f'{name}[{",".join(map(str, dims))}]', count


def _item_size(dtype_enum: int) -> int:
  """Bytes per element; 1 (the least) for strings and variants."""
  if dtype_enum in _VARIABLE_SIZE:
    return 1
  try:
    return max(tf.as_dtype(dtype_enum).size, 1)
  except TypeError:
    return 1


def constant_problem(tensor) -> Optional[str]:
  """What is wrong with a `TensorProto` held in an attribute, or None."""
  dims = [d.size for d in tensor.tensor_shape.dim]
  shape, count = _describe(tensor.dtype, dims)
  if any(d < 0 for d in dims):
    return f'a constant of unknown shape {shape}'
  if tensor.dtype == types_pb2.DT_VARIANT and count:
    return ('a variant constant: a serialized object (e.g. a dataset graph) '
            'TensorFlow would decode')
  item = _item_size(tensor.dtype)
  claimed = count * item
  if tensor.tensor_content:
    stored = len(tensor.tensor_content)
    if tensor.dtype in _VARIABLE_SIZE or stored != claimed:
      return (f'a constant claiming {shape} ({claimed} bytes) but storing '
              f'{stored} bytes of content')
    return None
  values = sum(len(getattr(tensor, f)) for f in _VALUE_FIELDS)
  values += sum(len(getattr(tensor, f)) for f in _COMPLEX_FIELDS) // 2
  if values > count:
    return (f'a constant claiming {shape} ({count} elements) but storing '
            f'{values} values')
  stored = sum(len(v) for v in tensor.string_val) + values * item
  if values < count and claimed > max(stored, BROADCAST_LIMIT):
    least = 'at least ' if tensor.dtype in _VARIABLE_SIZE else ''
    return (f'a constant claiming {shape} ({least}{claimed} bytes) but '
            f'storing {wording.count(values, "value")} ({stored} bytes): '
            'expanding it would allocate the claim, over the '
            f'{BROADCAST_LIMIT}-byte limit')
  return None


def entry_claim(entry) -> Tuple[str, int, bool]:
  """(shape text, bytes claimed, exact) of a bundle index entry.

  `exact`: a fixed-size dtype, whose entry stores exactly the claim; for a
  string or variant the claim is a lower bound (one byte per element).
  """
  shape, count = _describe(entry.dtype, [d.size for d in entry.shape.dim])
  return (shape, count * _item_size(entry.dtype),
          entry.dtype not in _VARIABLE_SIZE)


def entry_problem(entry, available: int) -> Optional[str]:
  """Why an index entry's claim does not match `available` bytes, or None.

  Args:
    entry: a `BundleEntryProto`.
    available: the bytes it stores (for a partitioned variable's full entry,
      the bytes of the whole bundle: its slices hold them).
  """
  shape, claimed, exact = entry_claim(entry)
  if claimed > available:
    least = '' if exact else 'at least '
    return (f'claims {shape} ({least}{claimed} bytes) but stores {available} '
            'bytes')
  if exact and not entry.slices and claimed != available:
    return f'claims {shape} ({claimed} bytes) but stores {available} bytes'
  return None
