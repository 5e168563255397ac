"""Synthetic feeds for a SignatureDef, built from the signature and its graph.

A signature input is fed
- serialized `tf.Example`s when it is a string tensor that a ParseExample
  op parses: every dense, sparse and ragged key the op reads gets a zero (or
  b'') value of the right type and shape, so the parsing succeeds even for
  features without a default;
- otherwise zeros (numbers, booleans) or b'' (strings) of the signature's
  shape, unknown dimensions set to 1 and an unknown batch dimension to
  `batch_size`. (b'' is also a serialized empty `tf.Example`, the right
  input for a parser this module cannot read.)

A sparse (COO) input gets a `tf.compat.v1.SparseTensorValue` with one zero
value per row, a ragged one a `tf.compat.v1.ragged.RaggedTensorValue` with
one value per row. `tensor_feeds` turns the feeds into graph tensor name ->
value, each tensor once: a signature may list one tensor under several keys
(TFMA's eval signature has the label as `features/<key>` and `labels`).

Only the GraphDef is read; nothing is run.
"""

import collections
import dataclasses
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_shape_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow.core.protobuf import struct_pb2

from multimode_export import loading
from multimode_export.graph import _graph_def as graph_def_lib

DEFAULT_BATCH_SIZE = 2
# The synthetic inputs of one signature, all together, never take more memory
# than this: a signature declaring more (a huge static dimension) is not run.
MAX_FEED_BYTES = 64 * 2**20
_POINTER_BYTES = 8  # per element of a numpy object array

# Ops between a receiver's string placeholder and its parser.
_PASSTHROUGH_OPS = frozenset(
    ('Identity', 'Reshape', 'ExpandDims', 'Squeeze', 'IdentityN'))
_PARSE_OPS = frozenset(('ParseExample', 'ParseExampleV2', 'ParseSingleExample'))
# Ops calling a function of the library (attribute `f`): a TF2 SavedModel's
# signatures call the function that parses.
_CALL_OPS = frozenset(('StatefulPartitionedCall', 'PartitionedCall'))
_MAX_DEPTH = 6
_RAGGED = struct_pb2.TypeSpecProto.RAGGED_TENSOR_SPEC


class UnsupportedInputError(Exception):
  """A signature input that no synthetic value can be built for."""


@dataclasses.dataclass(frozen=True)
class ExampleFeature:
  """One feature key a ParseExample op reads.

  Attributes:
    key: the feature key.
    dtype: tf.float32, tf.int64 or tf.string.
    num_values: how many values each Example gets for it.
  """
  key: str
  dtype: tf.dtypes.DType
  num_values: int


def _const_strings(node) -> List[str]:
  try:
    return graph_def_lib.const_strings(node)
  except ValueError as e:
    raise UnsupportedInputError(f'parse keys are not constants: {e}') from e


def _num_values(shape_proto) -> int:
  shape = tf.TensorShape(shape_proto)
  if shape.rank is None:
    return 1
  # An unknown dimension (FixedLenSequenceFeature) gets one element.
  return int(np.prod([d if d is not None and d >= 0 else 1
                      for d in shape.as_list()], dtype=np.int64))


