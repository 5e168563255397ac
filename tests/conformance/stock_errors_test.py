"""Stock's ValueError contract: same inputs, a ValueError with stock's words.

Each case runs the stock `experimental_export_all_saved_models` and
`multimode_export.export_all_saved_models` on the same estimator, receivers
and checkpoint. Where stock raises `ValueError`, ours must raise a
`ValueError` too (our specific exceptions subclass it) whose message
contains stock's (up to stock's appended TF traceback).
"""

import os
from typing import Callable, Dict, NamedTuple

import tensorflow as tf
from absl.testing import parameterized

import multimode_export
from testing import datasets
from testing import models
from testing import receiver_fns

ModeKeys = tf.estimator.ModeKeys
# Stock appends the Saver's error to its own missing-variables message.
_STOCK_TRACEBACK = ' Full Traceback:'


def _raising_receiver():
  raise ValueError('the feature spec has no column x_typo')


def _not_a_spec_model_fn(features, labels, mode):
  del labels, mode
  return {'y': features['x']}


def _no_default_model_fn(features, labels, mode):
  del labels
  w = tf.compat.v1.get_variable('w', [datasets.FEATURE_DIM, 1])
  y = tf.matmul(features['x'], w)
  return tf.estimator.EstimatorSpec(mode, predictions={'y': y}, export_outputs={
      'a': tf.estimator.export.PredictOutput({'y': y}),
      'b': tf.estimator.export.PredictOutput({'y2': 2.0 * y})})


class Case(NamedTuple):
  """What to export: estimator kind and receivers (built in the test)."""
  estimator: str  # 'trained', 'untrained', or a model_fn name
  receivers: Callable[[], Dict[str, object]]
  checkpoint: str = ''  # a path under the model_dir, or '' for the latest


_PREDICT = lambda: {ModeKeys.PREDICT: receiver_fns.serving_receiver_fn()}
CASES = {
    'no_checkpoint': Case('untrained', receiver_fns.receiver_map),
    'empty_receiver_map': Case('trained', dict),
    'only_none_receivers': Case(
        'trained', lambda: {ModeKeys.EVAL: None, ModeKeys.PREDICT: None}),
    'checkpoint_path_missing': Case('trained', _PREDICT, 'model.ckpt-999'),
    'only_unknown_keys': Case(
        'trained', lambda: {'predict': receiver_fns.serving_receiver_fn()}),
    'variable_missing_from_checkpoint': Case('predict_only_variable',
                                             receiver_fns.receiver_map),
    'receiver_raises': Case('trained',
                            lambda: {ModeKeys.PREDICT: _raising_receiver}),
    'serving_receiver_for_train': Case(
        'trained', lambda: {ModeKeys.TRAIN: receiver_fns.serving_receiver_fn()}),
    'model_fn_returns_no_spec': Case('not_a_spec', _PREDICT),
    'export_outputs_without_default': Case('no_default', _PREDICT),
}


class StockErrorsTest(models.ClassRootMixin, parameterized.TestCase,
                      tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.model_dir = os.path.join(cls.root, 'model')
    models.train_custom(cls.model_dir, steps=2)

  def _estimator(self, kind: str) -> tf.estimator.Estimator:
    if kind == 'untrained':
      return tf.estimator.Estimator(models.linear_model_fn, params={},
                                    model_dir=self.create_tempdir().full_path)
    model_fn = {'not_a_spec': _not_a_spec_model_fn,
                'no_default': _no_default_model_fn}.get(kind,
                                                        models.linear_model_fn)
    params = {'predict_only_variable': kind == 'predict_only_variable'}
    if model_fn is not models.linear_model_fn:
      return tf.estimator.Estimator(model_fn, model_dir=self.model_dir)
    return tf.estimator.Estimator(model_fn, params=params,
                                  model_dir=self.model_dir)

  @parameterized.named_parameters(*CASES.items())
  def test_value_error_with_stock_wording(self, case):
    estimator = self._estimator(case.estimator)
    checkpoint = (os.path.join(self.model_dir, case.checkpoint)
                  if case.checkpoint else None)
    with self.assertRaises(ValueError) as stock:
      estimator.experimental_export_all_saved_models(
          self.create_tempdir().full_path, case.receivers(),
          checkpoint_path=checkpoint)
    stock_text = str(stock.exception).split(_STOCK_TRACEBACK)[0]
    base = self.create_tempdir().full_path
    with self.assertRaises(ValueError) as ours:
      multimode_export.export_all_saved_models(
          estimator, base, case.receivers(), checkpoint_path=checkpoint)
    self.assertIn(stock_text, str(ours.exception))
    self.assertEqual(os.listdir(base), [])


if __name__ == '__main__':
  tf.test.main()
