"""Tiny real estimators and model_fns (custom savers, devices, embeddings, canned) and training them.

Real TensorFlow and real estimators throughout; nothing is mocked.
"""

import json
import os
import shutil
import tempfile
from typing import Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf
from absl.testing import absltest
# A custom SaverBuilder needs the base class, which has no public name.
from tensorflow.python.training import saver as saver_lib

import multimode_export
from testing import datasets

ModeKeys = tf.estimator.ModeKeys


class ClassRootMixin:
  """Gives a test class `cls.root`, a directory made once for the class.

  It lies under absltest's test tmpdir, on the same filesystem as
  `create_tempdir()` (Bazel's sandbox mounts /tmp apart from TEST_TMPDIR), so
  an export can hard-link a checkpoint trained in it. Removed after the class.
  Put it before the TestCase base: `class T(models.ClassRootMixin, ...)`.

  absltest's tmpdir is made here when missing: under pytest nothing else makes
  it before a test's `create_tempdir()`, so on a fresh machine (or with a new
  TMPDIR) the class root would have no parent.
  """

  root: str

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    parent = absltest.get_default_test_tmpdir()
    os.makedirs(parent, exist_ok=True)
    cls.root = tempfile.mkdtemp(prefix=cls.__name__, dir=parent)

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.root, ignore_errors=True)
    super().tearDownClass()


def linear_model_fn(features, labels, mode, params):
  """A linear regressor with Adam, an extra PREDICT-only output head.

  params: `partitions` (split `w` with a fixed_size_partitioner),
  `predict_only_variable` (PREDICT creates a variable no other mode has),
  `saver` ('v1': the Scaffold saver writes V1-format checkpoints;
  'opaque_names': its restore op hides the checkpoint keys from the graph).
  """
  partitions = params.get('partitions', 1)
  x = features['x']
  partitioner = (tf.compat.v1.fixed_size_partitioner(partitions)
                 if partitions > 1 else None)
  w = tf.compat.v1.get_variable('w', shape=[datasets.FEATURE_DIM, 1],
                                initializer=tf.compat.v1.zeros_initializer(),
                                partitioner=partitioner)
  b = tf.compat.v1.get_variable('b', shape=[1],
                                initializer=tf.compat.v1.zeros_initializer())
  if params.get('predict_only_variable') and mode == ModeKeys.PREDICT:
    scale = tf.compat.v1.get_variable(
        'predict_scale', shape=[], initializer=tf.compat.v1.ones_initializer())
  else:
    scale = 1.0
  predictions = (tf.matmul(x, w) + b) * scale
  export_outputs = {
      'serving_default': tf.estimator.export.PredictOutput(
          {'y': predictions}),
      'regression': tf.estimator.export.RegressionOutput(predictions),
  }
  if params.get('extra_signature'):
    # A second PredictOutput: serve gets a signature besides serving_default
    # (RegressionOutput needs serialized tf.Examples, a raw receiver drops it).
    export_outputs['doubled'] = tf.estimator.export.PredictOutput(
        {'y2': 2.0 * predictions})
  if mode == ModeKeys.PREDICT:
    return tf.estimator.EstimatorSpec(mode, predictions={'y': predictions},
                                      export_outputs=export_outputs,
                                      scaffold=_scaffold(params))
  loss = tf.compat.v1.losses.mean_squared_error(labels, predictions)
  metrics = {'mae': tf.compat.v1.metrics.mean_absolute_error(labels,
                                                             predictions)}
  train_op = None
  if mode == ModeKeys.TRAIN:
    train_op = tf.compat.v1.train.AdamOptimizer(0.1).minimize(
        loss, global_step=tf.compat.v1.train.get_global_step())
  return tf.estimator.EstimatorSpec(
      mode, predictions={'y': predictions}, loss=loss, train_op=train_op,
      eval_metric_ops=metrics, export_outputs=export_outputs,
      scaffold=_scaffold(params))


class _OpaqueNamesSaverBuilder(saver_lib.BaseSaverBuilder):
  """Restores through RestoreV2 ops whose key names are not plain constants.

  Stands for an exotic custom saver whose keys cannot be read from the graph.
  """

  def restore_op(self, filename_tensor, saveable, preferred_shard):
    del preferred_shard
    return [tf.raw_ops.RestoreV2(
        prefix=filename_tensor, tensor_names=tf.identity([spec.name]),
        shape_and_slices=tf.identity([spec.slice_spec]),
        dtypes=[spec.dtype])[0] for spec in saveable.specs]


def _scaffold(params) -> Optional[tf.compat.v1.train.Scaffold]:
  """params['saver']: 'v1' (V1-format checkpoints) or 'opaque_names'."""
  kind = params.get('saver')
  if kind is None:
    return None
  if kind == 'v1':
    saver = tf.compat.v1.train.Saver(
        write_version=tf.compat.v1.train.SaverDef.V1)
  elif kind == 'opaque_names':
    saver = tf.compat.v1.train.Saver(builder=_OpaqueNamesSaverBuilder())
  else:
    raise ValueError(f"params['saver']: expected 'v1' or 'opaque_names', got "
                     f'{kind!r}')
  return tf.compat.v1.train.Scaffold(saver=saver)