def _parse_features(node, nodes) -> List[ExampleFeature]:
  """The feature keys a ParseExample(V2)/ParseSingleExample node reads."""
  attr = node.attr

  def types(name):  # `in` first: indexing a proto map would insert the key.
    return [tf.as_dtype(t) for t in attr[name].list.type] if name in attr else []

  dense_types = types('Tdense')
  dense_counts = [_num_values(s) for s in attr['dense_shapes'].list.shape]
  sparse_types = types('sparse_types')
  ragged_types = types('ragged_value_types')
  if node.op == 'ParseExampleV2':
    # inputs: serialized, names, sparse_keys, dense_keys, ragged_keys, ...
    sparse_keys = _const_strings(
        nodes.get(graph_def_lib.node_name(node.input[2])))
    dense_keys = _const_strings(
        nodes.get(graph_def_lib.node_name(node.input[3])))
    ragged_keys = _const_strings(
        nodes.get(graph_def_lib.node_name(node.input[4])))
  elif node.op == 'ParseExample':
    # inputs: serialized, names, sparse_keys x Nsparse, dense_keys x Ndense, ...
    num_sparse, num_dense = attr['Nsparse'].i, attr['Ndense'].i
    keys = [_const_strings(nodes.get(graph_def_lib.node_name(i)))[0]
            for i in node.input[2:2 + num_sparse + num_dense]]
    sparse_keys, dense_keys, ragged_keys = (keys[:num_sparse],
                                            keys[num_sparse:], [])
  else:  # ParseSingleExample keeps its keys in attributes.
    sparse_keys = [k.decode('utf-8') for k in attr['sparse_keys'].list.s]
    dense_keys = [k.decode('utf-8') for k in attr['dense_keys'].list.s]
    ragged_keys = []
  features = [ExampleFeature(k, t, n)
              for k, t, n in zip(dense_keys, dense_types, dense_counts)]
  features += [ExampleFeature(k, t, 1) for k, t in zip(sparse_keys,
                                                       sparse_types)]
  features += [ExampleFeature(k, t, 1) for k, t in zip(ragged_keys,
                                                       ragged_types)]
  return features


class GraphIndex:
  """Nodes and consumers of one GraphDef, for finding an input's parser."""

  def __init__(self, graph_def, library=None):
    """Indexes `graph_def` (a GraphDef, or a FunctionDef given `library`)."""
    if library is None:
      library = {f.signature.name: f for f in graph_def.library.function}
      nodes = graph_def.node
    else:
      nodes = graph_def.node_def
    self._library = library
    self._functions: Dict[str, 'GraphIndex'] = {}
    self.nodes = graph_def_lib.NodeIndex(nodes)
    self.consumers = collections.defaultdict(list)
    for node in nodes:
      for inp in graph_def_lib.inputs_of(node):
        if not inp.startswith('^'):
          self.consumers[graph_def_lib.node_name(inp)].append(node)

  def _called(self, call, name: str):
    """(index, argument) of the function `call` passes tensor `name` to."""
    function = self._library.get(call.attr['f'].func.name)
    if function is None:
      return
    if function.signature.name not in self._functions:
      self._functions[function.signature.name] = GraphIndex(
          function, self._library)
    index = self._functions[function.signature.name]
    args = function.signature.input_arg
    for position, inp in enumerate(call.input):
      if graph_def_lib.node_name(inp) == name and position < len(args):
        yield index, args[position].name

  def example_features(self, tensor_name: str
                      ) -> Optional[List[ExampleFeature]]:
    """The features of the ParseExample ops that parse `tensor_name`, if any.

    Returns:
      The features (possibly empty), or None when no parser reads the tensor
      within a few pass-through ops.

    Raises:
      UnsupportedInputError: a parser was found but its keys are not
        readable constants.
    """
    frontier = [(self, graph_def_lib.node_name(tensor_name), 0)]
    seen = set()
    parsers = []
    while frontier:
      index, name, depth = frontier.pop()
      if (id(index), name) in seen or depth > _MAX_DEPTH:
        continue
      seen.add((id(index), name))
      for consumer in index.consumers.get(name, ()):
        if consumer.op in _PARSE_OPS:
          parsers.append((index, consumer))
        elif consumer.op in _PASSTHROUGH_OPS:
          frontier.append((index, consumer.name, depth + 1))
        elif consumer.op in _CALL_OPS:
          frontier.extend((called, arg, depth + 1)
                          for called, arg in index._called(consumer, name))  # pylint: disable=protected-access
    if not parsers:
      return None
    features: Dict[str, ExampleFeature] = {}
    for index, parser in parsers:
      for feature in _parse_features(parser, index.nodes):
        features.setdefault(feature.key, feature)
    return list(features.values())


