"""`convert_to_tf2`: exports of real estimators -> one TF2 SavedModel, used.

Each model is trained once, exported, converted; the TF1 Session results of
the source export (TF 2.15) are the reference. Then the source export and
the training-time vocabulary are moved away, and `tests/tf2_consumer.py`
uses the converted models in a fresh process: here (TF 2.15), and in venvs
with TF 2.16.x (`tools/make_venv_tf216.py`) and the newest TF
(`tools/check_tfsmlayer.py --create_venv`), which have no tf.estimator. One
consumer process per TensorFlow checks every model and returns JSON.

Compared: serving outputs (bit-identical in TF 2.15; within 1e-6 of the
largest magnitude in newer TF, whose kernels round differently), 20
`train_step` losses against `sess.run([loss, train_op])`, the eval metrics,
serving after those steps against a TF1 serve graph restored from the
trained variables, `serve(features)`, the TF1 Session loader with tag
`serve` (same outputs, the source's method names), Keras 3 `TFSMLayer`, and
a `tf.saved_model.save` re-save.
"""

# bazel-data: :tf2_consumer

import os
import shutil
import sys

import numpy as np
import tensorflow as tf
from absl.testing import absltest

import multimode_export
from testing import conversion
from testing import conversion_models
from testing import models

_NEW_VENV = os.environ.get('MULTIMODE_EXPORT_TF_NEW_VENV', '/tmp/venv-tf-new')
_TF216_VENV = os.environ.get('MULTIMODE_EXPORT_TF216_VENV', '/tmp/venv-tf216')
_BUILDERS = (
    conversion_models.dnn_classifier_vocabulary,
    conversion_models.linear_regressor,
    conversion_models.dnn_linear_combined,
    conversion_models.partitioned_per_mode,
    conversion_models.ema_shadows,
    conversion_models.serve_only,
)


def _needs(python: str) -> None:
  if os.path.exists(python):
    return
  if os.environ.get('CI') == 'true':
    raise AssertionError(f'{python} is missing: .ci/run makes it')
  raise absltest.SkipTest(f'{python} is not installed')


