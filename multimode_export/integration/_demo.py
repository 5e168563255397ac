"""The demo behind `multimode-export demo`: train, export, inspect, verify.

A linear regressor on data made here (no downloads) is trained for a few
hundred steps with a `tf.estimator.Estimator`, then exported with all three
modes:
- TRAIN and EVAL from raw tensors (`x`: float32[None, 2], `label`),
- PREDICT from serialized `tf.Example`s (the parsing receiver a serving
  system uses), with a `serving_default` predict signature and a `regression`
  signature.
"""

import dataclasses
import tempfile
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from multimode_export import _export as export
from multimode_export.checks import _inspection as inspection
from multimode_export.checks import _report as report_lib
from multimode_export.checks import _verification as verification

ModeKeys = tf.estimator.ModeKeys

FEATURE_DIM = 2
TRUE_WEIGHTS = (2.0, -3.0)
TRUE_BIAS = 1.0
DEFAULT_STEPS = 200


@dataclasses.dataclass(frozen=True)
class DemoResult:
  """What `run_demo` did.

  Attributes:
    export_dir: the published export.
    loss: the eval loss of the trained model.
    summary: the `inspect` text of the export.
    report: the `verify` report of the export.
  """
  export_dir: str
  loss: float
  summary: str
  report: report_lib.VerifyReport


def make_data(n: int = 256, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
  """(x, y): x uniform in [0, 1)^2, y = 2 x0 - 3 x1 + 1 + small noise."""
  rng = np.random.RandomState(seed)
  x = rng.rand(n, FEATURE_DIM).astype(np.float32)
  y = x @ np.array(TRUE_WEIGHTS, np.float32)[:, None] + TRUE_BIAS
  y += rng.normal(scale=0.01, size=y.shape).astype(np.float32)
  return x, y.astype(np.float32)


def _feature_columns():
  return [tf.feature_column.numeric_column('x', shape=[FEATURE_DIM])]


def model_fn(features: Dict[str, tf.Tensor], labels: Optional[tf.Tensor],
             mode: str) -> tf.estimator.EstimatorSpec:
  """Linear regression on a feature column, Adam, an MAE metric."""
  inputs = tf.compat.v1.feature_column.input_layer(features,
                                                   _feature_columns())
  with tf.compat.v1.variable_scope('linear'):
    kernel = tf.compat.v1.get_variable(
        'kernel', [FEATURE_DIM, 1], initializer=tf.compat.v1.zeros_initializer())
    bias = tf.compat.v1.get_variable(
        'bias', [1], initializer=tf.compat.v1.zeros_initializer())
  predictions = tf.matmul(inputs, kernel) + bias
  export_outputs = {
      tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY:
          tf.estimator.export.PredictOutput({'y': predictions}),
      'regression': tf.estimator.export.RegressionOutput(predictions),
  }
  if mode == ModeKeys.PREDICT:
    return tf.estimator.EstimatorSpec(mode, predictions={'y': predictions},
                                      export_outputs=export_outputs)
  loss = tf.compat.v1.losses.mean_squared_error(labels, predictions)
  train_op = None
  if mode == ModeKeys.TRAIN:
    train_op = tf.compat.v1.train.AdamOptimizer(0.05).minimize(
        loss, global_step=tf.compat.v1.train.get_global_step())
  return tf.estimator.EstimatorSpec(
      mode, predictions={'y': predictions}, loss=loss, train_op=train_op,
      eval_metric_ops={'mae': tf.compat.v1.metrics.mean_absolute_error(
          labels, predictions)},
      export_outputs=export_outputs)


def _input_fn(x, y, repeat: bool):
  def fn():
    dataset = tf.data.Dataset.from_tensor_slices(({'x': x}, y))
    return (dataset.repeat() if repeat else dataset).batch(32)
  return fn


def receiver_map() -> Dict[str, Callable[[], object]]:
  """The receiver fn for each mode, as `export_all_saved_models` takes it."""
  supervised = tf.estimator.experimental.build_raw_supervised_input_receiver_fn(
      {'x': tf.zeros([1, FEATURE_DIM])}, tf.zeros([1, 1]))
  serving = tf.estimator.export.build_parsing_serving_input_receiver_fn(
      tf.feature_column.make_parse_example_spec(_feature_columns()))
  return {ModeKeys.TRAIN: supervised, ModeKeys.EVAL: supervised,
          ModeKeys.PREDICT: serving}


def run_demo(export_dir_base: Optional[str] = None, *,
             steps: int = DEFAULT_STEPS,
             progress: Callable[[str], None] = logging.info) -> DemoResult:
  """Trains the demo model, exports all three modes, inspects and verifies.

  Args:
    export_dir_base: where the export's version directory is created; a new
      temporary directory by default.
    steps: training steps.
    progress: called with one line per stage.

  Returns:
    A DemoResult.

  Raises:
    ValueError: `steps` is not positive.
    multimode_export.ExportError: the export failed.
  """
  if steps < 1:
    raise ValueError(f'steps: expected a positive number, got {steps}')
  if export_dir_base is None:
    export_dir_base = tempfile.mkdtemp(prefix='multimode_export_demo_')
  x, y = make_data()
  # The model_dir only feeds the export: the export's variables are linked or
  # copied from its checkpoint, so it can go once the export is written.
  with tempfile.TemporaryDirectory(prefix='multimode_export_model_') as model_dir:
    estimator = tf.estimator.Estimator(
        model_fn, model_dir=model_dir,
        config=tf.estimator.RunConfig(tf_random_seed=0,
                                      log_step_count_steps=steps))
    progress(f'Training a linear model on {len(x)} made-up examples for '
             f'{steps} steps')
    estimator.train(_input_fn(x, y, repeat=True), steps=steps)
    loss = float(estimator.evaluate(_input_fn(x, y, repeat=False))['loss'])
    progress(f'Trained: eval loss {loss:.4g} on the training data')
    progress(f'Exporting train, eval and serve under {export_dir_base}')
    export_dir = export.export_all_saved_models(estimator, export_dir_base,
                                                receiver_map())
  progress(f'Wrote {export_dir}')
  summary = inspection.inspect(export_dir)
  progress('Verifying the export')
  report = verification.verify(export_dir)
  return DemoResult(export_dir, loss, summary, report)
