"""The op types `verify` runs: an allowlist, by family, each with its reason.

`verify` loads and runs a tag set only when every op of its graph and of its
function library is listed here (or named by `allow_ops`, or is a call of
one of the graph's own functions, which are scanned the same way). The list
was built from the op families of TensorFlow 2.15's op registry (one family
per `gen_*_ops` module) and reviewed family by family: a family is listed
when its ops compute in memory from their inputs and their own state, and
the ops of a listed family that do not are left out:

- `ImmutableConst` (maps a file), `Abort` (ends the process), `RemoteCall`
  (runs a function on another device or task), `Print`/`PrintV2` (write to
  the process's output);
- queues, barriers, accumulators and staging areas (a dequeue or take with
  nothing put waits forever), kept out of the in-memory data flow family.

Families not listed: file I/O and readers, datasets and iterators (they can
open files, block, or run graphs carried as data: `DatasetFromGraph`),
summary writers, debug dumps, Python callbacks, sends and receives,
collectives, NCCL, TPU and XLA ops, batching ops (they wait for other
calls), the tf.data service and RPC ops. A few listed ops act outside
memory only in a way `_safety` checks per node: the saver's checkpoint ops,
file reads of assets (`ReadFile`, `InitializeTableFromTextFile`) and the
protobuf ops (descriptor source).

Every export the test suite makes (canned DNN, linear, combined and
baseline estimators, vocabulary tables, Keras `model_to_estimator`, custom
model_fns, TFMA eval graphs, partitioned variables, moving averages) uses
only listed ops: `tests/testing/assertions.assert_passes_safety_scan` checks
it on each. A new TensorFlow op is refused until it is reviewed and added.
"""

import dataclasses
from typing import Dict, FrozenSet, Optional


@dataclasses.dataclass(frozen=True)
class Family:
  """Op types allowed for one reason.

  Attributes:
    name: short name, e.g. 'math'.
    reason: why these ops may run: what they do, and that it is in memory.
    op_types: the op type names, whitespace separated.
  """
  name: str
  reason: str
  op_types: str