def make_example(features: Iterable[ExampleFeature]) -> bytes:
  """A serialized tf.Example with a zero / b'' value for every feature."""
  example = tf.train.Example()
  for feature in features:
    entry = example.features.feature[feature.key]
    if feature.dtype == tf.string:
      entry.bytes_list.value.extend([b''] * feature.num_values)
    elif feature.dtype.is_integer:
      entry.int64_list.value.extend([0] * feature.num_values)
    else:
      entry.float_list.value.extend([0.0] * feature.num_values)
  return example.SerializeToString()


def feed_shape(tensor_shape_proto: tensor_shape_pb2.TensorShapeProto,
               batch_size: int) -> Tuple[int, ...]:
  """A concrete shape for a signature input: batch first, others 1."""
  shape = tf.TensorShape(tensor_shape_proto)
  if shape.rank is None:
    return (batch_size,)
  dims = shape.as_list()
  return tuple(
      (batch_size if i == 0 else 1) if d is None else d
      for i, d in enumerate(dims))


def _check_budget(key: str, dtype: tf.dtypes.DType, shape: Tuple[int, ...],
                  used: int, element_bytes: int) -> int:
  """The bytes of one input; raises when they would pass the budget."""
  count = 1
  for dim in shape:
    count *= dim
  size = count * element_bytes
  if used + size > MAX_FEED_BYTES:
    raise UnsupportedInputError(
        f'input {key!r} declares {dtype.name}{list(shape)}, {count} elements '
        f'({size} bytes): over the {MAX_FEED_BYTES}-byte budget for the '
        'synthetic inputs of one signature')
  return size

def _dense_value(key: str, info, graph: GraphIndex, batch_size: int
                ) -> np.ndarray:
  if not info.dtype:
    raise UnsupportedInputError(f'input {key!r} has no dtype')
  dtype = tf.as_dtype(info.dtype)
  shape = feed_shape(info.tensor_shape, batch_size)
  if dtype == tf.string:
    features = (graph.example_features(info.name)
                if info.WhichOneof('encoding') == 'name' else None)
    value = b'' if features is None else make_example(features)
    _check_budget(key, dtype, shape, 0, _POINTER_BYTES + len(value))
    # Not np.full: it would go through a bytes array and drop trailing NULs.
    array = np.empty(shape, dtype=object)
    array.fill(value)
    return array
  if dtype.is_numpy_compatible and (dtype.is_bool or dtype.is_integer or
                                    dtype.is_floating or dtype.is_complex):
    _check_budget(key, dtype, shape, 0, dtype.size)
    return np.zeros(shape, dtype=dtype.as_numpy_dtype)
  raise UnsupportedInputError(
      f'input {key!r} has dtype {dtype.name}, for which no synthetic value '
      'exists')


def _sparse_value(key: str, info, graph: GraphIndex, batch_size: int):
  """One zero value in the first column of each row."""
  dense_shape = feed_shape(info.tensor_shape, batch_size)
  if len(dense_shape) < 1:
    raise UnsupportedInputError(f'input {key!r} is a sparse scalar')
  rows = dense_shape[0]
  indices = np.zeros((rows, len(dense_shape)), np.int64)
  indices[:, 0] = np.arange(rows)
  values_info = tf.compat.v1.TensorInfo(dtype=info.dtype)
  values_info.tensor_shape.dim.add().size = rows
  return tf.compat.v1.SparseTensorValue(
      indices, _dense_value(key, values_info, graph, batch_size),
      np.array(dense_shape, np.int64))


def _ragged_value(key: str, info, graph: GraphIndex, batch_size: int):
  """One value per row at every ragged level."""
  flat_values, *splits = info.composite_tensor.components
  value = _dense_value(key, flat_values, graph, batch_size)
  rows = value.shape[0] if value.ndim else 1
  for split in reversed(splits):
    dtype = tf.as_dtype(split.dtype).as_numpy_dtype
    value = tf.compat.v1.ragged.RaggedTensorValue(
        value, np.arange(rows + 1, dtype=dtype))
  return value


