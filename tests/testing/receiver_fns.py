"""Input receiver fns and receiver maps for every mode, and the default tags.

Real TensorFlow and real estimators throughout; nothing is mocked.
"""

import tensorflow as tf

import multimode_export
from testing import datasets

ModeKeys = tf.estimator.ModeKeys


def supervised_receiver_fn():
  return tf.estimator.experimental.build_raw_supervised_input_receiver_fn(
      {'x': tf.zeros([1, datasets.FEATURE_DIM])},
      tf.zeros([1, 1]))


def serving_receiver_fn():
  return tf.estimator.export.build_raw_serving_input_receiver_fn(
      {'x': tf.zeros([1, datasets.FEATURE_DIM])})


def receiver_map(modes=(ModeKeys.TRAIN, ModeKeys.EVAL, ModeKeys.PREDICT)):
  fns = {ModeKeys.TRAIN: supervised_receiver_fn(),
         ModeKeys.EVAL: supervised_receiver_fn(),
         ModeKeys.PREDICT: serving_receiver_fn()}
  return {m: fns[m] for m in modes}


TAGS = {ModeKeys.TRAIN: ['train'], ModeKeys.EVAL: ['eval'],
        ModeKeys.PREDICT: ['serve']}


MODE_SETS = (
    ('train_only', (ModeKeys.TRAIN,)),
    ('eval_only', (ModeKeys.EVAL,)),
    ('predict_only', (ModeKeys.PREDICT,)),
    ('train_predict', (ModeKeys.TRAIN, ModeKeys.PREDICT)),
    ('eval_predict', (ModeKeys.EVAL, ModeKeys.PREDICT)),
    ('all', (ModeKeys.TRAIN, ModeKeys.EVAL, ModeKeys.PREDICT)),
)


def raw_supervised_receiver_fn(features, labels):
  """build_raw_supervised_input_receiver_fn shaped like one batch row."""
  return tf.estimator.experimental.build_raw_supervised_input_receiver_fn(
      {k: tf.constant(v[:1]) for k, v in features.items()},
      tf.constant(labels[:1]))


def parsing_supervised_receiver_fn(feature_spec, label_spec):
  """A TRAIN/EVAL receiver fed serialized tf.Examples that carry a `label`."""
  from multimode_export import _tf_private  # pylint: disable=g-import-not-at-top

  def fn():
    serialized = tf.compat.v1.placeholder(tf.string, [None],
                                          name='input_example_tensor')
    parsed = tf.io.parse_example(serialized,
                                 dict(feature_spec, label=label_spec))
    labels = parsed.pop('label')
    return _tf_private.SupervisedInputReceiver(parsed, labels,
                                               {'examples': serialized})
  return fn


def id_receiver_map(modes=(ModeKeys.TRAIN, ModeKeys.EVAL, ModeKeys.PREDICT)):
  features = {'ids': tf.zeros([1, datasets.IDS_PER_EXAMPLE], tf.int64)}
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


def canned_receiver_map():
  """Raw supervised TRAIN/EVAL receivers, a tf.Example parsing PREDICT one."""
  supervised = tf.estimator.experimental.build_raw_supervised_input_receiver_fn(
      {'x': tf.zeros([1, datasets.FEATURE_DIM])}, tf.zeros([1, 1], tf.int64))
  return {
      ModeKeys.TRAIN: supervised,
      ModeKeys.EVAL: supervised,
      ModeKeys.PREDICT:
          tf.estimator.export.build_parsing_serving_input_receiver_fn(
              tf.feature_column.make_parse_example_spec(
                  datasets.canned_feature_columns())),
  }


def tfma_style_eval_receiver_fn(feature_spec, label_key: str = 'label',
                                version: str = '0.0.test'):
  """An EVAL receiver with the signature of TFMA's `EvalInputReceiver`.

  The eval signature gets `inputs/examples` (serialized tf.Examples),
  `features/<key>` (sparse for a VarLenFeature), `labels` (the same tensor as
  `features/<label_key>`), `input_refs` and a constant `tfma/version`: what
  TFMA 0.46 reads. Made here without TFMA, which needs the full `tensorflow`
  package (tests/conformance/tfma_test.py runs the real one in a venv).
  """
  from multimode_export import _tf_private  # pylint: disable=g-import-not-at-top

  def fn():
    serialized = tf.compat.v1.placeholder(tf.string, [None],
                                          name='input_example_tensor')
    features = tf.io.parse_example(serialized, feature_spec)
    labels = features[label_key]
    inputs = {f'features/{k}': v for k, v in features.items()}
    inputs.update({'inputs/examples': serialized, 'labels': labels,
                   'input_refs': tf.range(tf.size(serialized)),
                   'tfma/version': tf.constant(version)})
    return _tf_private.SupervisedInputReceiver(features, labels, inputs)
  return fn


def parsing_receiver_map(spec, features, label_dtype=tf.int64):
  """Raw supervised TRAIN/EVAL receivers and a PREDICT receiver parsing
  tf.Examples with `spec`."""
  supervised = tf.estimator.experimental.build_raw_supervised_input_receiver_fn(
      {k: tf.constant(v[:1]) for k, v in features.items()},
      tf.zeros([1, 1], label_dtype))
  return {
      ModeKeys.TRAIN: supervised,
      ModeKeys.EVAL: supervised,
      ModeKeys.PREDICT:
          tf.estimator.export.build_parsing_serving_input_receiver_fn(spec),
  }
