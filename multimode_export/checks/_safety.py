"""The safety scan: what `verify` looks at before it runs anything.

A SavedModel is a program. Loading one runs its saver's restore op and its
main op; running a signature runs whatever the signature's outputs depend
on. Before `verify` does either, this module reads (never runs) every
MetaGraphDef and refuses:

- ops that act outside the export: file and directory I/O, readers and
  dataset sources that open files, checkpoint reads and writes outside the
  saver's own subgraph, printing and logging, summary writers and debug
  dumps, Python callbacks, ops that reach other processes or the network,
  `ImmutableConst` (maps a file), and ops the installed TensorFlow does not
  know (a custom kernel is arbitrary code). `allow_ops` accepts named op
  types explicitly.
- the saver's and the assets' own file reads unless their paths are the
  ones the loaders set: the saver's filename tensor (`variables/variables`,
  plus constant suffixes without `..`) and asset tensors (a file under
  `assets/`). The paths are followed through the GraphDef, its functions and
  a TF2 SavedModel's object graph (see `_graph_flow`).
- asset file names that are absolute or leave `assets/` (`..`, a symbolic
  link pointing out), and `variables/` files that link out of the export;
- a `variables/` index whose entries claim more bytes than they store (a
  forged index would make any reader allocate its claim).
"""

import dataclasses
import re
from typing import Dict, FrozenSet, Iterable, List, Optional, Tuple

import tensorflow as tf

from multimode_export import _tf_private
from multimode_export.checks import _confinement
from multimode_export.checks import _graph_flow
from multimode_export.checks import _wording as wording
from multimode_export.graph import _graph_def
from multimode_export.saved_model import _format

_FILES = 'reads or writes files'
_SOURCES = 'opens files (a reader or dataset source)'
_CHECKPOINT = 'reads or writes a checkpoint outside the saver'
_PRINTS = 'prints or logs'
_DUMPS = 'writes summaries or debug dumps'
_PYTHON = 'calls back into Python'
_NETWORK = 'reaches other processes or the network'
_MEMMAP = 'maps a file into memory'
_UNKNOWN = 'is not an op of the installed TensorFlow: custom kernel code'

_REFUSED_OPS: Dict[str, str] = {
    op: reason for reason, ops in (
        (_FILES, 'WriteFile ReadFile MatchingFiles LoadAndRemapMatrix '
         'GenerateVocabRemapping InitializeTableFromTextFile '
         'InitializeTableFromTextFileV2 FileSystemSetConfiguration '
         'RecordInput'),
        (_SOURCES, 'TextLineReader TextLineReaderV2 TFRecordReader '
         'TFRecordReaderV2 FixedLengthRecordReader FixedLengthRecordReaderV2 '
         'WholeFileReader WholeFileReaderV2 LMDBReader TextLineDataset '
         'TFRecordDataset TFRecordDatasetV2 FixedLengthRecordDataset '
         'FixedLengthRecordDatasetV2 CSVDataset CSVDatasetV2 '
         'ExperimentalCSVDataset LMDBDataset ExperimentalLMDBDataset '
         'SqlDataset ExperimentalSqlDataset MatchingFilesDataset '
         'ExperimentalMatchingFilesDataset CacheDataset CacheDatasetV2 '
         'SnapshotDataset SnapshotDatasetV2 SnapshotDatasetReader '
         'SnapshotNestedDatasetReader SnapshotChunkDataset SaveDataset '
         'SaveDatasetV2 LoadDataset DatasetToTFRecord '
         'ExperimentalDatasetToTFRecord'),
        (_CHECKPOINT, 'Save SaveV2 SaveSlices MergeV2Checkpoints Restore '
         'RestoreV2 RestoreSlice DTensorRestoreV2'),
        (_PRINTS, 'Print PrintV2'),
        (_DUMPS, 'SummaryWriter CreateSummaryFileWriter CreateSummaryDbWriter '
         'WriteSummary WriteRawProtoSummary WriteScalarSummary '
         'WriteHistogramSummary WriteImageSummary WriteAudioSummary '
         'WriteGraphSummary ImportEvent FlushSummaryWriter CloseSummaryWriter '
         'StatsAggregatorSetSummaryWriter DebugIdentity DebugIdentityV2 '
         'DebugIdentityV3 DebugNanCount DebugNumericSummary '
         'DebugNumericSummaryV2 DumpTensor'),
        (_PYTHON, 'PyFunc PyFuncStateless EagerPyFunc'),
        (_NETWORK, 'RpcCall RpcCheckStatus RpcClient RpcGetValue RpcServer '
         'RpcServerRegister RpcServerStart DataServiceDataset '
         'DataServiceDatasetV2 DataServiceDatasetV3 DataServiceDatasetV4 '
         'RegisterDataset RegisterDatasetV2 DistributedSave RemoteCall Send '
         'Recv _Send _Recv _HostSend _HostRecv CollectiveBcastRecv '
         'CollectiveBcastRecvV2 CollectiveBcastSend CollectiveBcastSendV2 '
         'CollectiveGather CollectiveGatherV2 CollectiveReduce '
         'CollectiveReduceV2 CollectiveReduceV3 CollectiveReduceScatterV2 '
         'CollectiveAllToAllV2 CollectiveAllToAllV3 '
         'CollectiveInitializeCommunicator NcclAllReduce NcclBroadcast '
         'NcclReduce'),
        (_MEMMAP, 'ImmutableConst'),
    ) for op in ops.split()}

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
_OP_TYPE = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9_.>-]*$')
_SHOWN_NODES = 3


