"""Where a MetaGraphDef's tensors come from, read from its GraphDef alone.

The safety scan (`_safety`) allows a file-reading op only when the path it
reads is one the loaders set: the saver's filename tensor (fed with
`variables/variables`) or an asset tensor (fed with a file under `assets/`).
This module answers "where can this string come from?" without running
anything: it follows a tensor back through the few ops that build paths
(Identity, StringJoin with constants, ShardedFilename, Select, Pack), through
function arguments to every place the function is called from (call nodes of
the GraphDef and, for a TF2 SavedModel, the captures its object graph binds),
and through resource variables that are only ever assigned from such a path.
Anything else is "unknown", and an unknown source is never allowed.
"""

import collections
import itertools
from typing import (Callable, Dict, FrozenSet, Iterable, List, Optional, Set,
                    Tuple)

import tensorflow as tf

from multimode_export.graph import _graph_def

# A source: (main-graph node the value starts from, constant suffix appended).
Source = Tuple[str, str]
Sources = Optional[FrozenSet[Source]]  # None: unknown
MAIN = ''  # the context name of the main GraphDef

_PASS_THROUGH = frozenset(('Identity', 'Snapshot', 'StopGradient'))
_CALL_OPS = frozenset(('PartitionedCall', 'StatefulPartitionedCall'))
_SHARD_SUFFIX = '-00000-of-00000'  # what ShardedFilename appends (digits)
_MAX_ALTERNATIVES = 64
_MAX_DEPTH = 64


class _Context:
  """The nodes of the main GraphDef or of one library function."""

  def __init__(self, name: str, nodes, args: Tuple[str, ...] = ()):
    self.name = name
    self.nodes = _graph_def.NodeIndex(nodes)
    self.args = args
    self._nodes = nodes
    # Positions of the nodes with attributes or a watched op type.
    self.flagged: List[int] = []

  def flagged_nodes(self):
    """The nodes `GraphFlow`'s `watch` flagged, or that set attributes."""
    return (self._nodes[i] for i in self.flagged)


def _called_function(node, functions) -> Optional[str]:
  """The function a call node runs, or None when `node` is not a call."""
  if node.op in functions:
    return node.op
  if node.op in _CALL_OPS:
    return node.attr['f'].func.name
  return None


def _referenced_functions(node) -> List[str]:
  """Every function named in `node`'s attributes (bodies, branches, maps)."""
  names = []
  for value in node.attr.values():
    if value.HasField('func'):
      names.append(value.func.name)
    names.extend(f.name for f in value.list.func)
  return names