class ConvertedModelsTest(models.ClassRootMixin, tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.cases, cls.reference, cls.converted = {}, {}, {}
    for builder in _BUILDERS:
      model_root = os.path.join(cls.root, builder.__name__)
      os.makedirs(model_root)
      case = builder(model_root)
      cls.cases[case.name] = case
      cls.reference[case.name] = conversion.tf1_reference(case, cls.root)
      cls.converted[case.name] = multimode_export.convert_to_tf2(
          case.export_dir, os.path.join(cls.root, 'tf2', case.name))
      for path in [case.export_dir] + case.moved:
        shutil.move(path, path + '.moved')
    cls.results = {}

  def _consume(self, python: str) -> dict:
    if python not in self.results:
      scratch = self.create_tempdir().full_path
      specs = [conversion.consumer_spec(
          case, self.converted[name], os.path.join(scratch, name))
               for name, case in self.cases.items()]
      self.results[python] = conversion.run_consumer(python, specs, scratch)
    return self.results[python]

  def _assert_outputs(self, got: dict, want: dict, exact: bool, what: str):
    self.assertEqual(sorted(got), sorted(want), what)
    for key, expected in want.items():
      expected = np.asarray(expected)
      actual = conversion.decode(got[key])
      if expected.dtype.kind in 'SO':
        self.assertAllEqual(actual, expected, f'{what} {key}')
        continue
      self.assertEqual(actual.dtype, expected.dtype, f'{what} {key}')
      if exact:
        self.assertAllEqual(actual, expected, f'{what} {key}')
      else:
        scale = max(float(np.max(np.abs(expected))), 1e-30)
        self.assertAllClose(actual, expected, rtol=0, atol=1e-6 * scale,
                            msg=f'{what} {key}')

  def _check_model(self, name: str, model: dict, exact: bool):
    case, reference = self.cases[name], self.reference[name]
    self.assertEqual(model['signatures'], sorted(case.serve))
    for key, outputs in reference['serve'].items():
      self._assert_outputs(model['serve'][key], outputs, exact, f'{name} {key}')
      # Grappler optimizes the TF1 loader's graph (e.g. fuses MatMul and
      # BiasAdd), which can change the last bit.
      self._assert_outputs(model['tf1'][key], outputs, False,
                           f'{name} {key} (TF1 loader)')
      self._assert_outputs(model['resaved'][key],
                           reference.get('serve_after_training',
                                         reference['serve'])[key], exact,
                           f'{name} {key} (re-saved)')
    if case.default:
      self._assert_outputs(model['serve_dict'],
                           reference['serve'][case.default], exact,
                           f'{name} serve(features)')
    if 'eval' in reference:
      self._assert_outputs(model['eval'], reference['eval']['updated'], exact,
                           f'{name} eval')
      self._assert_outputs(model['eval_after_reset'],
                           reference['eval']['initial'], exact,
                           f'{name} eval after reset')
    if 'losses' in reference:
      losses = np.array(model['losses'], np.float32)
      want = np.array(reference['losses'], np.float32)
      if exact:
        self.assertAllEqual(losses, want, f'{name} losses')
      else:
        self.assertAllClose(losses, want, rtol=1e-5, msg=f'{name} losses')
      for key, outputs in reference.get('serve_after_training', {}).items():
        self._assert_outputs(model['serve_after_training'][key], outputs,
                             exact, f'{name} {key} after training')

  def _check_all(self, python: str, exact: bool):
    results = self._consume(python)
    for name in self.cases:
      with self.subTest(model=name):
        self._check_model(name, results['models'][name], exact)
    return results

  def test_tf215_fresh_process_is_bit_identical_to_the_tf1_graphs(self):
    results = self._check_all(sys.executable, exact=True)
    self.assertEqual(results['tensorflow'], tf.__version__)

  def test_method_names_survive_for_the_tf1_loader(self):
    results = self._consume(sys.executable)
    model = results['models']['dnn_classifier_vocabulary']
    self.assertEqual(model['method_names'], {
        'serving_default': 'tensorflow/serving/classify',
        'classification': 'tensorflow/serving/classify',
        'regression': 'tensorflow/serving/regress',
        'predict': 'tensorflow/serving/predict'})
    self.assertEqual(
        results['models']['linear_regressor']['method_names']['regression'],
        'tensorflow/serving/regress')

  def test_functions_capture_only_what_they_read(self):
    model = self._consume(sys.executable)['models']['dnn_linear_combined']
    for key in model['signatures']:
      captured = model['captured'][key]
      self.assertTrue(captured)
      self.assertFalse([v for v in captured
                        if 'Ftrl' in v or 'Adagrad' in v or 'global_step' in v],
                       key)
    train = model['captured']['train_step']
    self.assertTrue([v for v in train if 'Ftrl' in v])
    self.assertTrue([v for v in train if 'Adagrad' in v])
    self.assertIn('global_step:0', train)

  def test_modes_the_source_has_and_no_other(self):
    for name, model in self._consume(sys.executable)['models'].items():
      if name == 'serve_only':
        self.assertEqual(model['attributes'], ['serve'])
        self.assertEqual(model['signatures'], ['serving_default'])
        continue
      self.assertEqual(model['attributes'], [
          'eval_reset', 'eval_result', 'eval_update', 'serve', 'train_step'],
                       name)
      self.assertIn('global_step:0', model['variables'])
      self.assertNotIn('global_step:0', model['trainable_variables'])
      before, after = model['global_steps']
      self.assertEqual(after - before, conversion.TRAIN_STEPS, name)

  def test_ema_serving_reads_the_shadows_training_updates(self):
    model = self._consume(sys.executable)['models']['ema_shadows']
    self.assertEqual(model['captured']['serving_default'],
                     ['b/ExponentialMovingAverage:0',
                      'w/ExponentialMovingAverage:0'])
    self.assertEqual(model['trainable_variables'], ['b:0', 'w:0'])
    # Raw and shadow values differ after training: serving follows the
    # shadows (compared with the TF1 serve graph's EMA saver above).
    self.assertIn('w:0', model['captured']['train_step'])

  def test_partitioned_variable_keeps_its_partitions(self):
    model = self._consume(sys.executable)['models']['partitioned_per_mode']
    self.assertIn('w/part_0:0', model['trainable_variables'])
    self.assertIn('w/part_1:0', model['trainable_variables'])

  def test_newest_tensorflow_without_estimator(self):
    python = os.path.join(_NEW_VENV, 'bin', 'python')
    _needs(python)
    results = self._check_all(python, exact=False)
    self.assertNotEqual(results['tensorflow'], tf.__version__)
    for name, model in results['models'].items():
      self._assert_outputs(model['keras']['serve'],
                           self.reference[name]['serve'][
                               self.cases[name].default], False,
                           f'{name} TFSMLayer')

  def test_tf216_without_estimator(self):
    python = os.path.join(_TF216_VENV, 'bin', 'python')
    _needs(python)
    results = self._check_all(python, exact=False)
    self.assertTrue(results['tensorflow'].startswith('2.16.'),
                    results['tensorflow'])


if __name__ == '__main__':
  absltest.main()
