"""The functions of a TF2 object-based SavedModel, read from its proto.

`tf.saved_model.save` (and `convert_to_tf2`, whose result is "the TF2
form") writes one MetaGraphDef with an object graph: the root object's
children include its functions (`train_step`, `eval_update`, `serve`, ...).
`inspect` lists them and `verify` runs each once after loading the
SavedModel without tags. Only the proto is read; nothing is loaded.
"""

import dataclasses
from typing import Tuple

import tensorflow as tf

_FUNCTION_KINDS = ('function', 'bare_concrete_function')


@dataclasses.dataclass(frozen=True)
class ObjectFunction:
  """One function of the root object.

  Attributes:
    name: the attribute name on the loaded root (`loaded.<name>`).
    concrete: the name of its (first) concrete function in the library.
    inputs: (argument name, dtype name) of each input, captures excluded.
    captures: how many values (variables, assets, ...) it captures.
  """
  name: str
  concrete: str
  inputs: Tuple[Tuple[str, str], ...]
  captures: int

  def describe(self) -> str:
    """E.g. 'train_step(x: float32, label: float32), 5 captures'."""
    inputs = ', '.join(f'{name}: {dtype}' for name, dtype in self.inputs)
    plural = '' if self.captures == 1 else 's'
    return f'{self.name}({inputs}), {self.captures} capture{plural}'


def _concrete_names(node) -> Tuple[str, ...]:
  if node.WhichOneof('kind') == 'function':
    return tuple(node.function.concrete_functions)
  return (node.bare_concrete_function.concrete_function_name,)


def _dtype_name(enum: int) -> str:
  try:
    return tf.dtypes.as_dtype(enum).name
  except TypeError:
    return f'dtype {enum}'


def _input_leaves(value, name: str = '', keyed: bool = False):
  """(name, dtype name) of each tensor of a StructuredValue, nest's order.

  A tensor is named by its dict key (a keyword argument, a feature), else by
  its spec's name, else by its position.
  """
  kind = value.WhichOneof('kind')
  if kind == 'dict_value':
    for key in sorted(value.dict_value.fields):
      yield from _input_leaves(value.dict_value.fields[key], key, True)
  elif kind in ('tuple_value', 'list_value'):
    for i, item in enumerate(getattr(value, kind).values):
      yield from _input_leaves(item, f'arg{i}')
  elif kind in ('tensor_spec_value', 'bounded_tensor_spec_value'):
    spec = getattr(value, kind)
    yield (name if keyed else spec.name or name), _dtype_name(spec.dtype)
  elif kind == 'type_spec_value':
    yield name, value.type_spec_value.type_spec_class_name or 'composite'


def _inputs(graph, library, concrete: str, captures: int):
  """(name, dtype) of a concrete function's inputs, as its callers name them.

  From its input signature (keyword names, dict keys); else from the
  library's argument names.
  """
  if concrete in graph.concrete_functions:
    signature = graph.concrete_functions[concrete].canonicalized_input_signature
    if signature.WhichOneof('kind'):
      return tuple(_input_leaves(signature))
  args = list(library[concrete].input_arg) if concrete in library else []
  return tuple((a.name, _dtype_name(a.type))
               for a in args[:max(0, len(args) - captures)])


def root_functions(meta_graph_def) -> Tuple[ObjectFunction, ...]:
  """The root object's functions, in the object graph's order.

  Returns () for a MetaGraphDef without an object graph (every TF1 export)
  and skips a function without a concrete function.
  """
  graph = meta_graph_def.object_graph_def
  if not graph.nodes:
    return ()
  library = {f.signature.name: f.signature
             for f in meta_graph_def.graph_def.library.function}
  functions = []
  for child in graph.nodes[0].children:
    if child.node_id >= len(graph.nodes):
      continue
    node = graph.nodes[child.node_id]
    if node.WhichOneof('kind') not in _FUNCTION_KINDS:
      continue
    names = [n for n in _concrete_names(node) if n]
    if not names:
      continue
    concrete = names[0]
    captures = len(graph.concrete_functions[concrete].bound_inputs) if (
        concrete in graph.concrete_functions) else 0
    functions.append(ObjectFunction(
        child.local_name, concrete,
        _inputs(graph, library, concrete, captures), captures))
  return tuple(functions)


def is_object_based(saved_model) -> bool:
  """Whether a SavedModel loads without tags and has root functions.

  That is one MetaGraphDef with an object graph whose root has functions:
  what `tf.saved_model.save` and `convert_to_tf2` write.
  """
  metas = saved_model.meta_graphs
  return len(metas) == 1 and bool(root_functions(metas[0]))
