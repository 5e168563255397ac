"""Every mode's MetaGraphDef imported into one `tf.compat.v1.wrap_function` graph.

The carrier mode is imported first, under its own names; each other mode
under a name scope (`eval/`, `serve/`), with its variable handles mapped onto
the carrier's (`_variable_map`), so that all functions cut out of the graph
read and write one set of variables. `wrap_function` lifts the variables out
of the graph: they become the converted model's variables.

Before the import, two things of the TF1 graphs are changed that TF2
functions would otherwise get wrong:

- Lookup tables created with `use_node_name_sharing=False` get
  `use_node_name_sharing=True` (and, if their `shared_name` is empty, a
  unique one). In a TF1 Session the initializer and the lookups run one
  kernel; in TF2 every function has its own, and the TF2 loader gives such
  a table a new name in every function, so the table the initializer fills
  would not be the one the signatures read ("Table not initialized").
- Graph functions get names unique to this conversion and mode.
- The non-carrier modes' collections no longer list the mapped variables, so
  they are not lifted a second time.
"""

import dataclasses
import uuid
from typing import Any, Dict, Mapping, Optional

import tensorflow as tf
from tensorflow.core.framework import variable_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from multimode_export import _tf_private
from multimode_export.graph import _graph_def as graph_def_lib
from multimode_export.publishing import _layout as layout_lib
from multimode_export.saved_model import _format
from multimode_export.tf2 import _source
from multimode_export.tf2 import _variable_map

_VARIABLE_COLLECTIONS = tuple(
    getattr(tf.compat.v1.GraphKeys, name) for name in (
        'GLOBAL_VARIABLES', 'LOCAL_VARIABLES', 'METRIC_VARIABLES',
        'MODEL_VARIABLES', 'TRAINABLE_VARIABLES', 'MOVING_AVERAGE_VARIABLES',
        'GLOBAL_STEP'))
_SHARING_ATTR = 'use_node_name_sharing'


@dataclasses.dataclass(frozen=True)
class MergedGraph:
  """The imported graph and where each mode's names went.

  Attributes:
    wrapped: the `wrap_function` result (owns the lifted variables).
    scopes: mode -> the name scope its nodes were imported under ('' for
      the carrier).
    saver_defs: mode -> its saver (names scoped), or None.
  """
  wrapped: Any
  scopes: Mapping[str, str]
  saver_defs: Mapping[str, Optional[Any]]

  @property
  def graph(self) -> tf.Graph:
    return self.wrapped.graph

  def name(self, mode: str, name: str) -> str:
    """A node or tensor name of `mode`'s MetaGraphDef, in the merged graph."""
    scope = self.scopes[mode]
    return f'{scope}/{name.lstrip("^")}' if scope else name

  def tensor(self, mode: str, name: str) -> tf.Tensor:
    return self.graph.as_graph_element(self.name(mode, name))


def _unique_table_names(graph_def, suffix: str) -> None:
  """Gives every per-kernel lookup table a shared name (see module doc)."""
  nodes = list(graph_def.node)
  for function in graph_def.library.function:
    nodes.extend(function.node_def)
  for node in nodes:
    if _SHARING_ATTR in node.attr and not node.attr[_SHARING_ATTR].b:
      if not node.attr['shared_name'].s:
        node.attr['shared_name'].s = f'{node.name}_{suffix}'.encode('utf-8')
      node.attr[_SHARING_ATTR].b = True


def _rename_in_attr(attr, names: Mapping[str, str]) -> None:
  if attr.HasField('func'):
    attr.func.name = names.get(attr.func.name, attr.func.name)
    for nested in attr.func.attr.values():
      _rename_in_attr(nested, names)
  if attr.HasField('list'):
    for function in attr.list.func:
      function.name = names.get(function.name, function.name)