class MixinEstimator(multimode_export.MultiModeExportMixin,
                     tf.estimator.Estimator):
  """A custom Estimator subclass that uses the mixin."""


def train_custom(model_dir: str, steps: int = 5, estimator_cls=None,
                 **params) -> tf.estimator.Estimator:
  cls = estimator_cls or tf.estimator.Estimator
  est = cls(linear_model_fn, model_dir=model_dir, params=params,
            config=tf.estimator.RunConfig(tf_random_seed=1))
  est.train(datasets.input_fn(), steps=steps)
  return est


def _linear_parts(features, labels, mode):
  w = tf.compat.v1.get_variable('w', [datasets.FEATURE_DIM, 1],
                                initializer=tf.compat.v1.zeros_initializer())
  b = tf.compat.v1.get_variable('b', [1],
                                initializer=tf.compat.v1.zeros_initializer())
  predictions = tf.matmul(features['x'], w) + b
  global_step = tf.compat.v1.train.get_or_create_global_step()
  kwargs = dict(
      predictions={'y': predictions},
      export_outputs={'serving_default': tf.estimator.export.PredictOutput(
          {'y': predictions})})
  optimizer = None
  if mode != ModeKeys.PREDICT:
    kwargs['loss'] = tf.compat.v1.losses.mean_squared_error(labels,
                                                            predictions)
    kwargs['eval_metric_ops'] = {
        'mae': tf.compat.v1.metrics.mean_absolute_error(labels, predictions)}
  if mode == ModeKeys.TRAIN:
    optimizer = tf.compat.v1.train.AdamOptimizer(0.1)
    kwargs['train_op'] = optimizer.minimize(kwargs['loss'],
                                            global_step=global_step)
  return w, b, global_step, optimizer, kwargs


def renamed_saver_model_fn(features, labels, mode):
  """A Scaffold name-based Saver that stores w and b under other keys and
  leaves the optimizer slots out (a var_list subset)."""
  w, b, global_step, _, kwargs = _linear_parts(features, labels, mode)
  saved = {'renamed/w': w, 'renamed/b': b, 'global_step': global_step}
  saver = tf.compat.v1.train.Saver(saved, sharded=True)
  # What the saver leaves out (Adam's slots) the local init op initializes;
  # it is the SavedModel's main op, so the exported train graph runs.
  unsaved = [v for v in tf.compat.v1.global_variables()
             if all(v is not s for s in saved.values())]
  local_init_op = tf.group(tf.compat.v1.train.Scaffold.default_local_init_op(),
                           tf.compat.v1.variables_initializer(unsaved))
  return tf.estimator.EstimatorSpec(
      mode, scaffold=tf.compat.v1.train.Scaffold(
          saver=saver, local_init_op=local_init_op), **kwargs)


def checkpoint_saver_model_fn(features, labels, mode):
  """A `tf.train.Checkpoint` as Scaffold saver (object-based keys), tracking
  the optimizer in TRAIN only."""
  w, b, global_step, optimizer, kwargs = _linear_parts(features, labels, mode)
  tracked = dict(w=w, b=b, step=global_step)
  if optimizer is not None:
    tracked['optimizer'] = optimizer
  return tf.estimator.EstimatorSpec(
      mode, scaffold=tf.compat.v1.train.Scaffold(
          saver=tf.train.Checkpoint(**tracked)), **kwargs)


def v1_format_saver_model_fn(features, labels, mode, params):
  """linear_model_fn with a V1-format Scaffold saver (the Session path)."""
  from tensorflow.core.protobuf import saver_pb2  # pylint: disable=g-import-not-at-top
  spec = linear_model_fn(features, labels, mode, params)
  return spec._replace(scaffold=tf.compat.v1.train.Scaffold(
      saver=tf.compat.v1.train.Saver(write_version=saver_pb2.SaverDef.V1)))


def device_pinned_model_fn(device: str):
  """`linear_model_fn` with every op pinned to `device` (e.g. a GPU)."""

  def model_fn(features, labels, mode, params):
    with tf.device(device):
      return linear_model_fn(features, labels, mode, params)
  return model_fn


def train_pinned(model_dir: str, device: str, steps: int = 3
                ) -> tf.estimator.Estimator:
  """Trains with ops pinned to `device`; Estimator's soft placement lets a
  missing device fall back to the CPU."""
  est = tf.estimator.Estimator(device_pinned_model_fn(device),
                               model_dir=model_dir, params={},
                               config=tf.estimator.RunConfig(tf_random_seed=1))
  est.train(datasets.input_fn(), steps=steps)
  return est


