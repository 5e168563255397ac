"""The safety scan: what `verify` looks at before it runs anything.

A SavedModel is a program. Loading one runs its saver's restore op and its
main op; running a signature runs whatever the signature's outputs depend
on. Before `verify` does either, this module reads (never runs) every
MetaGraphDef and refuses:

- every op type not on the allowlist of ops that act only in memory
  (`_op_allowlist`; the reason given by `_refusals`: files, printing,
  Python callbacks, the network, ending the process, waiting forever,
  graphs carried as data, custom kernels), and every function attribute
  naming neither a function of the graph nor a listed op; checkpoint reads
  and writes outside the saver's own subgraph. `allow_ops` accepts named op
  types explicitly.
- constants (attributes holding a `TensorProto`) whose claimed size does
  not match what they store, or of dtype variant (`_tensor_claims`); they
  are judged from their protos, never expanded.
- the saver's and the assets' own file reads unless their paths are the
  ones the loaders set: the saver's filename tensor (`variables/variables`,
  plus constant suffixes without `..`) and asset tensors (a file under
  `assets/`). The paths are followed through the GraphDef, its functions and
  a TF2 SavedModel's object graph (see `_graph_flow`).
- asset file names that are absolute or leave `assets/` (`..`, a symbolic
  link pointing out), and `variables/` files that link out of the export;
- a `variables/` index whose entries claim other sizes than they store (a
  forged index would make any reader allocate its claim).

Ambiguous exports (duplicate tags, equal tag sets, signatures naming tensors
the graph lacks) are refused too, by `_ambiguity`, before any of this.
"""

from typing import FrozenSet, List, Optional, Sequence, Tuple

from tensorflow.core.framework import types_pb2

from multimode_export.checks import _ambiguity as ambiguity
from multimode_export.checks import _confinement
from multimode_export.checks import _findings as findings_lib
from multimode_export.checks import _graph_flow
from multimode_export.checks import _op_allowlist as allowlist
from multimode_export.checks import _refusals as refusals
from multimode_export.checks import _saver_reach as saver_reach
from multimode_export.checks import _tensor_claims as tensor_claims
from multimode_export.checks import _wording as wording
from multimode_export.graph import _graph_def
from multimode_export.saved_model import _format

# The input(s) holding the path each checkpoint op reads or writes.
_CHECKPOINT_PATH_INPUTS = {
    'Save': (0,), 'SaveV2': (0,), 'SaveSlices': (0,), 'Restore': (0,),
    'RestoreV2': (0,), 'RestoreSlice': (0,), 'DTensorRestoreV2': (0,),
    'MergeV2Checkpoints': (0, 1)}
# File reads allowed when they read an asset: op -> its filename input.
_ASSET_READS = {'ReadFile': 0, 'InitializeTableFromTextFile': 1,
                'InitializeTableFromTextFileV2': 1}
# Protobuf ops read a descriptor file unless the source is built in or inline.
_PROTO_OPS = frozenset(('DecodeProtoV2', 'EncodeProto'))
# Listed ops judged node by node (their paths, sources, attributes).
_BY_NODE = frozenset(_CHECKPOINT_PATH_INPUTS) | frozenset(_ASSET_READS) | (
    _PROTO_OPS) | {'ParseTensor'}


def _watched(op_type: str) -> bool:
  """Whether a node of `op_type` needs a look of its own.

  An op type not on the list does, and so does a listed one judged node by
  node (its paths, sources or attributes).
  """
  return op_type not in allowlist.ALLOWED or op_type in _BY_NODE


def _fed_assets(meta_graph_def) -> Tuple[str, ...]:
  """Node names of the asset tensors the loaders feed.

  TensorFlow's loaders take `asset_file_def`, or when it is empty the assets
  collection; a tensor only listed elsewhere keeps its graph value.
  """
  assets = (meta_graph_def.asset_file_def or
            _format.asset_file_defs(meta_graph_def))
  return tuple(_graph_def.node_name(a.tensor_info.name) for a in assets)


def _where(context: str, node: str) -> str:
  return (f"node '{node}' of function '{context}'" if context
          else f"node '{node}'")


