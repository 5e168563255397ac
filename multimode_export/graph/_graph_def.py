"""Reading GraphDefs without importing them: node names, indexes, constants.

Shared by the modules that read a saver or a parsing spec out of a graph
(`_saver_spec`, `checks/_synthetic_inputs`) and the checks that scan graphs.
"""

import collections.abc
from typing import List, Optional

import tensorflow as tf
from tensorflow.core.framework import graph_pb2
from tensorflow.core.framework import node_def_pb2

_MAX_REPEATED_STRINGS = 1 << 16


def node_name(input_name: str) -> str:
  """The node of a tensor or control input name: '^a', 'a:1' -> 'a'."""
  return input_name.lstrip('^').split(':')[0]


def output_index(input_name: str) -> int:
  """The output index of a tensor name: 'a:1' -> 1, 'a' -> 0."""
  parts = input_name.split(':')
  return int(parts[1]) if len(parts) > 1 else 0


def sets_field(node: node_def_pb2.NodeDef, field: str) -> bool:
  """Whether `node` sets `field` (e.g. 'attr', 'input').

  Asked of the fields set: reading `node.attr` or `node.input` of a node
  that has none makes protobuf allocate an empty container for it, hundreds
  of bytes per node, which a hostile graph of millions of `NoOp`s turns
  into gigabytes.
  """
  return any(f.name == field for f, _ in node.ListFields())


def inputs_of(node: node_def_pb2.NodeDef) -> List[str]:
  """`node`'s inputs, without touching an input list it does not set."""
  return list(node.input) if sets_field(node, 'input') else []


class NodeIndex(collections.abc.Mapping):
  """Node name -> NodeDef of a GraphDef, read from the GraphDef when asked.

  Only each node's position is kept: a Python object per NodeDef of a graph
  with millions of nodes would cost gigabytes.
  """

  def __init__(self, nodes):
    self._nodes = nodes
    self._index = {n.name: i for i, n in enumerate(nodes)}

  def __getitem__(self, name: str) -> node_def_pb2.NodeDef:
    return self._nodes[self._index[name]]

  def __contains__(self, name) -> bool:
    return name in self._index

  def __iter__(self):
    return iter(self._index)

  def __len__(self) -> int:
    return len(self._index)

  def values(self):
    return iter(self._nodes)


def node_index(graph_def: graph_pb2.GraphDef) -> NodeIndex:
  """Node name -> NodeDef of a GraphDef."""
  return NodeIndex(graph_def.node)


def const_strings(node: Optional[node_def_pb2.NodeDef]) -> List[str]:
  """The string values of a `Const` node, flattened.

  Raises:
    ValueError: `node` is missing or not a `Const`.
  """
  if node is None or node.op != 'Const':
    raise ValueError(f'{getattr(node, "name", None)!r} is '
                     f'{getattr(node, "op", "missing")}, not a Const')
  tensor = node.attr['value'].tensor
  if tensor.dtype != tf.string.as_datatype_enum:
    raise ValueError(f'{node.name!r} is a {tf.as_dtype(tensor.dtype).name} '
                     'Const, not a string one')
  count = 1
  for dim in tensor.tensor_shape.dim:
    count *= max(dim.size, 0)
  values = [v.decode('utf-8') for v in tensor.string_val]
  # Read from the proto, never expanded: a hostile graph's constant can claim
  # [2**34] elements and store one (TensorFlow repeats the last value).
  if len(values) == count:
    return values
  if len(values) <= 1 and count <= _MAX_REPEATED_STRINGS:
    return (values or [''])[:1] * count
  raise ValueError(f'{node.name!r} claims {count} strings and stores '
                   f'{len(values)}')
