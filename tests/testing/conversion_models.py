"""The estimators whose exports the conversion tests convert, trained tiny.

Each builder trains one estimator for a few steps, exports it with this
package and returns a `conversion.Case` with the inputs to feed.
"""

import os

import numpy as np
import tensorflow as tf

import multimode_export
from testing import conversion
from testing import datasets
from testing import models
from testing import receiver_fns
from multimode_export.saved_model import _format as saved_model_format

ModeKeys = tf.estimator.ModeKeys
_ROWS = 8


def _serve_inputs(export_dir: str, values) -> dict:
  """signature key -> its inputs, for every serving signature of the export."""
  [serve] = [m for m in saved_model_format.read_saved_model(
      export_dir).meta_graphs if list(m.meta_info_def.tags) == ['serve']]
  return {key: {k: values[k][:_ROWS] for k in signature.inputs}
          for key, signature in serve.signature_def.items()}


def _default(serve: dict) -> str:
  """The signature the converted model's `serve(features)` calls."""
  return next(k for k in ('serving_default', 'predict') if k in serve)


def _train_batches(inputs, n=conversion.TRAIN_STEPS):
  """`n` batches of 4 rows cycling through `inputs`."""
  size = len(next(iter(inputs.values())))
  batches = []
  for step in range(n):
    rows = [(step * 4 + i) % size for i in range(4)]
    batches.append({k: v[rows] for k, v in inputs.items()})
  return batches


def _parsing_serving(spec):
  return tf.estimator.export.build_parsing_serving_input_receiver_fn(spec)


def dnn_classifier_vocabulary(root: str) -> conversion.Case:
  """DNNClassifier, an embedded vocabulary-file column; tf.Example inputs."""
  vocabulary = datasets.write_vocabulary(root)
  features, classes, _ = datasets.make_column_data()
  x_col, cat_col, embedded = datasets.feature_columns(vocabulary)
  estimator = tf.estimator.DNNClassifier(
      [4], [x_col, embedded], model_dir=os.path.join(root, 'dnn'),
      config=tf.estimator.RunConfig(tf_random_seed=1))
  estimator.train(datasets.column_input_fn(features, classes), steps=3)
  spec = tf.feature_column.make_parse_example_spec([x_col, cat_col])
  parsing = receiver_fns.parsing_supervised_receiver_fn(
      spec, tf.io.FixedLenFeature([1], tf.int64))
  path = multimode_export.export_all_saved_models(
      estimator, os.path.join(root, 'export'), {
          ModeKeys.TRAIN: parsing, ModeKeys.EVAL: parsing,
          ModeKeys.PREDICT: _parsing_serving(spec)})
  examples = np.array(datasets.serialize_examples(features, classes),
                      dtype=object)
  serve = _serve_inputs(path, {'inputs': examples, 'examples': examples})
  return conversion.Case(
      'dnn_classifier_vocabulary', path, serve, 'serving_default',
      _train_batches({'examples': examples}), {'examples': examples[:16]},
      [vocabulary])


def _raw(features, labels):
  return dict(features, label=labels)


def linear_regressor(root: str) -> conversion.Case:
  """LinearRegressor (a regress signature), raw TRAIN/EVAL inputs."""
  vocabulary = datasets.write_vocabulary(root, 'linear_vocab.txt')
  features, _, scores = datasets.make_column_data()
  x_col, cat_col, _ = datasets.feature_columns(vocabulary)
  estimator = tf.estimator.LinearRegressor(
      [x_col, cat_col], model_dir=os.path.join(root, 'linear'),
      config=tf.estimator.RunConfig(tf_random_seed=1))
  estimator.train(datasets.column_input_fn(features, scores), steps=3)
  spec = tf.feature_column.make_parse_example_spec([x_col, cat_col])
  supervised = receiver_fns.raw_supervised_receiver_fn(features, scores)
  path = multimode_export.export_all_saved_models(
      estimator, os.path.join(root, 'export'), {
          ModeKeys.TRAIN: supervised, ModeKeys.EVAL: supervised,
          ModeKeys.PREDICT: _parsing_serving(spec)})
  examples = np.array(datasets.serialize_examples(features), dtype=object)
  raw = _raw(features, scores)
  return conversion.Case(
      'linear_regressor', path,
      _serve_inputs(path, {'inputs': examples, 'examples': examples}),
      'serving_default',
      _train_batches(raw), {k: v[:16] for k, v in raw.items()}, [vocabulary])


