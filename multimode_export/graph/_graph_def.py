"""Reading GraphDefs without importing them: node names, indexes, constants.

Shared by the modules that read a saver or a parsing spec out of a graph
(`_saver_spec`, `checks/_synthetic_inputs`) and the checks that scan graphs.
"""

from typing import Dict, List, Optional

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


def node_index(graph_def: graph_pb2.GraphDef
              ) -> Dict[str, node_def_pb2.NodeDef]:
  """Node name -> NodeDef of a GraphDef."""
  return {n.name: n for n in graph_def.node}


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
