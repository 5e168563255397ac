"""Tiny real estimators, receivers and load-and-run helpers shared by tests.

Everything here trains real `tf.estimator` models for a few steps on small
in-memory data; nothing is mocked.
"""

import os
import re
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf
# A custom SaverBuilder needs the base class, which has no public name.
from tensorflow.python.training import saver as saver_lib

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


def loaded_variables(export_dir: str, tags: List[str]) -> Dict[str, np.ndarray]:
  """Loads a tag set in a fresh graph; returns its global variables' values.

  Keyed like the checkpoint: partitions `name/part_<i>` (split on axis 0,
  as `fixed_size_partitioner` does) are joined back into `name`.
  """
  graph, session, _ = tf1_load(export_dir, tags)
  with graph.as_default(), session:
    variables = tf.compat.v1.global_variables()
    values = session.run({v.op.name: v for v in variables})
  parts: Dict[str, Dict[int, np.ndarray]] = {}
  result = {}
  for name, value in values.items():
    match = re.fullmatch(r'(.*)/part_(\d+)(/.*)?', name)  # also w/part_0/Adam
    if match:
      key = match.group(1) + (match.group(3) or '')
      parts.setdefault(key, {})[int(match.group(2))] = value
    else:
      result[name] = value
  for name, pieces in parts.items():
    result[name] = np.concatenate([pieces[i] for i in sorted(pieces)], axis=0)
  return result


def write_checkpoint(prefix: str, values: Dict[str, np.ndarray]) -> str:
  """Writes `values` (key -> array) as a V2 checkpoint at `prefix`."""
  names = sorted(values)
  tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names,
                    shape_and_slices=[''] * len(names),
                    tensors=[tf.constant(values[n]) for n in names])
  return prefix
