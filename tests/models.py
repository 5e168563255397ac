"""Tiny real estimators, receivers and load-and-run helpers shared by tests.

Everything here trains real `tf.estimator` models for a few steps on small
in-memory data; nothing is mocked.
"""

import hashlib
import json
import os
import posixpath
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf

import multimode_export
import multimode_export.exporter

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


def snapshot(path: str) -> Optional[Dict[str, Optional[str]]]:
  """Every directory and file under `path` (any filesystem), None if absent.

  Directories map to None and files to the sha256 of their contents, keyed by
  their path relative to `path` ('' is `path` itself), so two snapshots are
  equal exactly when nothing was created, removed or changed.
  """
  if not tf.io.gfile.exists(path):
    return None
  if not tf.io.gfile.isdir(path):
    with tf.io.gfile.GFile(path, 'rb') as f:
      return {'': hashlib.sha256(f.read()).hexdigest()}
  out: Dict[str, Optional[str]] = {'': None}
  root = path.rstrip('/')
  for dirpath, dirs, files in tf.io.gfile.walk(root):
    rel = dirpath[len(root):].lstrip('/')
    for name in dirs:
      out[posixpath.join(rel, name.rstrip('/')) + '/'] = None
    for name in files:
      with tf.io.gfile.GFile(posixpath.join(dirpath, name), 'rb') as f:
        out[posixpath.join(rel, name)] = hashlib.sha256(f.read()).hexdigest()
  return out


def load_every_tag_set(export_dir: str) -> List[List[str]]:
  """Loads each MetaGraphDef in a fresh graph and restores its variables.

  Returns:
    The tag sets loaded, sorted.
  """
  loaded = []
  for tags in meta_graph_tags(export_dir):
    _, session, _ = tf1_load(export_dir, tags)
    session.close()
    loaded.append(tags)
  return loaded


def tf2_train_steps(export_dir: str, steps: int = 20, tags=None
                   ) -> List[float]:
  """Train steps from TF2: `tf.saved_model.load` + `prune` of loss and train op.

  `tags=None` loads without tags (only valid for a single-MetaGraph
  SavedModel).
  """
  from tensorflow.python.tools import saved_model_utils  # pylint: disable=g-import-not-at-top
  saved = saved_model_utils.read_saved_model(export_dir)
  meta = [m for m in saved.meta_graphs
          if tags is None or set(m.meta_info_def.tags) == set(tags)][0]
  train_op = meta.collection_def['saved_model_train_op'].node_list.value[0]
  sig = meta.signature_def['train']
  loaded = (tf.saved_model.load(export_dir) if tags is None else
            tf.saved_model.load(export_dir, tags=list(tags)))
  step = loaded.prune(
      feeds=[sig.inputs['x'].name, sig.inputs['label'].name],
      fetches=[sig.outputs['loss'].name,
               loaded.graph.get_operation_by_name(train_op)])
  x, y = make_data()
  return [float(step(tf.constant(x), tf.constant(y))[0])
          for _ in range(steps)]


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
  est.train(input_fn(), steps=steps)
  return est


def graph_devices(export_dir: str) -> List[str]:
  """Every distinct device string in every MetaGraphDef of a SavedModel."""
  from tensorflow.python.tools import saved_model_utils  # pylint: disable=g-import-not-at-top
  return sorted({n.device for m in
                 saved_model_utils.read_saved_model(export_dir).meta_graphs
                 for n in m.graph_def.node})


class RecordingExporter(multimode_export.exporter.MultiModeExporter):
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


def assert_export_matches_checkpoint(test, export_dir: str, checkpoint: str,
                                     modes=(ModeKeys.TRAIN, ModeKeys.EVAL,
                                            ModeKeys.PREDICT)) -> None:
  """Asserts the export has every mode's tag set and the checkpoint's values."""
  test.assertEqual(meta_graph_tags(export_dir),
                   sorted(sorted(TAGS[m]) for m in modes))
  exported = saved_variables(export_dir)
  expected = checkpoint_values(checkpoint)
  test.assertEqual(sorted(exported), sorted(expected))
  for key, value in expected.items():
    np.testing.assert_array_equal(exported[key], value, err_msg=key)


# An embedding regressor, for models whose embedding is partitioned (across
# parameter servers in a cluster).
VOCAB_SIZE = 16
EMBEDDING_DIM = 4
IDS_PER_EXAMPLE = 2


def make_id_data(n: int = 64, seed: int = 0):
  rng = np.random.RandomState(seed)
  ids = rng.randint(0, VOCAB_SIZE, size=(n, IDS_PER_EXAMPLE)).astype(np.int64)
  true_weights = np.linspace(-1.0, 1.0, VOCAB_SIZE).astype(np.float32)
  y = true_weights[ids].sum(axis=1, keepdims=True).astype(np.float32)
  return ids, y


def id_input_fn(batch_size: int = 16, seed: int = 0):
  ids, y = make_id_data(seed=seed)

  def fn():
    return tf.data.Dataset.from_tensor_slices(({'ids': ids}, y)).repeat().batch(
        batch_size)
  return fn


def embedding_model_fn(features, labels, mode, params):
  """Mean of looked-up embeddings -> dense -> regression, with Adagrad.

  params['partitions'] (default 2) splits the embedding with
  `fixed_size_partitioner`; under `replica_device_setter` each partition
  lands on a different parameter server.
  """
  partitions = params.get('partitions', 2)
  embedding = tf.compat.v1.get_variable(
      'embedding', shape=[VOCAB_SIZE, EMBEDDING_DIM],
      initializer=tf.compat.v1.truncated_normal_initializer(stddev=0.1,
                                                             seed=1),
      partitioner=tf.compat.v1.fixed_size_partitioner(partitions))
  vectors = tf.reduce_mean(
      tf.nn.embedding_lookup(embedding, features['ids']), axis=1)
  dense = tf.compat.v1.get_variable(
      'dense', shape=[EMBEDDING_DIM, 1],
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


def id_receiver_map(modes=(ModeKeys.TRAIN, ModeKeys.EVAL, ModeKeys.PREDICT)):
  features = {'ids': tf.zeros([1, IDS_PER_EXAMPLE], tf.int64)}
  fns = {
      ModeKeys.TRAIN:
          tf.estimator.experimental.build_raw_supervised_input_receiver_fn(
              features, tf.zeros([1, 1])),
      ModeKeys.EVAL:
          tf.estimator.experimental.build_raw_supervised_input_receiver_fn(
              features, tf.zeros([1, 1])),
      ModeKeys.PREDICT:
          tf.estimator.export.build_raw_serving_input_receiver_fn(features),
  }
  return {m: fns[m] for m in modes}