@dataclasses.dataclass(frozen=True)
class Finding:
  """One thing the scan refuses (or was told to allow).

  Attributes:
    tags: the tag set of the MetaGraphDef; () for the export's files.
    where: the node ("node 'x'" / "node 'x' of function 'f'") or the file.
    reason: what it does, e.g. 'reads or writes files'.
    op_type: the op type `allow_ops` would name; None for a path or size.
  """
  tags: Tuple[str, ...]
  where: str
  reason: str
  op_type: Optional[str] = None

  def __str__(self) -> str:
    what = f'{self.op_type} at {self.where}' if self.op_type else self.where
    return f'{what}: {self.reason}'


@dataclasses.dataclass(frozen=True)
class ScanResult:
  """The scan of one MetaGraphDef, or of the export's files.

  Attributes:
    tags: the tag set; () for the export's files.
    scanned: what was looked at, e.g. '252 nodes, 0 functions'.
    refused: the findings that fail the scan.
    allowed: findings accepted by `allow_ops`.
  """
  tags: Tuple[str, ...]
  scanned: str
  refused: Tuple[Finding, ...] = ()
  allowed: Tuple[Finding, ...] = ()

  @property
  def ok(self) -> bool:
    return not self.refused

  def describe(self) -> str:
    """One line: what was scanned, what is refused and which flag runs it."""
    if self.refused:
      text = 'refused: ' + _summarize(self.refused)
      op_types = sorted({f.op_type for f in self.refused if f.op_type})
      if op_types:
        text += ('. To run them anyway (only if you trust this export): '
                 f'--allow_ops={",".join(op_types)} (API: allow_ops={op_types})')
    else:
      text = f'{self.scanned}: nothing acts outside the export'
    if self.allowed:
      text += '; allowed by allow_ops: ' + _summarize(self.allowed)
    return text


def _summarize(findings: Iterable[Finding]) -> str:
  """Findings grouped by op type and reason, a few nodes each."""
  groups: Dict[Tuple[Optional[str], str], List[str]] = {}
  for finding in findings:
    groups.setdefault((finding.op_type, finding.reason), []).append(
        finding.where)
  parts = []
  for (op_type, reason), places in groups.items():
    shown = ', '.join(places[:_SHOWN_NODES])
    more = (f' and {len(places) - _SHOWN_NODES} more'
            if len(places) > _SHOWN_NODES else '')
    parts.append(f'{op_type} ({reason}) at {shown}{more}' if op_type
                 else f'{shown}{more}: {reason}')
  return '; '.join(parts)