def dnn_linear_combined(root: str) -> conversion.Case:
  """DNNLinearCombinedClassifier with Ftrl (linear) and Adagrad (DNN)."""
  features, classes, _ = datasets.make_column_data()
  x_col = tf.feature_column.numeric_column('x', shape=[datasets.FEATURE_DIM])
  cat_col = tf.feature_column.categorical_column_with_vocabulary_list(
      'cat', datasets.VOCABULARY)
  estimator = tf.estimator.DNNLinearCombinedClassifier(
      linear_feature_columns=[cat_col, x_col],
      linear_optimizer=lambda: tf.keras.optimizers.legacy.Ftrl(0.1),
      dnn_feature_columns=[x_col, tf.feature_column.indicator_column(cat_col)],
      dnn_optimizer=lambda: tf.keras.optimizers.legacy.Adagrad(0.1),
      dnn_hidden_units=[4], model_dir=os.path.join(root, 'combined'),
      config=tf.estimator.RunConfig(tf_random_seed=1))
  estimator.train(datasets.column_input_fn(features, classes), steps=3)
  supervised = receiver_fns.raw_supervised_receiver_fn(features, classes)
  serving = tf.estimator.export.build_raw_serving_input_receiver_fn(
      {'x': tf.zeros([1, datasets.FEATURE_DIM]), 'cat': tf.constant([['a']])})
  path = multimode_export.export_all_saved_models(
      estimator, os.path.join(root, 'export'), {
          ModeKeys.TRAIN: supervised, ModeKeys.EVAL: supervised,
          ModeKeys.PREDICT: serving})
  raw = _raw(features, classes)
  serve = _serve_inputs(path, features)
  return conversion.Case(
      'dnn_linear_combined', path, serve, _default(serve),
      _train_batches(raw), {k: v[:16] for k, v in raw.items()}, [])


def _raw_case(name, estimator, root, modes, features, labels, per_mode=False):
  """Exports `modes` with raw receivers on `features` (one `x` input)."""
  receivers = receiver_fns.receiver_map(modes)
  if per_mode:
    path = os.path.join(root, 'export')
    multimode_export.export_saved_models_per_mode(estimator, None, receivers,
                                                  export_dir=path)
    serve_dir = os.path.join(path, 'serve')
  else:
    path = serve_dir = multimode_export.export_all_saved_models(
        estimator, os.path.join(root, 'export'), receivers)
  serve = (_serve_inputs(serve_dir, features)
           if ModeKeys.PREDICT in modes else {})
  raw = _raw(features, labels)
  return conversion.Case(
      name, path, serve, _default(serve) if serve else None,
      _train_batches(raw) if ModeKeys.TRAIN in modes else [],
      {k: v[:16] for k, v in raw.items()} if ModeKeys.EVAL in modes else None,
      [])


_ALL_MODES = (ModeKeys.TRAIN, ModeKeys.EVAL, ModeKeys.PREDICT)


def partitioned_per_mode(root: str) -> conversion.Case:
  """A custom model_fn with a partitioned `w` (Adam), per-mode layout."""
  x, y = datasets.make_data(n=32)
  estimator = models.train_custom(os.path.join(root, 'model'), partitions=2)
  return _raw_case('partitioned_per_mode', estimator, root, _ALL_MODES,
                   {'x': x}, y, per_mode=True)


