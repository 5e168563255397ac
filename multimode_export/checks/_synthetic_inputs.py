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

Only the GraphDef is read; nothing is run.
"""

import collections
import dataclasses
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_shape_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from multimode_export.graph import _graph_def as graph_def_lib

DEFAULT_BATCH_SIZE = 2

# Ops between a receiver's string placeholder and its parser.
_PASSTHROUGH_OPS = frozenset(
    ('Identity', 'Reshape', 'ExpandDims', 'Squeeze', 'IdentityN'))
_PARSE_OPS = frozenset(('ParseExample', 'ParseExampleV2', 'ParseSingleExample'))
_MAX_DEPTH = 4


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

  def __init__(self, graph_def):
    self.nodes = graph_def_lib.node_index(graph_def)
    self.consumers = collections.defaultdict(list)
    for node in graph_def.node:
      for inp in node.input:
        if not inp.startswith('^'):
          self.consumers[graph_def_lib.node_name(inp)].append(node)

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
    frontier = [(graph_def_lib.node_name(tensor_name), 0)]
    seen = set()
    parsers = []
    while frontier:
      name, depth = frontier.pop()
      if name in seen or depth > _MAX_DEPTH:
        continue
      seen.add(name)
      for consumer in self.consumers.get(name, ()):
        if consumer.op in _PARSE_OPS:
          parsers.append(consumer)
        elif consumer.op in _PASSTHROUGH_OPS:
          frontier.append((consumer.name, depth + 1))
    if not parsers:
      return None
    features: Dict[str, ExampleFeature] = {}
    for parser in parsers:
      for feature in _parse_features(parser, self.nodes):
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


def signature_feeds(signature_def: meta_graph_pb2.SignatureDef,
                    graph: GraphIndex,
                    batch_size: int = DEFAULT_BATCH_SIZE
                   ) -> Dict[str, np.ndarray]:
  """Synthetic values for every input of a SignatureDef.

  Args:
    signature_def: the SignatureDef.
    graph: a GraphIndex of the MetaGraphDef holding it.
    batch_size: the size of unknown leading dimensions.

  Returns:
    input key -> numpy value.

  Raises:
    UnsupportedInputError: an input is a composite tensor or has a dtype no
      synthetic value exists for.
  """
  feeds = {}
  for key, info in sorted(signature_def.inputs.items()):
    if info.WhichOneof('encoding') != 'name':
      raise UnsupportedInputError(
          f'input {key!r} is a {info.WhichOneof("encoding")} tensor')
    if not info.dtype:
      raise UnsupportedInputError(f'input {key!r} has no dtype')
    dtype = tf.as_dtype(info.dtype)
    shape = feed_shape(info.tensor_shape, batch_size)
    if dtype == tf.string:
      features = graph.example_features(info.name)
      value = b'' if features is None else make_example(features)
      # Not np.full: it would go through a bytes array and drop trailing NULs.
      array = np.empty(shape, dtype=object)
      array.fill(value)
      feeds[key] = array
    elif dtype.is_numpy_compatible and (dtype.is_bool or dtype.is_integer or
                                        dtype.is_floating or dtype.is_complex):
      feeds[key] = np.zeros(shape, dtype=dtype.as_numpy_dtype)
    else:
      raise UnsupportedInputError(
          f'input {key!r} has dtype {dtype.name}, for which no synthetic value '
          'exists')
  return feeds


def describe(signature_def: meta_graph_pb2.SignatureDef, graph: GraphIndex,
             feeds: Mapping[str, np.ndarray]) -> str:
  """'x: float32[2,3], examples: 2 tf.Example(age,x)' style summary."""
  parts = []
  for key, value in feeds.items():
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
