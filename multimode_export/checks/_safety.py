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

from typing import Dict, FrozenSet, List, Optional, Tuple

from multimode_export import _tf_private
from multimode_export.checks import _confinement
from multimode_export.checks import _findings as findings_lib
from multimode_export.checks import _graph_flow
from multimode_export.checks import _saver_reach as saver_reach
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
    self.saver_only = saver_reach.saver_only(meta_graph_def, self.flow)

  def findings(self) -> List[findings_lib.Finding]:
    found = []
    for context in self.flow.contexts.values():
      for node in context.nodes.values():
        reason = self._refusal(context.name, node)
        if reason:
          found.append(findings_lib.Finding(self.tags, _where(context.name, node.name),
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


def scan_meta_graph(meta_graph_def, export_dir: str,
                    allow_ops: FrozenSet[str] = frozenset()) -> findings_lib.ScanResult:
  """Scans one MetaGraphDef's ops (graph and functions) and asset names.

  Args:
    meta_graph_def: the MetaGraphDef.
    export_dir: the SavedModel directory (for asset links).
    allow_ops: op types to accept (see `findings_lib.check_allow_ops`).

  Returns:
    A findings_lib.ScanResult; nothing is run.
  """
  tags = _format.tags_of(meta_graph_def)
  scan = _GraphScan(meta_graph_def, tags)
  found = scan.findings()
  for tensor, filename in _format.asset_files(meta_graph_def):
    found += [findings_lib.Finding(tags, where, why) for where, why in
              _confinement.asset_name_problems(export_dir, tensor, filename)]
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
  return findings_lib.ScanResult((), scanned,
                    tuple(findings_lib.Finding((), where, why) for where, why in problems))


def scan_saved_model(export_dir: str, saved_model,
                     allow_ops: FrozenSet[str] = frozenset()
                    ) -> List[findings_lib.ScanResult]:
  """The scan of the export's files, then of each MetaGraphDef, in order.

  Args:
    export_dir: the SavedModel directory.
    saved_model: its parsed SavedModel proto.
    allow_ops: op types to accept (see `findings_lib.check_allow_ops`).

  Returns:
    One findings_lib.ScanResult for the files (tags ()) and one per MetaGraphDef.
  """
  return [scan_files(export_dir)] + [
      scan_meta_graph(m, export_dir, allow_ops)
      for m in saved_model.meta_graphs]