class _GraphScan:
  """The op and path scan of one MetaGraphDef."""

  def __init__(self, meta_graph_def, tags):
    self.tags = tags
    saver_def = meta_graph_def.saver_def
    self.filename = (_graph_def.node_name(saver_def.filename_tensor_name)
                     if saver_def.restore_op_name else None)
    self.assets = set(_fed_assets(meta_graph_def))
    fed = self.assets | ({self.filename} if self.filename else set())
    self.flow = _graph_flow.GraphFlow(meta_graph_def, fed, _watched)
    self.saver_only = saver_reach.saver_only(meta_graph_def, self.flow)

  def findings(self) -> List[findings_lib.Finding]:
    found = []
    for context in self.flow.contexts.values():
      # Only nodes with attributes or an op type `_watched` flags: the rest
      # (on a hostile graph, millions of NoOps) are allowed as they are.
      for node in context.flagged_nodes():
        op = node.op
        reason = None if not _watched(op) else self._refusal(context.name,
                                                              node)
        if reason:
          found.append(findings_lib.Finding(
              self.tags, _where(context.name, node.name), reason, op))
        if _graph_def.sets_field(node, 'attr'):
          found += self._attr_findings(_where(context.name, node.name), node)
    return found

  def _attr_findings(self, where: str, node) -> List[findings_lib.Finding]:
    """Constants held in attributes, and what function attributes run."""
    found = []
    for value in node.attr.values():
      tensors = [value.tensor] if value.HasField('tensor') else []
      for tensor in tensors + list(value.list.tensor):
        problem = tensor_claims.constant_problem(tensor)
        if problem:
          found.append(findings_lib.Finding(self.tags, where, problem))
      names = [value.func.name] if value.HasField('func') else []
      for name in names + [f.name for f in value.list.func]:
        if not self.flow.is_function(name) and name not in allowlist.ALLOWED:
          found.append(findings_lib.Finding(
              self.tags, where, f"runs {name!r}, neither a function of the "
              'graph nor a listed op: ' + refusals.reason(name), name))
    return found

  def _refusal(self, context: str, node) -> Optional[str]:
    """Why `node` is refused, or None."""
    op = node.op
    inputs = [i for i in node.input if not i.startswith('^')]
    wanted = max(_CHECKPOINT_PATH_INPUTS.get(op, (-1,)) +
                 (_ASSET_READS.get(op, -1),))
    if wanted >= len(inputs):
      return f'has {len(inputs)} inputs, fewer than {op} takes'
    if op in _CHECKPOINT_PATH_INPUTS:
      if (context, node.name) not in self.saver_only:
        return refusals.CHECKPOINT
      for index in _CHECKPOINT_PATH_INPUTS[op]:
        problem = self._saver_path_problem(context, inputs[index])
        if problem:
          return problem
      return None
    if op in _ASSET_READS:
      sources = self.flow.sources(context, inputs[_ASSET_READS[op]])
      if sources and all(root in self.assets and not suffix
                         for root, suffix in sources):
        return None
      return 'reads a file that is not an asset of the export'
    if op in _PROTO_OPS:
      source = node.attr['descriptor_source'].s.decode('utf-8', 'replace')
      if source == 'local://' or source.startswith('bytes://'):
        return None
      return f'reads the protobuf descriptor file {source!r}'
    if self.flow.is_function(op) or op in allowlist.ALLOWED:
      return None  # a function of the graph is scanned as a context
    if op == 'ParseTensor' and node.attr['out_type'].type == (
        types_pb2.DT_VARIANT):
      return 'decodes a variant (a serialized object) from a string'
    return refusals.reason(op)

  def _saver_path_problem(self, context: str, ref: str) -> Optional[str]:
    sources = self.flow.sources(context, ref)
    if not sources or any(root != self.filename for root, _ in sources):
      return ("reads a path other than the saver's filename tensor, which "
              'the loaders set to variables/variables')
    for _, suffix in sources:
      if '..' in suffix.split('/') or '\\' in suffix or '\0' in suffix:
        return f"the saver's path leaves variables/ with the suffix {suffix!r}"
    return None


def scan_meta_graph(meta_graph_def, export_dir: str,
                    allow_ops: FrozenSet[str] = frozenset(),
                    problems: Sequence[ambiguity.Problem] = ()
                   ) -> findings_lib.ScanResult:
  """Scans one MetaGraphDef's ops (graph and functions) and asset names.

  Args:
    meta_graph_def: the MetaGraphDef.
    export_dir: the SavedModel directory (for asset links).
    allow_ops: op types to accept (see `findings_lib.check_allow_ops`).
    problems: (where, why) found elsewhere, refused with the rest (the
      tag-set problems `scan_saved_model` finds across MetaGraphDefs).

  Returns:
    A ScanResult; nothing is run.
  """
  tags = _format.tags_of(meta_graph_def)
  scan = _GraphScan(meta_graph_def, tags)
  problems = list(problems) + ambiguity.signature_problems(
      meta_graph_def, scan.flow.contexts[_graph_flow.MAIN].nodes)
  for tensor, filename in _format.asset_files(meta_graph_def):
    problems += _confinement.asset_name_problems(export_dir, tensor, filename)
  found = [findings_lib.Finding(tags, where, why) for where, why in problems]
  found += scan.findings()
  num_functions = len(scan.flow.contexts) - 1
  scanned = (f'{len(meta_graph_def.graph_def.node)} nodes and '
             f'{wording.count(num_functions, "function")}')
  return findings_lib.ScanResult(
      tags, scanned,
      tuple(f for f in found if f.op_type not in allow_ops),
      tuple(f for f in found if f.op_type in allow_ops))


def scan_files(export_dir: str) -> findings_lib.ScanResult:
  """Scans the export's `variables/` index and its links (tags ())."""
  scanned, problems = _confinement.index_problems(export_dir)
  problems += _confinement.link_problems(export_dir)
  return findings_lib.ScanResult((), scanned, tuple(
      findings_lib.Finding((), where, why) for where, why in problems))


def scan_saved_model(export_dir: str, saved_model,
                     allow_ops: FrozenSet[str] = frozenset()
                    ) -> List[findings_lib.ScanResult]:
  """The scan of the export's files, then of each MetaGraphDef, in order.

  Args:
    export_dir: the SavedModel directory.
    saved_model: its parsed SavedModel proto.
    allow_ops: op types to accept (see `findings_lib.check_allow_ops`).

  Returns:
    One ScanResult for the files (tags ()) and one per MetaGraphDef.
  """
  tag_problems = ambiguity.tag_problems(saved_model.meta_graphs)
  return [scan_files(export_dir)] + [
      scan_meta_graph(m, export_dir, allow_ops, tag_problems.get(i, ()))
      for i, m in enumerate(saved_model.meta_graphs)]