def check_allow_ops(allow_ops) -> FrozenSet[str]:
  """Validates the `allow_ops` argument of `verify`.

  Args:
    allow_ops: an iterable of op type names (not a single string).

  Returns:
    The names, as a frozenset.

  Raises:
    TypeError: `allow_ops` is a string or not iterable, or holds a non-str.
    ValueError: a name is not an op type name.
  """
  if isinstance(allow_ops, (str, bytes)):
    raise TypeError('allow_ops: expected a collection of op type names, got '
                    f'the string {allow_ops!r} (write [{allow_ops!r}])')
  try:
    names = list(allow_ops)
  except TypeError as e:
    raise TypeError('allow_ops: expected a collection of op type names, got '
                    f'{type(allow_ops).__name__}') from e
  for name in names:
    if not isinstance(name, str):
      raise TypeError(f'allow_ops: expected op type names (str), got {name!r}')
    if not _OP_TYPE.match(name):
      raise ValueError(f'allow_ops: {name!r} is not an op type name')
  return frozenset(names)


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
    self.flow = _graph_flow.GraphFlow(meta_graph_def, fed)
    self.saver_only = _saver_only(meta_graph_def, self.flow)

  def findings(self) -> List[Finding]:
    found = []
    for context in self.flow.contexts.values():
      for node in context.nodes.values():
        reason = self._refusal(context.name, node)
        if reason:
          found.append(Finding(self.tags, _where(context.name, node.name),
                               reason, node.op))
    return found

  def _refusal(self, context: str, node) -> Optional[str]:
    """Why `node` is refused, or None."""
    op = node.op
    inputs = [i for i in node.input if not i.startswith('^')]
    if op in _CHECKPOINT_PATH_INPUTS:
      if (context, node.name) not in self.saver_only:
        return _CHECKPOINT
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
    if op in _REFUSED_OPS:
      return _REFUSED_OPS[op]
    if not self.flow.is_function(op) and not _tf_private.is_registered_op(op):
      return _UNKNOWN
    return None

  def _saver_path_problem(self, context: str, ref: str) -> Optional[str]:
    sources = self.flow.sources(context, ref)
    if not sources or any(root != self.filename for root, _ in sources):
      return ("reads a path other than the saver's filename tensor, which "
              'the loaders set to variables/variables')
    for _, suffix in sources:
      if '..' in suffix.split('/') or '\\' in suffix or '\0' in suffix:
        return f"the saver's path leaves variables/ with the suffix {suffix!r}"
    return None


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


def _saver_only(meta_graph_def, flow) -> set:
  """(context, node) pairs nothing but the saver runs.

  The loaders and `verify` run the saver's save and restore ops, the nodes
  of the graph's collections (main op, train op, table initializers) and
  the signatures' tensors. A main-graph node none of the latter depends on
  runs only through the saver (or never); a function is the saver's when
  every reference to it is a call from such a node and no object graph
  offers it to Python callers.
  """
  nodes = flow.contexts[_graph_flow.MAIN].nodes
  outside = _closure(nodes, sorted(_fetched_nodes(meta_graph_def)))
  owned = {(_graph_flow.MAIN, n) for n in nodes if n not in outside}
  exposed = set(meta_graph_def.object_graph_def.concrete_functions)
  functions = set(flow.call_sites) - flow.other_references - exposed
  changed = True
  while changed:
    changed = False
    for function in sorted(functions):
      if all((context, call.name) in owned
             for context, call in flow.call_sites[function]):
        owned |= {(function, n) for n in flow.contexts[function].nodes}
        functions.discard(function)
        changed = True
  return owned


def scan_meta_graph(meta_graph_def, export_dir: str,
                    allow_ops: FrozenSet[str] = frozenset()) -> ScanResult:
  """Scans one MetaGraphDef's ops (graph and functions) and asset names.

  Args:
    meta_graph_def: the MetaGraphDef.
    export_dir: the SavedModel directory (for asset links).
    allow_ops: op types to accept (see `check_allow_ops`).

  Returns:
    A ScanResult; nothing is run.
  """
  tags = _format.tags_of(meta_graph_def)
  scan = _GraphScan(meta_graph_def, tags)
  found = scan.findings()
  for tensor, filename in _format.asset_files(meta_graph_def):
    found += [Finding(tags, where, why) for where, why in
              _confinement.asset_name_problems(export_dir, tensor, filename)]
  num_functions = len(scan.flow.contexts) - 1
  scanned = (f'{len(meta_graph_def.graph_def.node)} nodes and '
             f'{wording.count(num_functions, "function")}')
  return ScanResult(
      tags, scanned,
      tuple(f for f in found if f.op_type not in allow_ops),
      tuple(f for f in found if f.op_type in allow_ops))


def scan_files(export_dir: str) -> ScanResult:
  """Scans the export's `variables/` index and its links (tags ())."""
  scanned, problems = _confinement.index_problems(export_dir)
  problems += _confinement.link_problems(export_dir)
  return ScanResult((), scanned,
                    tuple(Finding((), where, why) for where, why in problems))


def scan_saved_model(export_dir: str, saved_model,
                     allow_ops: FrozenSet[str] = frozenset()
                    ) -> List[ScanResult]:
  """The scan of the export's files, then of each MetaGraphDef, in order.

  Args:
    export_dir: the SavedModel directory.
    saved_model: its parsed SavedModel proto.
    allow_ops: op types to accept (see `check_allow_ops`).

  Returns:
    One ScanResult for the files (tags ()) and one per MetaGraphDef.
  """
  return [scan_files(export_dir)] + [
      scan_meta_graph(m, export_dir, allow_ops)
      for m in saved_model.meta_graphs]
