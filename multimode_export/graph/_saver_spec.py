"""Which checkpoint entries a MetaGraphDef's saver restores, read from the graph.

A SavedModel is loaded by running its saver's restore op against
`variables/variables`. That op is a small subgraph of `RestoreV2` nodes whose
constant inputs name every checkpoint key, its slice and its dtype. Reading
them from the GraphDef tells, without a Session and without touching any
tensor value, exactly what a graph needs from a checkpoint: the same question
for an export being built and for any SavedModel being verified.
"""

import collections
import dataclasses
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Tuple

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2

from multimode_export.graph import _graph_def as graph_def_lib


class UnsupportedSaverError(Exception):
  """The saver's restore op is not built from RestoreV2 nodes we can read.

  Internal: the export falls back to a Session-based variables path.
  """


@dataclasses.dataclass(frozen=True)
class VariableSpec:
  """One checkpoint entry a graph restores.

  Attributes:
    name: the checkpoint key.
    dtype: dtype name, e.g. 'float32'.
    shape: the full shape, or None when the graph does not fix it.
    slices: the slice specs read ('' means the whole tensor), sorted.
  """
  name: str
  dtype: str
  shape: Optional[Tuple[int, ...]]
  slices: Tuple[str, ...] = ('',)

  @property
  def is_partitioned(self) -> bool:
    return self.slices != ('',)


def _const_strings(node) -> List[str]:
  try:
    return graph_def_lib.const_strings(node)
  except ValueError as e:
    raise UnsupportedSaverError(str(e)) from e


def _shape_of_attr(node) -> Optional[Tuple[int, ...]]:
  shape = tf.TensorShape(node.attr['shape'].shape)
  if shape.rank is None or not shape.is_fully_defined():
    return None
  return tuple(shape.as_list())


def _full_shape_from_slice(spec: str) -> Optional[Tuple[int, ...]]:
  # A slice spec is "<dim> <dim> ... <start,len:start,len...>"
  parts = spec.split(' ')
  return tuple(int(p) for p in parts[:-1]) if len(parts) > 1 else None


def _consumers_through_identities(output: str, consumers) -> Iterator:
  """The nodes that read a tensor, directly or through Identity ops (which
  are followed, not yielded), each tensor visited once."""
  frontier, seen = [output], set()
  while frontier:
    tensor = frontier.pop()
    if tensor in seen:
      continue
    seen.add(tensor)
    for consumer in consumers.get(tensor, ()):
      if consumer.op == 'Identity':
        frontier.append(consumer.name + ':0')
      else:
        yield consumer


def _assigned_shape(output: str, nodes, consumers) -> Optional[Tuple[int, ...]]:
  """Follows a restored tensor to the variable it is assigned to."""
  for consumer in _consumers_through_identities(output, consumers):
    if consumer.op in ('Assign', 'AssignVariableOp'):
      target = nodes.get(graph_def_lib.node_name(consumer.input[0]))
      if target is not None and 'shape' in target.attr:
        return _shape_of_attr(target)
  return None


def _reachable(nodes, start: str, wanted: str, refused: Tuple[str, ...]):
  """The `wanted`-op nodes `start` depends on (inputs and control inputs)."""
  found = []
  stack = [graph_def_lib.node_name(start)]
  seen = set()
  while stack:
    name = stack.pop()
    if name in seen or name not in nodes:
      continue
    seen.add(name)
    node = nodes[name]
    if node.op == wanted:
      found.append(node)
      continue
    if node.op in refused:
      raise UnsupportedSaverError(f'{name} is a V1-format {node.op}')
    stack.extend(graph_def_lib.node_name(i) for i in node.input)
  return found


def required_variables(meta_graph_def: meta_graph_pb2.MetaGraphDef
                      ) -> Dict[str, VariableSpec]:
  """The checkpoint entries restored by a MetaGraphDef's saver.

  Args:
    meta_graph_def: a `tf.compat.v1.MetaGraphDef` with a `saver_def`.

  Returns:
    checkpoint key -> VariableSpec.

  Raises:
    UnsupportedSaverError: if the MetaGraphDef has no saver or its restore op
      is not made of readable RestoreV2 nodes (e.g. a V1-format saver).
  """
  saver_def = meta_graph_def.saver_def
  if not saver_def.restore_op_name:
    raise UnsupportedSaverError('the MetaGraphDef has no saver')
  nodes = graph_def_lib.node_index(meta_graph_def.graph_def)
  consumers = collections.defaultdict(list)  # 'node:index' -> consumers
  for node in meta_graph_def.graph_def.node:
    for inp in graph_def_lib.inputs_of(node):
      if not inp.startswith('^'):
        name = graph_def_lib.node_name(inp)
        consumers[f'{name}:{graph_def_lib.output_index(inp)}'].append(node)

  restores = _reachable(nodes, saver_def.restore_op_name, 'RestoreV2',
                        ('Restore', 'RestoreSlice'))
  if not restores:
    raise UnsupportedSaverError(
        f'restore op {saver_def.restore_op_name!r} reads no RestoreV2 node')

  specs: Dict[str, VariableSpec] = {}
  for node in restores:
    names = _const_strings(nodes[graph_def_lib.node_name(node.input[1])])
    slices = _const_strings(nodes[graph_def_lib.node_name(node.input[2])])
    dtypes = [tf.as_dtype(t).name for t in node.attr['dtypes'].list.type]
    for i, (name, spec, dtype) in enumerate(zip(names, slices, dtypes)):
      if spec:
        shape = _full_shape_from_slice(spec)
      else:
        shape = _assigned_shape(f'{node.name}:{i}', nodes, consumers)
      _merge_into(specs, VariableSpec(name, dtype, shape, (spec,)))
  return specs