def serve_only(root: str) -> conversion.Case:
  """Only the serve graph exported: the result has signatures only."""
  x, y = datasets.make_data(n=32)
  estimator = models.train_custom(os.path.join(root, 'model'))
  return _raw_case('serve_only', estimator, root, (ModeKeys.PREDICT,),
                   {'x': x}, y)


def ema_model_fn(features, labels, mode):
  """A linear model whose eval and serve graphs restore the EMA shadows.

  TRAIN runs one SGD step, then `ExponentialMovingAverage.apply`; EVAL and
  PREDICT restore `w` and `b` from `w/ExponentialMovingAverage` and
  `b/ExponentialMovingAverage` (a Scaffold saver over
  `variables_to_restore()`), as EMA models are served.
  """
  w = tf.compat.v1.get_variable('w', [datasets.FEATURE_DIM, 1],
                                initializer=tf.compat.v1.zeros_initializer())
  b = tf.compat.v1.get_variable('b', [1],
                                initializer=tf.compat.v1.zeros_initializer())
  ema = tf.compat.v1.train.ExponentialMovingAverage(0.5)
  predictions = tf.matmul(features['x'], w) + b
  outputs = {'serving_default': tf.estimator.export.PredictOutput(
      {'y': predictions})}
  if mode == ModeKeys.TRAIN:
    loss = tf.compat.v1.losses.mean_squared_error(labels, predictions)
    step = tf.compat.v1.train.GradientDescentOptimizer(0.1).minimize(
        loss, global_step=tf.compat.v1.train.get_global_step())
    with tf.control_dependencies([step]):
      train_op = ema.apply([w, b])
    return tf.estimator.EstimatorSpec(mode, predictions={'y': predictions},
                                      loss=loss, train_op=train_op,
                                      export_outputs=outputs)
  scaffold = tf.compat.v1.train.Scaffold(
      saver=tf.compat.v1.train.Saver(ema.variables_to_restore([w, b])))
  if mode == ModeKeys.PREDICT:
    return tf.estimator.EstimatorSpec(mode, predictions={'y': predictions},
                                      export_outputs=outputs,
                                      scaffold=scaffold)
  loss = tf.compat.v1.losses.mean_squared_error(labels, predictions)
  return tf.estimator.EstimatorSpec(
      mode, loss=loss, scaffold=scaffold, eval_metric_ops={
          'mae': tf.compat.v1.metrics.mean_absolute_error(labels,
                                                          predictions)})


def ema_shadows(root: str) -> conversion.Case:
  """Serving (and eval) from ExponentialMovingAverage shadows."""
  x, y = datasets.make_data(n=32)
  estimator = tf.estimator.Estimator(
      ema_model_fn, os.path.join(root, 'model'),
      config=tf.estimator.RunConfig(tf_random_seed=1))
  estimator.train(datasets.input_fn(), steps=5)
  return _raw_case('ema_shadows', estimator, root, _ALL_MODES, {'x': x}, y)


def sdca_linear_classifier(root: str) -> str:
  """LinearClassifier with the SDCA optimizer; returns its export."""
  features, classes, _ = datasets.make_column_data()
  features = {'x': features['x'],
              'example_id': np.array([str(i).encode() for i in
                                      range(len(classes))], dtype=object)}
  x_col = tf.feature_column.numeric_column('x', shape=[datasets.FEATURE_DIM])
  estimator = tf.estimator.LinearClassifier(
      [x_col], model_dir=os.path.join(root, 'sdca'),
      optimizer=tf.estimator.experimental.LinearSDCA(
          example_id_column='example_id', symmetric_l2_regularization=0.1))
  estimator.train(datasets.column_input_fn(features, classes), steps=2)
  return multimode_export.export_all_saved_models(
      estimator, os.path.join(root, 'export'),
      {ModeKeys.TRAIN: receiver_fns.raw_supervised_receiver_fn(features,
                                                               classes)})
