"""Tiny real estimators, receivers and load-and-run helpers shared by tests.

Everything here trains real `tf.estimator` models for a few steps on small
in-memory data; nothing is mocked.
"""

import os
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf

import multimode_export

ModeKeys = tf.estimator.ModeKeys
FEATURE_DIM = 3


def make_data(n: int = 64, seed: int = 0):
  rng = np.random.RandomState(seed)
  x = rng.rand(n, FEATURE_DIM).astype(np.float32)
  y = (x @ np.array([[1.0], [-2.0], [0.5]], np.float32) + 0.3).astype(
      np.float32)
  return x, y


def input_fn(batch_size: int = 16, seed: int = 0):
  x, y = make_data(seed=seed)

  def fn():
    return tf.data.Dataset.from_tensor_slices(({'x': x}, y)).repeat().batch(
        batch_size)
  return fn


def linear_model_fn(features, labels, mode, params):
  """A linear regressor with Adam, an extra PREDICT-only output head."""
  partitions = params.get('partitions', 1)
  x = features['x']
  partitioner = (tf.compat.v1.fixed_size_partitioner(partitions)
                 if partitions > 1 else None)
  w = tf.compat.v1.get_variable('w', shape=[FEATURE_DIM, 1],
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
  if mode == ModeKeys.PREDICT:
    return tf.estimator.EstimatorSpec(mode, predictions={'y': predictions},
                                      export_outputs=export_outputs)
  loss = tf.compat.v1.losses.mean_squared_error(labels, predictions)
  metrics = {'mae': tf.compat.v1.metrics.mean_absolute_error(labels,
                                                             predictions)}
  train_op = None
  if mode == ModeKeys.TRAIN:
    train_op = tf.compat.v1.train.AdamOptimizer(0.1).minimize(
        loss, global_step=tf.compat.v1.train.get_global_step())
  return tf.estimator.EstimatorSpec(
      mode, predictions={'y': predictions}, loss=loss, train_op=train_op,
      eval_metric_ops=metrics, export_outputs=export_outputs)


class MixinEstimator(multimode_export.MultiModeExportMixin,
                     tf.estimator.Estimator):
  """A custom Estimator subclass that uses the mixin."""


def train_custom(model_dir: str, steps: int = 5, estimator_cls=None,
                 **params) -> tf.estimator.Estimator:
  cls = estimator_cls or tf.estimator.Estimator
  est = cls(linear_model_fn, model_dir=model_dir, params=params,
            config=tf.estimator.RunConfig(tf_random_seed=1))
  est.train(input_fn(), steps=steps)
  return est


def supervised_receiver_fn():
  return tf.estimator.experimental.build_raw_supervised_input_receiver_fn(
      {'x': tf.zeros([1, FEATURE_DIM])},
      tf.zeros([1, 1]))


def serving_receiver_fn():
  return tf.estimator.export.build_raw_serving_input_receiver_fn(
      {'x': tf.zeros([1, FEATURE_DIM])})


def receiver_map(modes=(ModeKeys.TRAIN, ModeKeys.EVAL, ModeKeys.PREDICT)):
  fns = {ModeKeys.TRAIN: supervised_receiver_fn(),
         ModeKeys.EVAL: supervised_receiver_fn(),
         ModeKeys.PREDICT: serving_receiver_fn()}
  return {m: fns[m] for m in modes}


TAGS = {ModeKeys.TRAIN: ['train'], ModeKeys.EVAL: ['eval'],
        ModeKeys.PREDICT: ['serve']}


def checkpoint_values(prefix: str) -> Dict[str, np.ndarray]:
  reader = tf.train.load_checkpoint(prefix)
  return {k: reader.get_tensor(k)
          for k in reader.get_variable_to_shape_map()}


def saved_variables(export_dir: str) -> Dict[str, np.ndarray]:
  return checkpoint_values(os.path.join(export_dir, 'variables', 'variables'))


def meta_graph_tags(export_dir: str) -> List[List[str]]:
  from tensorflow.python.tools import saved_model_utils  # pylint: disable=g-import-not-at-top
  return sorted(sorted(m.meta_info_def.tags) for m in
                saved_model_utils.read_saved_model(export_dir).meta_graphs)


def tf1_load(export_dir: str, tags: List[str]):
  """Loads a tag set in a fresh graph; returns (graph, session, meta_graph)."""
  graph = tf.Graph()
  session = tf.compat.v1.Session(graph=graph)
  with graph.as_default():
    meta = tf.compat.v1.saved_model.loader.load(session, tags, export_dir)
  return graph, session, meta


def run_signature(session, meta, key: str, feeds: Dict[str, np.ndarray]
                 ) -> Dict[str, np.ndarray]:
  sig = meta.signature_def[key]
  feed = {sig.inputs[k].name: v for k, v in feeds.items()}
  fetch = {k: v.name for k, v in sig.outputs.items()}
  return session.run(fetch, feed)


def train_steps(export_dir: str, steps: int = 20, tags=('train',)
               ) -> List[float]:
  """Runs train steps from the exported train graph; returns the losses."""
  x, y = make_data()
  graph, session, meta = tf1_load(export_dir, list(tags))
  with graph.as_default(), session:
    train_op = tf.compat.v1.get_collection('saved_model_train_op')[0]
    sig = meta.signature_def['train']
    loss = sig.outputs['loss'].name
    feed = {sig.inputs['x'].name: x, sig.inputs['label'].name: y}
    losses = []
    for _ in range(steps):
      value, _ = session.run([loss, train_op], feed)
      losses.append(float(value))
  return losses


def stock_export(estimator, export_dir_base: str,
                 modes=(ModeKeys.TRAIN, ModeKeys.EVAL, ModeKeys.PREDICT),
                 checkpoint_path: Optional[str] = None) -> str:
  path = estimator.experimental_export_all_saved_models(
      export_dir_base, receiver_map(modes), checkpoint_path=checkpoint_path)
  return path.decode('utf-8') if isinstance(path, bytes) else path


# --- Canned estimator, parsing receivers and fault injection (verify/inspect).

N_CLASSES = 3


def canned_feature_columns():
  return [tf.feature_column.numeric_column('x', shape=[FEATURE_DIM])]


def train_canned_dnn(model_dir: str, steps: int = 3
                    ) -> tf.estimator.DNNClassifier:
  """A DNNClassifier trained a few steps on `make_data` (labels 0..2)."""
  x, y = make_data()
  labels = np.clip((y * 2).astype(np.int64), 0, N_CLASSES - 1)

  def fn():
    return tf.data.Dataset.from_tensor_slices(({'x': x}, labels)).repeat(
    ).batch(16)
  est = tf.estimator.DNNClassifier(
      [4], canned_feature_columns(), model_dir=model_dir, n_classes=N_CLASSES,
      config=tf.estimator.RunConfig(tf_random_seed=1))
  est.train(fn, steps=steps)
  return est


def canned_receiver_map():
  """Raw supervised TRAIN/EVAL receivers, a tf.Example parsing PREDICT one."""
  supervised = tf.estimator.experimental.build_raw_supervised_input_receiver_fn(
      {'x': tf.zeros([1, FEATURE_DIM])}, tf.zeros([1, 1], tf.int64))
  return {
      ModeKeys.TRAIN: supervised,
      ModeKeys.EVAL: supervised,
      ModeKeys.PREDICT:
          tf.estimator.export.build_parsing_serving_input_receiver_fn(
              tf.feature_column.make_parse_example_spec(
                  canned_feature_columns())),
  }


def stock_canned_export(estimator, export_dir_base: str) -> str:
  path = estimator.experimental_export_all_saved_models(
      export_dir_base, canned_receiver_map())
  return path.decode('utf-8') if isinstance(path, bytes) else path


def truncate_variables_data(export_dir: str, keep_fraction: float = 0.5
                           ) -> str:
  """Cuts the export's variables data file short; returns its path."""
  [data] = tf.io.gfile.glob(
      os.path.join(export_dir, 'variables', 'variables.data-*'))
  os.truncate(data, int(os.path.getsize(data) * keep_fraction))
  return data