def _unique_function_names(graph_def, suffix: str) -> None:
  """Renames the graph's functions (e.g. control flow v2 branches).

  Functions are registered in the process by name: two graphs (two modes,
  or two conversions) with one name and different bodies would collide.
  """
  library = graph_def.library
  names = {f.signature.name: f'{f.signature.name}_{suffix}'
           for f in library.function}
  if not names:
    return
  node_lists = [graph_def.node] + [f.node_def for f in library.function]
  for nodes in node_lists:
    for node in nodes:
      node.op = names.get(node.op, node.op)
      for attr in node.attr.values():
        _rename_in_attr(attr, names)
  for function in library.function:
    function.signature.name = names[function.signature.name]
  for gradient in library.gradient:
    gradient.function_name = names.get(gradient.function_name,
                                       gradient.function_name)
    gradient.gradient_func = names.get(gradient.gradient_func,
                                       gradient.gradient_func)


def _without_mapped_variables(meta_graph_def, mapped: Mapping[str, str]
                             ) -> None:
  for key in _VARIABLE_COLLECTIONS:
    if key not in meta_graph_def.collection_def:
      continue
    values = meta_graph_def.collection_def[key].bytes_list.value
    kept = []
    for value in values:
      variable_def = variable_pb2.VariableDef.FromString(value)
      if graph_def_lib.node_name(variable_def.variable_name) not in mapped:
        kept.append(value)
    del values[:]
    values.extend(kept)


def _prepared(part: _source.Part, mapped: Mapping[str, str], suffix: str
             ) -> meta_graph_pb2.MetaGraphDef:
  meta_graph_def = meta_graph_pb2.MetaGraphDef()
  meta_graph_def.CopyFrom(part.meta_graph_def)
  _unique_table_names(meta_graph_def.graph_def, suffix)
  _unique_function_names(meta_graph_def.graph_def, f'{suffix}_{part.mode}')
  _without_mapped_variables(meta_graph_def, mapped)
  # Assets are fed by the converted model's initializers; the TF1 importer
  # cannot read this collection anyway (it logs a warning per entry).
  meta_graph_def.collection_def.pop(_format.ASSETS_COLLECTION, None)
  return meta_graph_def


def _scope_for(mode: str, primary_nodes) -> str:
  """A scope no carrier node name starts with."""
  base = scope = layout_lib.MODE_DIRS[mode]
  n = 1
  while any(name == scope or name.startswith(scope + '/')
            for name in primary_nodes):
    n += 1
    scope = f'{base}_{n}'
  return scope


def import_graphs(source: _source.Source,
                  plan: _variable_map.VariablePlan) -> MergedGraph:
  """Imports every mode of `source` into one wrap_function graph.

  Args:
    source: the export.
    plan: its variable mapping.

  Returns:
    The MergedGraph; no variable has a value yet.
  """
  suffix = uuid.uuid4().hex[:12]
  primary_nodes = [n.name for n in source.primary.meta_graph_def.graph_def.node]
  scopes = {source.primary.mode: ''}
  for part in source.parts[1:]:
    scopes[part.mode] = _scope_for(part.mode, primary_nodes)
  savers: Dict[str, Any] = {}

  def body():
    graph = tf.compat.v1.get_default_graph()
    for part in source.parts:
      mapped = plan.shared.get(part.mode, {})
      input_map = {f'{node}:0': graph.get_tensor_by_name(f'{target}:0')
                   for node, target in mapped.items()}
      saver = tf.compat.v1.train.import_meta_graph(
          _prepared(part, mapped, suffix), clear_devices=True,
          import_scope=scopes[part.mode] or None, input_map=input_map)
      savers[part.mode] = saver.saver_def if saver is not None else None

  wrapped = tf.compat.v1.wrap_function(body, [])
  return MergedGraph(wrapped, scopes, savers)


def prune(merged: MergedGraph, name: str, feeds, fetches,
          control_outputs=()) -> Any:
  """A function of the merged graph that captures only what it reads.

  Args:
    merged: the graph.
    name: the function's name.
    feeds: (keyword, tensor) pairs.
    fetches: output key -> tensor.
    control_outputs: operations to run on every call.
  """
  return _tf_private.prune_with_own_captures(
      merged.wrapped, feeds, fetches, control_outputs, name)