class GraphFlow:
  """Contexts, call sites and path sources of one MetaGraphDef."""

  def __init__(self, meta_graph_def, fed: Iterable[str],
               watch: Callable[[str], bool] = lambda op_type: False):
    """Indexes the graph.

    Args:
      meta_graph_def: the MetaGraphDef.
      fed: main-graph node names whose values the loaders feed (the saver's
        filename tensor, the asset tensors): the roots of every source.
      watch: op types whose nodes each context lists in `flagged` (with the
        nodes that set attributes), so that a scan needs no second pass.
    """
    graph_def = meta_graph_def.graph_def
    library = {f.signature.name: f for f in graph_def.library.function}
    self.contexts = {MAIN: _Context(MAIN, graph_def.node)}
    for name, function in library.items():
      self.contexts[name] = _Context(
          name, function.node_def,
          tuple(a.name for a in function.signature.input_arg))
    self.fed = frozenset(fed)
    # function -> [(context, call node)]; functions referenced otherwise.
    self.call_sites: Dict[str, List[Tuple[str, object]]] = (
        collections.defaultdict(list))
    self.other_references: Set[str] = set()
    # One pass over every node, touching only the fields it sets.
    for context in self.contexts.values():
      for position, node in enumerate(context.nodes.values()):
        attrs = _graph_def.sets_field(node, 'attr')
        op = node.op
        if attrs or watch(op):
          context.flagged.append(position)
        called = _called_function(node, library) if (
            attrs or op in library) else None
        if called is not None:
          self.call_sites[called].append((context.name, node))
        if attrs:
          self.other_references.update(
              f for f in _referenced_functions(node) if f != called)
    self._graph_def = graph_def
    self._consumers = None  # built when a variable's sources are asked for
    self._captures = _object_graph_captures(meta_graph_def)
    self._in_progress: Set[Tuple[str, str]] = set()
    self._memo: Dict[Tuple[str, str], Sources] = {}
    self._constants: Dict[Tuple[str, str], Optional[List[str]]] = {}
    self._handles: Dict[Tuple[str, str], Optional[Set[str]]] = {}

  def is_function(self, op_type: str) -> bool:
    return op_type in self.contexts and op_type != MAIN

  def sources(self, context: str, ref: str, depth: int = 0) -> Sources:
    """Where the string tensor `ref` of `context` can come from.

    Each node's answer is computed once (a chain of `Select`s each using
    the previous twice is a walk of its nodes, not of its 2**n paths). An
    answer cut short by the depth bound is unknown, and stays so: the memo
    can only refuse more, never allow more.
    """
    if depth > _MAX_DEPTH:
      return None
    key = (context, _graph_def.node_name(ref))
    if key not in self._memo:
      self._memo[key] = self._sources(context, key[1], depth)
    return self._memo[key]

  def _sources(self, context: str, name: str, depth: int) -> Sources:
    ctx = self.contexts[context]
    if name in ctx.args and name not in ctx.nodes:
      return self._arg_sources(context, ctx.args.index(name), depth + 1)
    if context == MAIN and name in self.fed:
      return frozenset({(name, '')})
    node = ctx.nodes.get(name)
    if node is None:
      return None
    inputs = [i for i in node.input if not i.startswith('^')]
    if node.op in _PASS_THROUGH:
      return self.sources(context, inputs[0], depth + 1)
    if node.op in ('Select', 'SelectV2'):
      return _union(self.sources(context, i, depth + 1) for i in inputs[1:3])
    if node.op == 'Pack':
      return _union(self.sources(context, i, depth + 1) for i in inputs)
    if node.op == 'ShardedFilename':
      return _append(self.sources(context, inputs[0], depth + 1),
                     [_SHARD_SUFFIX])
    if node.op == 'StringJoin':
      return self._joined(context, node, inputs, depth)
    if node.op == 'ReadVariableOp':
      return self._variable_sources(context, inputs[0], depth)
    return None

  def _joined(self, context: str, node, inputs: List[str],
              depth: int) -> Sources:
    """StringJoin(path, constants...): the path's sources, suffixed."""
    separator = node.attr['separator'].s.decode('utf-8', 'replace')
    pieces = [self.constant_strings(context, i) for i in inputs[1:]]
    if any(p is None for p in pieces):
      return None
    suffixes = []
    for combination in itertools.islice(itertools.product(*pieces),
                                        _MAX_ALTERNATIVES + 1):
      suffixes.append(''.join(separator + p for p in combination))
    if len(suffixes) > _MAX_ALTERNATIVES:
      return None
    return _append(self.sources(context, inputs[0], depth + 1), suffixes)

  def constant_strings(self, context: str, ref: str,
                       depth: int = 0) -> Optional[List[str]]:
    """The values a scalar string tensor can have, if all are constants.

    Read from the constants' protos (never expanded), once per node.
    """
    key = (context, _graph_def.node_name(ref))
    if depth > _MAX_DEPTH:
      return None
    if key not in self._constants:
      self._constants[key] = self._constant_strings(context, key[1], depth)
    return self._constants[key]

  def _constant_strings(self, context: str, name: str,
                        depth: int) -> Optional[List[str]]:
    node = self.contexts[context].nodes.get(name)
    if node is None:
      return None
    if node.op in _PASS_THROUGH:
      return self.constant_strings(context, node.input[0], depth + 1)
    if node.op in ('Select', 'SelectV2'):
      branches = [self.constant_strings(context, i, depth + 1)
                  for i in node.input[1:3]]
      if None in branches or len(branches[0]) + len(branches[1]) > (
          _MAX_ALTERNATIVES):
        return None
      return branches[0] + branches[1]
    if node.op != 'Const' or node.attr['dtype'].type != tf.string.as_datatype_enum:
      return None
    tensor = node.attr['value'].tensor
    if (len(tensor.string_val) != 1 or
        any(d.size != 1 for d in tensor.tensor_shape.dim)):
      return None  # not one scalar string: never expanded
    return [tensor.string_val[0].decode('utf-8', 'replace')]

  def _arg_sources(self, function: str, index: int, depth: int) -> Sources:
    """Sources of a function argument: every caller's, and its capture."""
    key = (function, str(index))
    if key in self._in_progress or function in self.other_references:
      return None
    self._in_progress.add(key)
    try:
      found: Set[Source] = set()
      for context, call in self.call_sites.get(function, ()):
        inputs = [i for i in call.input if not i.startswith('^')]
        if index >= len(inputs):
          return None
        sources = self.sources(context, inputs[index], depth + 1)
        if sources is None:
          return None
        found |= sources
      if function in self._captures:
        first_capture, bound = self._captures[function]
        # Explicit arguments come from whoever calls the restored function.
        if index < first_capture or bound[index - first_capture] is None:
          return None
        found.add((bound[index - first_capture], ''))
      return frozenset(found) if found else None
    finally:
      self._in_progress.discard(key)

  def _variable_sources(self, context: str, handle: str, depth: int
                       ) -> Sources:
    """What a resource variable holds, when only assigned from known paths."""
    variables = self._handle_variables(context, handle, depth + 1)
    if variables is None:
      return None
    found: Set[Source] = set()
    for variable in variables:
      for consumer in self._consumers_of(variable):
        if consumer.op in ('ReadVariableOp', 'VarIsInitializedOp'):
          continue
        if consumer.op != 'AssignVariableOp':
          return None  # passed to a function or op that may write it
        sources = self.sources(MAIN, consumer.input[1], depth + 1)
        if sources is None:
          return None
        found |= sources
    return frozenset(found) if found else None

  def _consumers_of(self, name: str) -> List[object]:
    """The main-graph nodes taking `name`'s outputs as data inputs."""
    if self._consumers is None:
      self._consumers = collections.defaultdict(list)
      for index, node in enumerate(self._graph_def.node):
        for ref in _graph_def.inputs_of(node):
          if not ref.startswith('^'):
            self._consumers[_graph_def.node_name(ref)].append(index)
    return [self._graph_def.node[i] for i in self._consumers.get(name, ())]

  def _handle_variables(self, context: str, handle: str, depth: int
                       ) -> Optional[Set[str]]:
    """The main-graph VarHandleOp nodes a resource handle can be (memoized)."""
    if depth > _MAX_DEPTH:
      return None
    key = (context, _graph_def.node_name(handle))
    if key not in self._handles:
      self._handles[key] = self._find_handle_variables(context, key[1], depth)
    return self._handles[key]

  def _find_handle_variables(self, context: str, name: str, depth: int
                            ) -> Optional[Set[str]]:
    ctx = self.contexts[context]
    if name in ctx.args and name not in ctx.nodes:
      index = ctx.args.index(name)
      if (context in self.other_references or context in self._captures or
          not self.call_sites.get(context)):
        return None  # bound through the object graph: a restored variable
      found = set()
      for caller, call in self.call_sites[context]:
        inputs = [i for i in call.input if not i.startswith('^')]
        variables = self._handle_variables(caller, inputs[index], depth + 1)
        if variables is None:
          return None
        found |= variables
      return found
    node = ctx.nodes.get(name)
    if context == MAIN and node is not None and node.op == 'VarHandleOp':
      return {name}
    if node is not None and node.op in _PASS_THROUGH:
      return self._handle_variables(context, node.input[0], depth + 1)
    return None


