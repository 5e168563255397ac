"""Why an op type the allowlist does not list is refused, in words.

`_op_allowlist` says what `verify` runs; everything else is refused. This
module gives the refusal its reason: what the op is known to do (files,
printing, Python callbacks, the network, ending the process, waiting
forever, running a graph carried as data), else that TensorFlow does not
know it (a custom kernel), else that it is not on the list.
"""

import re
from typing import Dict

from multimode_export import _tf_private

_FILES = 'reads or writes files'
_SOURCES = 'opens files (a reader or dataset source)'
CHECKPOINT = 'reads or writes a checkpoint outside the saver'
_PRINTS = 'prints or logs'
_DUMPS = 'writes summaries or debug dumps'
_PYTHON = 'calls back into Python'
_NETWORK = 'reaches other processes or the network'
_MEMMAP = 'maps a file into memory'
_ENDS = 'ends the process'
_GRAPH_DATA = 'runs a graph carried as data (a serialized GraphDef)'
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
        (CHECKPOINT, 'Save SaveV2 SaveSlices MergeV2Checkpoints Restore '
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
        (_ENDS, 'Abort'),
        (_GRAPH_DATA, 'DatasetFromGraph'),
    ) for op in ops.split()}

_BLOCKS = 'can wait forever for data no step provides (a queue, barrier, ' \
    'accumulator, staging area or iterator)'
_BLOCKING = re.compile(
    r'Queue|Barrier|Accumulator|^(Ordered)?Map(Stage|Unstage|Peek|Clear|Size|'
    r'IncompleteSize|UnstageNoKey)$|^Stage|^Unstage$|Iterator')
_DATASETS = ('a tf.data pipeline: datasets can open files, block or run '
             'graphs carried as data')
UNLISTED = ("is not on verify's list of ops that act only in memory "
            '(checks/_op_allowlist.py)')


def reason(op_type: str) -> str:
  """Why `op_type`, not on the allowlist, is refused."""
  if op_type in _REFUSED_OPS:
    return _REFUSED_OPS[op_type]
  if not _tf_private.is_registered_op(op_type):
    return _UNKNOWN
  if _BLOCKING.search(op_type):
    return _BLOCKS
  if 'Dataset' in op_type:
    return _DATASETS
  return UNLISTED
