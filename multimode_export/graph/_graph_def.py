"""Reading GraphDefs without importing them: node names, indexes, constants.

Shared by the modules that read a saver or a parsing spec out of a graph
(`_saver_spec`, `checks/_synthetic_inputs`) and the checks that scan graphs.
"""

from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import graph_pb2
from tensorflow.core.framework import node_def_pb2


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
  values = tf.make_ndarray(node.attr['value'].tensor)
  return [v.decode('utf-8') for v in np.asarray(values).reshape(-1)]