class RecordingExporter(multimode_export.MultiModeExporter):
  """A MultiModeExporter that records every call (and its outcome).

  `calls` holds one dict per `export` call: the returned path (None if
  skipped), the checkpoint and the eval result. With `record_file`, each call
  is also appended to that file as a JSON line (for other processes).
  """

  def __init__(self, *args, record_file: Optional[str] = None, **kwargs):
    super().__init__(*args, **kwargs)
    self.calls: List[dict] = []
    self._record_file = record_file

  def export(self, estimator, export_path, checkpoint_path, eval_result,
             is_the_final_export):
    path = super().export(estimator, export_path, checkpoint_path,
                          eval_result, is_the_final_export)
    call = {'path': path, 'checkpoint': checkpoint_path,
            'task_type': estimator.config.task_type,
            'global_step': int(eval_result['global_step']),
            'loss': float(eval_result['loss'])}
    self.calls.append(call)
    if self._record_file:
      with open(self._record_file, 'a') as f:
        f.write(json.dumps(call) + '\n')
    return path


def read_records(record_file: str) -> List[dict]:
  if not os.path.exists(record_file):
    return []
  with open(record_file) as f:
    return [json.loads(line) for line in f if line.strip()]


def embedding_model_fn(features, labels, mode, params):
  """Mean of looked-up embeddings -> dense -> regression, with Adagrad.

  params['partitions'] (default 2) splits the embedding with
  `fixed_size_partitioner`; under `replica_device_setter` each partition
  lands on a different parameter server.
  """
  partitions = params.get('partitions', 2)
  embedding = tf.compat.v1.get_variable(
      'embedding', shape=[datasets.VOCAB_SIZE, datasets.EMBEDDING_DIM],
      initializer=tf.compat.v1.truncated_normal_initializer(stddev=0.1,
                                                             seed=1),
      partitioner=tf.compat.v1.fixed_size_partitioner(partitions))
  vectors = tf.reduce_mean(
      tf.nn.embedding_lookup(embedding, features['ids']), axis=1)
  dense = tf.compat.v1.get_variable(
      'dense', shape=[datasets.EMBEDDING_DIM, 1],
      initializer=tf.compat.v1.truncated_normal_initializer(stddev=0.1,
                                                             seed=2))
  bias = tf.compat.v1.get_variable(
      'bias', shape=[1], initializer=tf.compat.v1.zeros_initializer())
  predictions = tf.matmul(vectors, dense) + bias
  export_outputs = {'serving_default': tf.estimator.export.PredictOutput(
      {'y': predictions})}
  if mode == ModeKeys.PREDICT:
    return tf.estimator.EstimatorSpec(mode, predictions={'y': predictions},
                                      export_outputs=export_outputs)
  loss = tf.compat.v1.losses.mean_squared_error(labels, predictions)
  train_op = None
  if mode == ModeKeys.TRAIN:
    train_op = tf.compat.v1.train.AdagradOptimizer(0.5).minimize(
        loss, global_step=tf.compat.v1.train.get_global_step())
  return tf.estimator.EstimatorSpec(
      mode, predictions={'y': predictions}, loss=loss, train_op=train_op,
      export_outputs=export_outputs)


def train_canned_dnn(model_dir: str, steps: int = 3
                    ) -> tf.estimator.DNNClassifier:
  """A DNNClassifier trained a few steps on `make_data` (labels 0..2)."""
  x, y = datasets.make_data()
  labels = np.clip((y * 2).astype(np.int64), 0, datasets.N_CLASSES - 1)

  def fn():
    return tf.data.Dataset.from_tensor_slices(({'x': x}, labels)).repeat(
    ).batch(16)
  est = tf.estimator.DNNClassifier(
      [4], datasets.canned_feature_columns(), model_dir=model_dir, n_classes=datasets.N_CLASSES,
      config=tf.estimator.RunConfig(tf_random_seed=1))
  est.train(fn, steps=steps)
  return est


def train_canned_with_vocabulary(model_dir: str, regressor: bool = False,
                                 vocabulary: bool = True, steps: int = 20):
  """A DNNClassifier (2 classes) or DNNRegressor on numeric `x` [3] and,
  with `vocabulary`, an indicator of `cat` from `datasets.VOCABULARY`.

  Returns:
    (estimator, parse spec: `cat` a fixed-length string, features).
  """
  features, classes, scores = datasets.make_column_data()
  columns = [tf.feature_column.numeric_column('x', shape=[datasets.FEATURE_DIM])]
  spec = {'x': tf.io.FixedLenFeature([datasets.FEATURE_DIM], tf.float32)}
  if vocabulary:
    columns.append(tf.feature_column.indicator_column(
        tf.feature_column.categorical_column_with_vocabulary_list(
            'cat', datasets.VOCABULARY)))
    spec['cat'] = tf.io.FixedLenFeature([1], tf.string)
  else:
    features = {'x': features['x']}
  kwargs = dict(hidden_units=[4], feature_columns=columns, model_dir=model_dir,
                config=tf.estimator.RunConfig(tf_random_seed=1),
                optimizer=lambda: tf.keras.optimizers.legacy.Adagrad(0.1))
  if regressor:
    est = tf.estimator.DNNRegressor(**kwargs)
  else:
    est = tf.estimator.DNNClassifier(n_classes=2, **kwargs)
  est.train(datasets.column_input_fn(features, scores if regressor else classes),
            steps=steps)
  return est, spec, features