def _union(parts: Iterable[Sources]) -> Sources:
  found: Set[Source] = set()
  for part in parts:
    if part is None:
      return None
    found |= part
  return frozenset(found)


def _append(sources: Sources, suffixes: List[str]) -> Sources:
  if sources is None:
    return None
  return frozenset((root, suffix + extra) for root, suffix in sources
                   for extra in suffixes)


def _object_graph_captures(meta_graph_def
                          ) -> Dict[str, Tuple[int, List[Optional[str]]]]:
  """TF2 functions' captures: function -> (first capture arg, bound roots).

  A capture bound to an asset is rooted at the asset's tensor (the path the
  loader sets); any other capture (a variable, a constant) gets None.
  """
  graph = meta_graph_def.object_graph_def
  if not graph.nodes:
    return {}
  assets = meta_graph_def.asset_file_def
  library = {f.signature.name: len(f.signature.input_arg)
             for f in meta_graph_def.graph_def.library.function}
  captures = {}
  for name, function in graph.concrete_functions.items():
    bound: List[Optional[str]] = []
    for node_id in function.bound_inputs:
      node = graph.nodes[node_id] if node_id < len(graph.nodes) else None
      root = None
      if node is not None and node.WhichOneof('kind') == 'asset':
        index = node.asset.asset_file_def_index
        if index < len(assets):
          root = _graph_def.node_name(assets[index].tensor_info.name)
      bound.append(root)
    captures[name] = (library.get(name, 0) - len(bound), bound)
  return captures
