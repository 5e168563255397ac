"""Tests of MultiModeExportMixin: it only adds, and stock methods are untouched."""

import inspect
import os
import tempfile

import numpy as np
import tensorflow as tf
from absl.testing import absltest
from absl.testing import parameterized

import multimode_export
from testing import assertions
from testing import datasets
from testing import models
from testing import receiver_fns
ModeKeys = tf.estimator.ModeKeys
STOCK_METHODS = ('train', 'evaluate', 'predict', 'export_saved_model',
                 'experimental_export_all_saved_models')


class _Empty:
  """What Python puts into every class's namespace by itself."""


_AUTOMATIC = set(vars(_Empty)) | {'__annotations__'}


class MixinNamesTest(parameterized.TestCase):

  def _added(self):
    return set(vars(multimode_export.MultiModeExportMixin)) - _AUTOMATIC

  def test_adds_exactly_the_export_methods(self):
    self.assertEqual(self._added(), {'export_all_saved_models',
                                     'export_saved_models_per_mode'})

  @parameterized.named_parameters(
      ('estimator', tf.estimator.Estimator),
      ('v1_estimator', tf.compat.v1.estimator.Estimator),
      ('dnn_classifier', tf.estimator.DNNClassifier),
      ('linear_regressor', tf.estimator.LinearRegressor))
  def test_shadows_no_estimator_member(self, estimator_class):
    self.assertEmpty(self._added() & set(dir(estimator_class)))

  def test_stock_methods_resolve_to_estimator(self):
    for name in STOCK_METHODS:
      self.assertIs(getattr(models.MixinEstimator, name),
                    getattr(tf.estimator.Estimator, name), name)

  def test_method_signature_matches_the_issue_and_the_function(self):
    method = inspect.signature(
        multimode_export.MultiModeExportMixin.export_all_saved_models)
    function = inspect.signature(multimode_export.export_all_saved_models)
    expected = [('export_dir_base', inspect.Parameter.empty),
                ('input_receiver_fn_map', inspect.Parameter.empty),
                ('assets_extra', None), ('as_text', False),
                ('checkpoint_path', None), ('strip_default_attrs', False)]
    positional = [(p.name, p.default) for p in method.parameters.values()
                  if p.kind == p.POSITIONAL_OR_KEYWORD][1:]  # minus self
    self.assertEqual(positional, expected)
    function_positional = [
        (p.name, p.default) for p in function.parameters.values()
        if p.kind == p.POSITIONAL_OR_KEYWORD][1:]  # minus estimator
    self.assertEqual(function_positional, expected)
    self.assertIs(method.return_annotation, str)
    self.assertIs(function.return_annotation, str)


class EstimatorGuardTest(absltest.TestCase):
  """Estimator.__init__ refuses subclasses overriding its members."""

  def test_guard_passes_for_mixin_classes(self):
    for base in (tf.estimator.Estimator, tf.compat.v1.estimator.Estimator):
      cls = type('WithMixin', (multimode_export.MultiModeExportMixin, base),
                 {})
      cls(models.linear_model_fn, params={})  # raises if the guard fails

  def test_guard_is_active_on_a_mixin_class(self):
    # The control: a shadowing member in the class body is refused, so the
    # test above can fail.
    def export_saved_model(self, *args, **kwargs):
      del self, args, kwargs

    cls = type('Bad', (multimode_export.MultiModeExportMixin,
                       tf.estimator.Estimator),
               {'export_saved_model': export_saved_model})
    with self.assertRaisesRegex(ValueError, 'export_saved_model'):
      cls(models.linear_model_fn, params={})

  def test_guard_does_not_see_members_coming_from_a_mixin(self):
    # The guard only reads the concrete class's own __dict__: a mixin that
    # shadowed an Estimator member would pass it silently. That is why
    # MixinNamesTest compares the mixin's names with Estimator's itself.
    class Shadowing:

      def export_saved_model(self, *args, **kwargs):
        del args, kwargs

    cls = type('Sneaky', (Shadowing, tf.estimator.Estimator), {})
    estimator = cls(models.linear_model_fn, params={})  # not refused
    self.assertIsNot(type(estimator).export_saved_model,
                     tf.estimator.Estimator.export_saved_model)


class StockMethodsUnchangedTest(tf.test.TestCase):
  """A mixin estimator and a plain one, same seed, same data: same results."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls._dir = tempfile.mkdtemp(prefix='mixin_test_')
    cls.plain = models.train_custom(os.path.join(cls._dir, 'plain'))
    cls.mixin = models.train_custom(os.path.join(cls._dir, 'mixin'),
                                    estimator_cls=models.MixinEstimator)

  def test_train_writes_identical_checkpoints(self):
    plain = assertions.checkpoint_values(self.plain.latest_checkpoint())
    mixin = assertions.checkpoint_values(self.mixin.latest_checkpoint())
    self.assertEqual({k: assertions.comparable(v) for k, v in mixin.items()},
                     {k: assertions.comparable(v) for k, v in plain.items()})
    self.assertEqual(os.path.basename(self.mixin.latest_checkpoint()),
                     os.path.basename(self.plain.latest_checkpoint()))

  def test_evaluate_and_predict(self):
    self.assertEqual(self.mixin.evaluate(datasets.input_fn(), steps=2),
                     self.plain.evaluate(datasets.input_fn(), steps=2))
    x, _ = datasets.make_data(n=8)

    def predict_input_fn():
      return tf.data.Dataset.from_tensor_slices({'x': x}).batch(4)

    plain = [p['y'] for p in self.plain.predict(predict_input_fn)]
    mixin = [p['y'] for p in self.mixin.predict(predict_input_fn)]
    self.assertLen(mixin, 8)
    self.assertAllEqual(np.array(mixin), np.array(plain))

  def test_export_saved_model(self):
    base = self.create_tempdir().full_path
    plain = self.plain.export_saved_model(os.path.join(base, 'plain'),
                                          receiver_fns.serving_receiver_fn())
    mixin = self.mixin.export_saved_model(os.path.join(base, 'mixin'),
                                          receiver_fns.serving_receiver_fn())
    self.assertIsInstance(mixin, bytes)  # as stock: unchanged
    plain, mixin = plain.decode(), mixin.decode()
    self.assertEqual(assertions.describe_export(mixin),
                     assertions.describe_export(plain))
    self.assertEqual(assertions.comparable_variables(mixin),
                     assertions.comparable_variables(plain))

  def test_experimental_export_all_saved_models(self):
    base = self.create_tempdir().full_path
    plain = assertions.stock_export(self.plain, os.path.join(base, 'plain'))
    mixin = assertions.stock_export(self.mixin, os.path.join(base, 'mixin'))
    assertions.assert_same_as_stock(self, mixin, plain)
    # And the mixin's own method next to them.
    ours = self.mixin.export_all_saved_models(os.path.join(base, 'ours'),
                                              receiver_fns.receiver_map())
    assertions.assert_same_as_stock(self, ours, plain)


if __name__ == '__main__':
  absltest.main()
