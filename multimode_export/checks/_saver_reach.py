"""Which nodes of a MetaGraphDef only its saver runs.

The saver's own checkpoint ops (`SaveV2`, `RestoreV2`, ...) are allowed by
the safety scan only where nothing but the saver can run them: no signature
tensor and no collection node (main op, train op, table initializers)
depends on them, and no object graph offers their functions to callers.
"""

from typing import Iterable, Set, Tuple

from multimode_export.checks import _graph_flow
from multimode_export.graph import _graph_def


def _closure(nodes, starts: Iterable[str]) -> set:
  """Nodes `starts` depend on (inputs and control inputs), with them."""
  seen = set()
  stack = list(starts)
  while stack:
    name = stack.pop()
    if name in seen or name not in nodes:
      continue
    seen.add(name)
    stack.extend(_graph_def.node_name(i) for i in nodes[name].input)
  return seen


def _tensor_nodes(info) -> set:
  """The nodes a signature's TensorInfo names (any encoding)."""
  encoding = info.WhichOneof('encoding')
  if encoding == 'name':
    return {_graph_def.node_name(info.name)}
  if encoding == 'coo_sparse':
    sparse = info.coo_sparse
    return {_graph_def.node_name(n) for n in (
        sparse.values_tensor_name, sparse.indices_tensor_name,
        sparse.dense_shape_tensor_name)}
  if encoding == 'composite_tensor':
    return set().union(*(_tensor_nodes(c)
                         for c in info.composite_tensor.components))
  return set()


def _fetched_nodes(meta_graph_def) -> set:
  """Nodes the loaders or a caller run by name: signatures, collections."""
  names = set()
  for signature in meta_graph_def.signature_def.values():
    for info in list(signature.inputs.values()) + list(
        signature.outputs.values()):
      names |= _tensor_nodes(info)
  for collection in meta_graph_def.collection_def.values():
    names |= {_graph_def.node_name(n) for n in collection.node_list.value}
  return names


class SaverOnly:
  """The (context, node name) pairs nothing but the saver runs.

  Kept as the main-graph nodes something else runs (usually few) and the
  functions only the saver calls, not as a set of every pair: a graph can
  have millions of nodes.
  """

  def __init__(self, main_nodes, outside: Set[str], functions: Set[str]):
    self._main_nodes = main_nodes
    self._outside = outside
    self._functions = functions

  def add_function(self, function: str) -> None:
    self._functions.add(function)

  def __contains__(self, pair: Tuple[str, str]) -> bool:
    context, name = pair
    if context == _graph_flow.MAIN:
      return name in self._main_nodes and name not in self._outside
    return context in self._functions


def saver_only(meta_graph_def, flow) -> SaverOnly:
  """The (context, node) pairs nothing but the saver runs.

  The loaders and `verify` run the saver's save and restore ops, the nodes
  of the graph's collections (main op, train op, table initializers) and
  the signatures' tensors. A main-graph node none of the latter depends on
  runs only through the saver (or never); a function is the saver's when
  every reference to it is a call from such a node and no object graph
  offers it to Python callers.
  """
  nodes = flow.contexts[_graph_flow.MAIN].nodes
  outside = _closure(nodes, sorted(_fetched_nodes(meta_graph_def)))
  owned = SaverOnly(nodes, outside, set())
  exposed = set(meta_graph_def.object_graph_def.concrete_functions)
  functions = set(flow.call_sites) - flow.other_references - exposed
  changed = True
  while changed:
    changed = False
    for function in sorted(functions):
      if all((context, call.name) in owned
             for context, call in flow.call_sites[function]):
        owned.add_function(function)
        functions.discard(function)
        changed = True
  return owned