FAMILIES = (
    Family(
        'array',
        'builds, reshapes, slices, casts or copies tensors in memory',
        '''
    BatchMatrixBandPart BatchMatrixDiag BatchMatrixDiagPart
    BatchMatrixSetDiag BatchToSpace BatchToSpaceND Bitcast BroadcastArgs
    BroadcastGradientArgs BroadcastTo CheckNumerics CheckNumericsV2 Concat
    ConcatOffset ConcatV2 ConjugateTranspose Const DebugGradientIdentity
    DebugGradientRefIdentity DeepCopy DepthToSpace Dequantize Diag DiagPart
    EditDistance Empty EnsureShape ExpandDims ExtractImagePatches
    ExtractVolumePatches FakeQuantWithMinMaxArgs
    FakeQuantWithMinMaxArgsGradient FakeQuantWithMinMaxVars
    FakeQuantWithMinMaxVarsGradient FakeQuantWithMinMaxVarsPerChannel
    FakeQuantWithMinMaxVarsPerChannelGradient Fill Fingerprint Gather
    GatherNd GatherV2 GuaranteeConst Identity IdentityN InplaceAdd
    InplaceSub InplaceUpdate InvertPermutation ListDiff LowerBound
    MatrixBandPart MatrixDiag MatrixDiagPart MatrixDiagPartV2
    MatrixDiagPartV3 MatrixDiagV2 MatrixDiagV3 MatrixSetDiag MatrixSetDiagV2
    MatrixSetDiagV3 MirrorPad MirrorPadGrad OneHot OnesLike Pack Pad PadV2
    ParallelConcat Placeholder PlaceholderV2 PlaceholderWithDefault
    PreventGradient QuantizeAndDequantize QuantizeAndDequantizeV2
    QuantizeAndDequantizeV3 QuantizeAndDequantizeV4
    QuantizeAndDequantizeV4Grad QuantizeV2 QuantizedConcat
    QuantizedInstanceNorm QuantizedReshape Rank RefIdentity Reshape
    ResourceStridedSliceAssign Reverse ReverseSequence ReverseV2 ScatterNd
    ScatterNdNonAliasingAdd Shape ShapeN Size Slice Snapshot SpaceToBatch
    SpaceToBatchND SpaceToDepth Split SplitV Squeeze StopGradient
    StridedSlice StridedSliceAssign StridedSliceGrad TensorScatterAdd
    TensorScatterMax TensorScatterMin TensorScatterSub TensorScatterUpdate
    TensorStridedSliceUpdate Tile TileGrad Transpose Unique UniqueV2
    UniqueWithCounts UniqueWithCountsV2 Unpack UnravelIndex UpperBound Where
    ZerosLike
    '''),
    Family(
        'math',
        'arithmetic, reductions, linear algebra, FFTs, bit and set '
        'operations on tensors in memory',
        '''
    Abs AccumulateNV2 Acos Acosh Add AddN AddV2 All Angle Any
    ApproximateEqual ArgMax ArgMin Asin Asinh Atan Atan2 Atanh
    BandedTriangularSolve BatchCholesky BatchCholeskyGrad BatchFFT
    BatchFFT2D BatchFFT3D BatchIFFT BatchIFFT2D BatchIFFT3D BatchMatMul
    BatchMatMulV2 BatchMatMulV3 BatchMatrixDeterminant BatchMatrixInverse
    BatchMatrixSolve BatchMatrixSolveLs BatchMatrixTriangularSolve
    BatchSelfAdjointEig BatchSelfAdjointEigV2 BatchSvd BesselI0 BesselI0e
    BesselI1 BesselI1e BesselJ0 BesselJ1 BesselK0 BesselK0e BesselK1
    BesselK1e BesselY0 BesselY1 Betainc Bincount BitwiseAnd BitwiseOr
    BitwiseXor Bucketize Cast Ceil Cholesky CholeskyGrad ClipByValue Complex
    ComplexAbs Conj Cos Cosh Cross Cumprod Cumsum CumulativeLogsumexp Dawsn
    DenseBincount DenseCountSparseOutput DenseToDenseSetOperation
    DenseToSparseSetOperation Digamma Div DivNoNan Eig Einsum Equal Erf Erfc
    Erfinv EuclideanNorm Exp Expint Expm1 FFT FFT2D FFT3D FFTND Floor
    FloorDiv FloorMod FresnelCos FresnelSin Greater GreaterEqual
    HistogramFixedWidth IFFT IFFT2D IFFT3D IFFTND IRFFT IRFFT2D IRFFT3D
    IRFFTND Igamma IgammaGradA Igammac Imag Inv InvGrad Invert IsFinite
    IsInf IsNan KMC2ChainInitialization KmeansPlusPlusInitialization
    LeftShift Less LessEqual Lgamma LinSpace Log Log1p LogMatrixDeterminant
    LogicalAnd LogicalNot LogicalOr Lu MatMul MatrixDeterminant
    MatrixExponential MatrixInverse MatrixLogarithm MatrixSolve
    MatrixSolveLs MatrixSquareRoot MatrixTriangularSolve Max Maximum Mean
    Min Minimum Mod Mul MulNoNan Ndtri NearestNeighbors Neg NextAfter
    NotEqual Polygamma PopulationCount Pow Prod Qr
    QuantizeDownAndShrinkRange QuantizedAdd QuantizedMatMul QuantizedMul
    RFFT RFFT2D RFFT3D RFFTND RaggedBincount RaggedCountSparseOutput Range
    Real RealDiv Reciprocal ReciprocalGrad RequantizationRange
    RequantizationRangePerChannel Requantize RequantizePerChannel RightShift
    Rint Roll Round Rsqrt RsqrtGrad SegmentMax SegmentMaxV2 SegmentMean
    SegmentMin SegmentMinV2 SegmentProd SegmentProdV2 SegmentSum
    SegmentSumV2 Select SelectV2 SelfAdjointEig SelfAdjointEigV2 SetSize
    Sigmoid SigmoidGrad Sign Sin Sinh SobolSample SparseBincount
    SparseCountSparseOutput SparseMatMul SparseSegmentMean
    SparseSegmentMeanGrad SparseSegmentMeanGradV2
    SparseSegmentMeanWithNumSegments SparseSegmentSqrtN
    SparseSegmentSqrtNGrad SparseSegmentSqrtNGradV2
    SparseSegmentSqrtNWithNumSegments SparseSegmentSum SparseSegmentSumGrad
    SparseSegmentSumGradV2 SparseSegmentSumWithNumSegments
    SparseToSparseSetOperation Spence Sqrt SqrtGrad Square SquaredDifference
    Sub Sum Svd Tan Tanh TanhGrad TridiagonalMatMul TridiagonalSolve
    TruncateDiv TruncateMod UniformDequantize UniformQuantize
    UniformQuantizedAdd UniformQuantizedClipByValue
    UniformQuantizedConvolution UniformQuantizedConvolutionHybrid
    UniformQuantizedDot UniformQuantizedDotHybrid UniformRequantize
    UnsortedSegmentMax UnsortedSegmentMin UnsortedSegmentProd
    UnsortedSegmentSum Xdivy Xlog1py Xlogy Zeta
    '''),
    Family(
        'nn',
        'neural network layers, losses, image and audio transforms, '
        'candidate sampling, computed in memory',
        '''
    AdjustContrast AdjustContrastv2 AdjustHue AdjustSaturation
    AllCandidateSampler ApproxTopK AudioSpectrogram AvgPool AvgPool3D
    AvgPool3DGrad AvgPoolGrad BatchNormWithGlobalNormalization
    BatchNormWithGlobalNormalizationGrad BiasAdd BiasAddGrad BiasAddV1
    BlockLSTM BlockLSTMGrad BlockLSTMGradV2 BlockLSTMV2 CTCBeamSearchDecoder
    CTCGreedyDecoder CTCLoss CTCLossV2 CombinedNonMaxSuppression
    ComputeAccidentalHits Conv Conv2D Conv2DBackpropFilter
    Conv2DBackpropFilterV2 Conv2DBackpropInput Conv2DBackpropInputV2 Conv3D
    Conv3DBackpropFilter Conv3DBackpropFilterV2 Conv3DBackpropInput
    Conv3DBackpropInputV2 CropAndResize CropAndResizeGradBoxes
    CropAndResizeGradImage CudnnRNN CudnnRNNBackprop CudnnRNNBackpropV2
    CudnnRNNBackpropV3 CudnnRNNCanonicalToParams CudnnRNNCanonicalToParamsV2
    CudnnRNNParamsSize CudnnRNNParamsToCanonical CudnnRNNParamsToCanonicalV2
    CudnnRNNV2 CudnnRNNV3 DataFormatDimMap DataFormatVecPermute
    DecodeAndCropJpeg DecodeBmp DecodeGif DecodeImage DecodeJpeg DecodePng
    DecodeWav DepthwiseConv2dNative DepthwiseConv2dNativeBackpropFilter
    DepthwiseConv2dNativeBackpropInput Dilation2D Dilation2DBackpropFilter
    Dilation2DBackpropInput DrawBoundingBoxes DrawBoundingBoxesV2 Elu
    EluGrad EncodeJpeg EncodeJpegVariableQuality EncodePng EncodeWav
    ExtractGlimpse ExtractGlimpseV2 ExtractJpegShape
    FixedUnigramCandidateSampler FractionalAvgPool FractionalAvgPoolGrad
    FractionalMaxPool FractionalMaxPoolGrad FusedBatchNorm
    FusedBatchNormGrad FusedBatchNormGradV2 FusedBatchNormGradV3
    FusedBatchNormV2 FusedBatchNormV3 FusedPadConv2D FusedResizeAndPadConv2D
    GRUBlockCell GRUBlockCellGrad GenerateBoundingBoxProposals HSVToRGB
    ImageProjectiveTransformV2 ImageProjectiveTransformV3 InTopK InTopKV2
    IsotonicRegression L2Loss LRN LRNGrad LSTMBlockCell LSTMBlockCellGrad
    LeakyRelu LeakyReluGrad LearnedUnigramCandidateSampler LogSoftmax
    LogUniformCandidateSampler MaxPool MaxPool3D MaxPool3DGrad
    MaxPool3DGradGrad MaxPoolGrad MaxPoolGradGrad MaxPoolGradGradV2
    MaxPoolGradGradWithArgmax MaxPoolGradV2 MaxPoolGradWithArgmax MaxPoolV2
    MaxPoolWithArgmax Mfcc NonMaxSuppression NonMaxSuppressionV2
    NonMaxSuppressionV3 NonMaxSuppressionV4 NonMaxSuppressionV5
    NonMaxSuppressionWithOverlaps NthElement QuantizedAvgPool
    QuantizedBatchNormWithGlobalNormalization QuantizedBiasAdd
    QuantizedConv2D QuantizedConv2DAndRelu
    QuantizedConv2DAndReluAndRequantize QuantizedConv2DAndRequantize
    QuantizedConv2DPerChannel QuantizedConv2DWithBias
    QuantizedConv2DWithBiasAndRelu
    QuantizedConv2DWithBiasAndReluAndRequantize
    QuantizedConv2DWithBiasAndRequantize
    QuantizedConv2DWithBiasSignedSumAndReluAndRequantize
    QuantizedConv2DWithBiasSumAndRelu
    QuantizedConv2DWithBiasSumAndReluAndRequantize QuantizedDepthwiseConv2D
    QuantizedDepthwiseConv2DWithBias QuantizedDepthwiseConv2DWithBiasAndRelu
    QuantizedDepthwiseConv2DWithBiasAndReluAndRequantize
    QuantizedMatMulWithBias QuantizedMatMulWithBiasAndDequantize
    QuantizedMatMulWithBiasAndRelu
    QuantizedMatMulWithBiasAndReluAndRequantize
    QuantizedMatMulWithBiasAndRequantize QuantizedMaxPool QuantizedRelu
    QuantizedRelu6 QuantizedReluX QuantizedResizeBilinear RGBToHSV
    RandomCrop Relu Relu6 Relu6Grad ReluGrad ResizeArea ResizeBicubic
    ResizeBicubicGrad ResizeBilinear ResizeBilinearGrad
    ResizeNearestNeighbor ResizeNearestNeighborGrad
    SampleDistortedBoundingBox SampleDistortedBoundingBoxV2
    ScaleAndTranslate ScaleAndTranslateGrad Selu SeluGrad Softmax
    SoftmaxCrossEntropyWithLogits Softplus SoftplusGrad Softsign
    SoftsignGrad SparseSoftmaxCrossEntropyWithLogits
    StatelessSampleDistortedBoundingBox ThreadUnsafeUnigramCandidateSampler
    TopK TopKV2 UniformCandidateSampler
    '''),
    Family(
        'random',
        'random numbers from in-memory generator state',
        '''
    Multinomial NonDeterministicInts ParameterizedTruncatedNormal
    RandomGamma RandomGammaGrad RandomIndexShuffle RandomPoisson
    RandomPoissonV2 RandomShuffle RandomStandardNormal RandomUniform
    RandomUniformInt RngReadAndSkip RngSkip StatefulRandomBinomial
    StatefulStandardNormal StatefulStandardNormalV2 StatefulTruncatedNormal
    StatefulUniform StatefulUniformFullInt StatefulUniformInt
    StatelessMultinomial StatelessParameterizedTruncatedNormal
    StatelessRandomBinomial StatelessRandomGammaV2 StatelessRandomGammaV3
    StatelessRandomGetAlg StatelessRandomGetKeyCounter
    StatelessRandomGetKeyCounterAlg StatelessRandomNormal
    StatelessRandomNormalV2 StatelessRandomPoisson StatelessRandomUniform
    StatelessRandomUniformFullInt StatelessRandomUniformFullIntV2
    StatelessRandomUniformInt StatelessRandomUniformIntV2
    StatelessRandomUniformV2 StatelessShuffle StatelessTruncatedNormal
    StatelessTruncatedNormalV2 TruncatedNormal
    '''),
    Family(
        'structures',
        'strings, tf.Example parsing, sparse and ragged tensors, tensor'
        ' lists, maps and optionals, in memory (protobuf ops only with '
        'a built-in or inline descriptor: see _safety)',
        '''
    AddManySparseToTensorsMap AddSparseToTensorsMap AsString
    CompositeTensorVariantFromComponents CompositeTensorVariantToComponents
    DecodeBase64 DecodeCSV DecodeCompressed DecodeJSONExample
    DecodePaddedRaw DecodeProtoV2 DecodeRaw DeserializeManySparse
    DeserializeSparse EmptyTensorList EmptyTensorMap EncodeBase64
    EncodeProto OptionalFromValue OptionalGetValue OptionalHasValue
    OptionalNone ParseExample ParseExampleV2 ParseSequenceExample
    ParseSequenceExampleV2 ParseSingleExample ParseSingleSequenceExample
    ParseTensor RaggedCross RaggedFillEmptyRows RaggedFillEmptyRowsGrad
    RaggedGather RaggedRange RaggedTensorFromVariant RaggedTensorToSparse
    RaggedTensorToTensor RaggedTensorToVariant RaggedTensorToVariantGradient
    ReduceJoin RegexFullMatch RegexReplace SerializeManySparse
    SerializeSparse SerializeTensor SparseAdd SparseAddGrad SparseConcat
    SparseCross SparseCrossHashed SparseCrossV2 SparseDenseCwiseAdd
    SparseDenseCwiseDiv SparseDenseCwiseMul SparseFillEmptyRows
    SparseFillEmptyRowsGrad SparseReduceMax SparseReduceMaxSparse
    SparseReduceSum SparseReduceSumSparse SparseReorder SparseReshape
    SparseSlice SparseSliceGrad SparseSoftmax SparseSparseMaximum
    SparseSparseMinimum SparseSplit SparseTensorDenseAdd
    SparseTensorDenseMatMul SparseToDense StaticRegexFullMatch
    StaticRegexReplace StringFormat StringJoin StringLength StringLower
    StringNGrams StringSplit StringSplitV2 StringStrip StringToHashBucket
    StringToHashBucketFast StringToHashBucketStrong StringToNumber
    StringUpper Substr TakeManySparseFromTensorsMap TensorListConcat
    TensorListConcatLists TensorListConcatV2 TensorListElementShape
    TensorListFromTensor TensorListGather TensorListGetItem TensorListLength
    TensorListPopBack TensorListPushBack TensorListPushBackBatch
    TensorListReserve TensorListResize TensorListScatter
    TensorListScatterIntoExistingList TensorListScatterV2 TensorListSetItem
    TensorListSplit TensorListStack TensorMapErase TensorMapHasKey
    TensorMapInsert TensorMapLookup TensorMapSize TensorMapStackKeys
    UnicodeDecode UnicodeDecodeWithOffsets UnicodeEncode UnicodeScript
    UnicodeTranscode UnsortedSegmentJoin ShardedFilename ShardedFilespec
    '''),
    Family(
        'variables',
        'variables and the optimizers that update them, in memory (the '
        'saver writes them, not these ops)',
        '''
    ApplyAdaMax ApplyAdadelta ApplyAdagrad ApplyAdagradDA ApplyAdagradV2
    ApplyAdam ApplyAddSign ApplyCenteredRMSProp ApplyFtrl ApplyFtrlV2
    ApplyGradientDescent ApplyMomentum ApplyPowerSign ApplyProximalAdagrad
    ApplyProximalGradientDescent ApplyRMSProp Assign AssignAdd
    AssignAddVariableOp AssignSub AssignSubVariableOp AssignVariableOp
    BoostedTreesAggregateStats BoostedTreesBucketize
    BoostedTreesCalculateBestFeatureSplit
    BoostedTreesCalculateBestFeatureSplitV2
    BoostedTreesCalculateBestGainsPerFeature BoostedTreesCenterBias
    BoostedTreesCreateEnsemble BoostedTreesCreateQuantileStreamResource
    BoostedTreesDeserializeEnsemble BoostedTreesEnsembleResourceHandleOp
    BoostedTreesExampleDebugOutputs BoostedTreesFlushQuantileSummaries
    BoostedTreesGetEnsembleStates BoostedTreesMakeQuantileSummaries
    BoostedTreesMakeStatsSummary BoostedTreesPredict
    BoostedTreesQuantileStreamResourceAddSummaries
    BoostedTreesQuantileStreamResourceDeserialize
    BoostedTreesQuantileStreamResourceFlush
    BoostedTreesQuantileStreamResourceGetBucketBoundaries
    BoostedTreesQuantileStreamResourceHandleOp BoostedTreesSerializeEnsemble
    BoostedTreesSparseAggregateStats
    BoostedTreesSparseCalculateBestFeatureSplit BoostedTreesTrainingPredict
    BoostedTreesUpdateEnsemble BoostedTreesUpdateEnsembleV2 ConsumeMutexLock
    CountUpTo DestroyResourceOp DestroyTemporaryVariable DisableCopyOnRead
    IsBoostedTreesEnsembleInitialized
    IsBoostedTreesQuantileStreamResourceInitialized IsVariableInitialized
    MutexLock MutexV2 ReadVariableOp ResourceApplyAdaMax
    ResourceApplyAdadelta ResourceApplyAdagrad ResourceApplyAdagradDA
    ResourceApplyAdagradV2 ResourceApplyAdam ResourceApplyAdamWithAmsgrad
    ResourceApplyAddSign ResourceApplyCenteredRMSProp ResourceApplyFtrl
    ResourceApplyFtrlV2 ResourceApplyGradientDescent
    ResourceApplyKerasMomentum ResourceApplyMomentum ResourceApplyPowerSign
    ResourceApplyProximalAdagrad ResourceApplyProximalGradientDescent
    ResourceApplyRMSProp ResourceCountUpTo ResourceGather ResourceGatherNd
    ResourceScatterAdd ResourceScatterDiv ResourceScatterMax
    ResourceScatterMin ResourceScatterMul ResourceScatterNdAdd
    ResourceScatterNdMax ResourceScatterNdMin ResourceScatterNdSub
    ResourceScatterNdUpdate ResourceScatterSub ResourceScatterUpdate
    ResourceSparseApplyAdadelta ResourceSparseApplyAdagrad
    ResourceSparseApplyAdagradDA ResourceSparseApplyAdagradV2
    ResourceSparseApplyCenteredRMSProp ResourceSparseApplyFtrl
    ResourceSparseApplyFtrlV2 ResourceSparseApplyKerasMomentum
    ResourceSparseApplyMomentum ResourceSparseApplyProximalAdagrad
    ResourceSparseApplyProximalGradientDescent ResourceSparseApplyRMSProp
    ScatterAdd ScatterDiv ScatterMax ScatterMin ScatterMul ScatterNdAdd
    ScatterNdMax ScatterNdMin ScatterNdSub ScatterNdUpdate ScatterSub
    ScatterUpdate SdcaFprint SdcaOptimizer SdcaOptimizerV2 SdcaShrinkL1
    SparseApplyAdadelta SparseApplyAdagrad SparseApplyAdagradDA
    SparseApplyAdagradV2 SparseApplyCenteredRMSProp SparseApplyFtrl
    SparseApplyFtrlV2 SparseApplyMomentum SparseApplyProximalAdagrad
    SparseApplyProximalGradientDescent SparseApplyRMSProp TemporaryVariable
    VarHandleOp VarIsInitializedOp Variable VariableShape VariableV2
    '''),
    Family(
        'tables',
        'lookup tables in memory (a table read from a file only from an'
        ' asset: see _safety)',
        '''
    AnonymousHashTable AnonymousMutableDenseHashTable
    AnonymousMutableHashTable AnonymousMutableHashTableOfTensors HashTable
    HashTableV2 InitializeTable InitializeTableFromTextFile
    InitializeTableFromTextFileV2 InitializeTableV2 LookupTableExport
    LookupTableExportV2 LookupTableFind LookupTableFindV2 LookupTableImport
    LookupTableImportV2 LookupTableInsert LookupTableInsertV2
    LookupTableRemoveV2 LookupTableSize LookupTableSizeV2
    MutableDenseHashTable MutableDenseHashTableV2 MutableHashTable
    MutableHashTableOfTensors MutableHashTableOfTensorsV2 MutableHashTableV2
    '''),
    Family(
        'control_flow',
        "conditionals, loops and calls of the graph's own (scanned) "
        'functions; a loop that never ends is stopped by the time '
        'budget',
        '''
    Case ControlTrigger DeviceIndex Enter Exit FakeParam For If LoopCond
    Merge NextIteration NoOp PartitionedCall RefEnter RefExit RefMerge
    RefNextIteration RefSelect RefSwitch StatefulPartitionedCall
    StatelessCase StatelessIf StatelessWhile Switch SymbolicGradient ToBool
    While
    '''),
    Family(
        'in_memory_data_flow',
        'TensorArrays, stacks, partition and stitch, session handles: '
        'in memory, never waiting for another step (queues, barriers, '
        'accumulators and staging areas can block, and are not listed)',
        '''
    DeleteSessionTensor DynamicPartition DynamicStitch GetSessionHandle
    GetSessionHandleV2 GetSessionTensor ParallelDynamicStitch Stack
    StackClose StackCloseV2 StackPop StackPopV2 StackPush StackPushV2
    StackV2 TensorArray TensorArrayClose TensorArrayCloseV2
    TensorArrayCloseV3 TensorArrayConcat TensorArrayConcatV2
    TensorArrayConcatV3 TensorArrayGather TensorArrayGatherV2
    TensorArrayGatherV3 TensorArrayGrad TensorArrayGradV2 TensorArrayGradV3
    TensorArrayGradWithShape TensorArrayPack TensorArrayRead
    TensorArrayReadV2 TensorArrayReadV3 TensorArrayScatter
    TensorArrayScatterV2 TensorArrayScatterV3 TensorArraySize
    TensorArraySizeV2 TensorArraySizeV3 TensorArraySplit TensorArraySplitV2
    TensorArraySplitV3 TensorArrayUnpack TensorArrayV2 TensorArrayV3
    TensorArrayWrite TensorArrayWriteV2 TensorArrayWriteV3
    '''),
    Family(
        'summaries',
        'assertions, timestamps and summaries serialized to tensors, '
        'never written (summary writers are not listed)',
        '''
    Assert AudioSummary AudioSummaryV2 HistogramSummary ImageSummary
    MergeSummary ScalarSummary TensorSummary TensorSummaryV2 Timestamp
    '''),
    Family(
        'saver',
        "the saver's checkpoint ops: only where nothing but the saver "
        'runs them, on the path the loaders set (see _safety)',
        '''
    MergeV2Checkpoints Restore RestoreSlice RestoreV2 Save SaveSlices SaveV2
    '''),
    Family(
        'asset_reads',
        'file reads: only of an asset tensor the loaders feed (see '
        '_safety)',
        '''
    ReadFile
    '''),
)

_BY_OP: Dict[str, Family] = {
    op: family for family in FAMILIES for op in family.op_types.split()}
ALLOWED: FrozenSet[str] = frozenset(_BY_OP)


def family_of(op_type: str) -> Optional[Family]:
  """The family that allows `op_type`, or None when it is not listed."""
  return _BY_OP.get(op_type)
