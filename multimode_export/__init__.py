"""multimode_export: train, eval and serve graphs of an Estimator in one SavedModel.

    import multimode_export
    path = multimode_export.export_all_saved_models(
        estimator, '/tmp/export', {
            tf.estimator.ModeKeys.TRAIN: train_receiver_fn,
            tf.estimator.ModeKeys.EVAL: eval_receiver_fn,
            tf.estimator.ModeKeys.PREDICT: serving_receiver_fn,
        })

or, for your own Estimator class,
`class MyEstimator(multimode_export.MultiModeExportMixin, tf.estimator.Estimator)`.
"""

from multimode_export import _compat

_compat.check_tensorflow()

# pylint: disable=g-import-not-at-top,g-bad-import-order
from multimode_export._export import export_all_saved_models
from multimode_export._per_mode import export_saved_models_per_mode
from multimode_export.checks._inspection import inspect
from multimode_export.checks._report import CheckResult
from multimode_export.checks._report import VerifyReport
from multimode_export.checks._verification import verify
from multimode_export.errors import AssetsExtraError
from multimode_export.errors import CheckpointNotFoundError
from multimode_export.errors import CheckpointReadError
from multimode_export.errors import ConversionError
from multimode_export.errors import Error
from multimode_export.errors import ExportDirError
from multimode_export.errors import ExportError
from multimode_export.errors import InvalidModeError
from multimode_export.errors import MissingVariablesError
from multimode_export.errors import ModelFnError
from multimode_export.errors import NotASavedModelError
from multimode_export.errors import PublishError
from multimode_export.errors import RawSignatureError
from multimode_export.errors import ReceiverError
from multimode_export.errors import UnloadableGraphError
from multimode_export.errors import VariableMismatchError
from multimode_export.errors import VerificationError
from multimode_export.errors import WarmupRequestsError
from multimode_export.graph._modes import choose_variables_carrier
from multimode_export.integration._exporter import MultiModeExporter
from multimode_export.loading import EvalMetrics
from multimode_export.loading import ServingSignatures
from multimode_export.loading import TrainStep
from multimode_export.loading import load_mode
from multimode_export.mixin import MultiModeExportMixin
from multimode_export.tf2._convert import convert_to_tf2

__version__ = '0.1.0'

__all__ = (
    'AssetsExtraError',
    'CheckResult',
    'CheckpointNotFoundError',
    'CheckpointReadError',
    'ConversionError',
    'Error',
    'EvalMetrics',
    'ExportDirError',
    'ExportError',
    'InvalidModeError',
    'MissingVariablesError',
    'ModelFnError',
    'MultiModeExportMixin',
    'MultiModeExporter',
    'NotASavedModelError',
    'PublishError',
    'RawSignatureError',
    'ReceiverError',
    'ServingSignatures',
    'TrainStep',
    'UnloadableGraphError',
    'VariableMismatchError',
    'VerificationError',
    'VerifyReport',
    'WarmupRequestsError',
    'choose_variables_carrier',
    'convert_to_tf2',
    'export_all_saved_models',
    'export_saved_models_per_mode',
    'inspect',
    'load_mode',
    'verify',
)