def saved_constants(meta_graph_def: meta_graph_pb2.MetaGraphDef,
                    restored: Optional[Mapping[str, VariableSpec]] = None
                   ) -> Dict[str, np.ndarray]:
  """Entries the saver writes from graph constants and never restores.

  A `tf.train.Checkpoint` used as a Scaffold saver writes its object graph
  (`_CHECKPOINTABLE_OBJECT_GRAPH`) this way: a string constant describing
  the objects of the graph it was built in, which object-based restores
  (`tf.train.Checkpoint.restore`, Keras `load_weights`) need. The stock
  export saves it with the variables carrier's saver; these are the values.

  Args:
    meta_graph_def: a `tf.compat.v1.MetaGraphDef` with a `saver_def`.
    restored: its `required_variables`, if already read (the graph is not
      walked twice).

  Returns:
    checkpoint key -> value; empty for an ordinary name-based saver.

  Raises:
    UnsupportedSaverError: the restore op is unreadable, or the saver writes a
      non-restored entry that is not a constant (only a Session can produce
      its value).
  """
  saver_def = meta_graph_def.saver_def
  if not saver_def.save_tensor_name:
    raise UnsupportedSaverError('the MetaGraphDef has no saver')
  if restored is None:
    restored = required_variables(meta_graph_def)
  nodes = graph_def_lib.node_index(meta_graph_def.graph_def)
  constants: Dict[str, np.ndarray] = {}
  # A V1-format save op (Save/SaveSlices) finds no SaveV2 node: such a
  # name-based saver writes no constants, and its restore side is read above.
  for node in _reachable(nodes, saver_def.save_tensor_name, 'SaveV2', ()):
    names = _const_strings(nodes[graph_def_lib.node_name(node.input[1])])
    for name, tensor in zip(names, node.input[3:]):
      if name in restored:
        continue
      source = nodes.get(graph_def_lib.node_name(tensor))
      while source is not None and source.op == 'Identity':
        source = nodes.get(graph_def_lib.node_name(source.input[0]))
      if source is None or source.op != 'Const':
        raise UnsupportedSaverError(
            f'the saver writes {name!r} from a computed tensor and never '
            'restores it')
      constants[name] = tf.make_ndarray(source.attr['value'].tensor)
  return constants


@dataclasses.dataclass(frozen=True)
class RestoreTarget:
  """Where a saver's restore op puts one checkpoint entry.

  Attributes:
    key: the checkpoint key.
    slice_spec: the slice read ('' for the whole tensor).
    node: the node the value is written into: a variable's handle or
      `VariableV2`, a lookup table; None when it could not be followed.
    op: the op that writes it (`AssignVariableOp`, `Assign`,
      `LookupTableImportV2`, ...), or None.
  """
  key: str
  slice_spec: str
  node: Optional[str]
  op: Optional[str]


def _target_of(output: str, nodes, consumers) -> Tuple[Optional[str],
                                                       Optional[str]]:
  """(target node, writing op) of a restored tensor, through Identity ops."""
  for consumer in _consumers_through_identities(output, consumers):
    if consumer.input:
      return graph_def_lib.node_name(consumer.input[0]), consumer.op
  return None, None


def restore_targets(meta_graph_def: meta_graph_pb2.MetaGraphDef
                   ) -> Tuple[RestoreTarget, ...]:
  """Every entry a MetaGraphDef's saver restores, and where it goes.

  Raises:
    UnsupportedSaverError: as `required_variables`.
  """
  saver_def = meta_graph_def.saver_def
  if not saver_def.restore_op_name:
    raise UnsupportedSaverError('the MetaGraphDef has no saver')
  nodes = graph_def_lib.node_index(meta_graph_def.graph_def)
  consumers = collections.defaultdict(list)
  for node in meta_graph_def.graph_def.node:
    for inp in node.input:
      if not inp.startswith('^'):
        name = graph_def_lib.node_name(inp)
        consumers[f'{name}:{graph_def_lib.output_index(inp)}'].append(node)
  targets = []
  for node in _reachable(nodes, saver_def.restore_op_name, 'RestoreV2',
                         ('Restore', 'RestoreSlice')):
    names = _const_strings(nodes[graph_def_lib.node_name(node.input[1])])
    slices = _const_strings(nodes[graph_def_lib.node_name(node.input[2])])
    for i, (name, spec) in enumerate(zip(names, slices)):
      target, op = _target_of(f'{node.name}:{i}', nodes, consumers)
      targets.append(RestoreTarget(name, spec, target, op))
  return tuple(targets)


def _merge_into(specs: Dict[str, VariableSpec], new: VariableSpec) -> None:
  old = specs.get(new.name)
  if old is None:
    specs[new.name] = new
    return
  slices = tuple(sorted(set(old.slices) | set(new.slices)))
  specs[new.name] = dataclasses.replace(
      old, shape=old.shape or new.shape, slices=slices)


def union(spec_maps: Iterable[Mapping[str, VariableSpec]]
         ) -> Dict[str, VariableSpec]:
  """Merges several graphs' needs; the first map's entries take precedence."""
  merged: Dict[str, VariableSpec] = {}
  for spec_map in spec_maps:
    for name, spec in spec_map.items():
      merged.setdefault(name, spec)
  return merged