def _input_value(key: str, info, graph: GraphIndex, batch_size: int):
  encoding = info.WhichOneof('encoding')
  if encoding == 'name':
    return _dense_value(key, info, graph, batch_size)
  if encoding == 'coo_sparse':
    return _sparse_value(key, info, graph, batch_size)
  if (encoding == 'composite_tensor' and
      info.composite_tensor.type_spec.type_spec_class == _RAGGED):
    return _ragged_value(key, info, graph, batch_size)
  raise UnsupportedInputError(f'input {key!r} is a {encoding} tensor')


def signature_feeds(signature_def: meta_graph_pb2.SignatureDef,
                    graph: GraphIndex,
                    batch_size: int = DEFAULT_BATCH_SIZE) -> Dict[str, object]:
  """Synthetic values for every input of a SignatureDef.

  Args:
    signature_def: the SignatureDef.
    graph: a GraphIndex of the MetaGraphDef holding it.
    batch_size: the size of unknown leading dimensions.

  Returns:
    input key -> numpy value, `SparseTensorValue` or `RaggedTensorValue`.

  Raises:
    UnsupportedInputError: an input is a composite tensor other than sparse
      or ragged, or has a dtype no synthetic value exists for.
  """
  return {key: _input_value(key, info, graph, batch_size)
          for key, info in sorted(signature_def.inputs.items())}


def _components(value) -> List[np.ndarray]:
  """A feed's arrays in the order `loading.input_tensor_names` lists them."""
  if isinstance(value, tf.compat.v1.SparseTensorValue):
    return [value.indices, value.values, value.dense_shape]
  if isinstance(value, tf.compat.v1.ragged.RaggedTensorValue):
    return [value.flat_values] + list(value.nested_row_splits)
  return [value]


def tensor_feeds(signature_def: meta_graph_pb2.SignatureDef,
                 feeds: Mapping[str, object]) -> Dict[str, np.ndarray]:
  """Graph tensor name -> value for `feeds`, each tensor once.

  A tensor listed under several input keys is fed the value of the first
  key, in sorted order.
  """
  by_name: Dict[str, np.ndarray] = {}
  for key in sorted(feeds):
    names = loading.input_tensor_names(signature_def.inputs[key])
    for name, array in zip(names, _components(feeds[key])):
      by_name.setdefault(name, array)
  return by_name


def _dtype_name(array: np.ndarray) -> str:
  return 'string' if array.dtype == object else array.dtype.name


def describe(signature_def: meta_graph_pb2.SignatureDef, graph: GraphIndex,
             feeds: Mapping[str, object]) -> str:
  """'x: float32[2,3], examples: 2 tf.Example(age,x)' style summary."""
  parts = []
  for key, value in feeds.items():
    if isinstance(value, tf.compat.v1.SparseTensorValue):
      shape = ','.join(map(str, value.dense_shape))
      parts.append(f'{key}: sparse {_dtype_name(value.values)}[{shape}]')
      continue
    if isinstance(value, tf.compat.v1.ragged.RaggedTensorValue):
      parts.append(f'{key}: ragged {_dtype_name(value.flat_values)}'
                   f'[{value.nested_row_splits[0].shape[0] - 1},...]')
      continue
    shape = ','.join(map(str, value.shape))
    if value.dtype != object:
      parts.append(f'{key}: {value.dtype.name}[{shape}]')
      continue
    features = graph.example_features(signature_def.inputs[key].name)
    if features is None:
      parts.append(f"{key}: b''[{shape}]")
    else:
      keys = ','.join(sorted(f.key for f in features))
      parts.append(f'{key}: tf.Example({keys})[{shape}]')
  return ', '.join(parts)
