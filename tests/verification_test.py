"""verify(): passes on good exports (ours and stock), fails per check on bad."""

import os
import shutil

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

import multimode_export
from multimode_export.checks import _report as report_lib
from multimode_export.checks import _verification as verification
from multimode_export.variables import _bundle_check as bundle_check
from testing import assertions
from testing import datasets
from testing import faults
from testing import models
from testing import receiver_fns
from testing import running
ModeKeys = tf.estimator.ModeKeys


def _names(report, tags):
  return [c.name for c in report.checks if c.tags == tuple(tags)]


def _check(report, name, tags=()):
  [check] = [c for c in report.checks if c.name == name and c.tags == tags]
  return check


class VerifyGoodExportsTest(models.ClassRootMixin, parameterized.TestCase, tf.test.TestCase):
  """The three exports are built once; each test only verifies."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    custom = models.train_custom(os.path.join(cls.root, 'custom'))
    cls.exports = {
        'ours': multimode_export.export_all_saved_models(
            custom, os.path.join(cls.root, 'ours'), receiver_fns.receiver_map()),
        'stock_custom': assertions.stock_export(
            custom, os.path.join(cls.root, 'stock_custom')),
        'stock_canned': assertions.stock_canned_export(
            models.train_canned_dnn(os.path.join(cls.root, 'dnn')),
            os.path.join(cls.root, 'stock_canned')),
    }
    cls.reports = {}

  def _report(self, kind):
    if kind not in self.reports:
      self.reports[kind] = verification.verify(self.exports[kind])
    return self.reports[kind]

  @parameterized.named_parameters(('ours', 'ours'),
                                  ('stock_custom', 'stock_custom'),
                                  ('stock_canned', 'stock_canned'))
  def test_every_check_passes(self, kind):
    report = self._report(kind)
    self.assertTrue(report.ok, str(report))
    self.assertEqual(report.failures, ())
    # The safety scan comes first, for the files and every tag set.
    self.assertEqual([c.name for c in report.checks[:5]],
                     ['saved_model', 'safety', 'safety', 'safety', 'safety'])
    self.assertEqual(_names(report, ()), ['saved_model', 'safety',
                                          'variables'])
    # `variables` keeps its place, though its crc32c pass ends after the
    # loads began: right after the safety scans, before every tag set's.
    self.assertEqual(report.checks[5].name, 'variables')
    train = _names(report, ['train'])
    self.assertEqual(train, ['safety', 'saver', 'tf1_load', 'tf1_signature:train',
                             'train_step', 'tf2_load', 'tf2_signature:train'])
    # Only the train graph has a train op.
    self.assertNotIn('train_step', _names(report, ['eval']) +
                     _names(report, ['serve']))
    self.assertIn('tf2_signature:serving_default', _names(report, ['serve']))

  def test_train_step_advances_global_step(self):
    report = self._report('ours')
    detail = _check(report, 'train_step', ('train',)).detail
    global_step = tf.train.load_checkpoint(os.path.join(
        self.exports['ours'], 'variables', 'variables')).get_tensor(
            'global_step')
    self.assertIn(f'global_step {global_step} -> {global_step + 1}', detail)
    # In memory only: the export's variables are unchanged.
    self.assertEqual(assertions.saved_variables(self.exports['ours'])[
        'global_step'], global_step)

  def test_parsing_receiver_gets_serialized_examples(self):
    report = self._report('stock_canned')
    for key in ('serving_default', 'classification', 'predict'):
      check = _check(report, f'tf1_signature:{key}', ('serve',))
      self.assertTrue(check.ok, check.detail)
      self.assertIn('tf.Example(x)[2]', check.detail)

  def test_run_train_step_false_skips_it(self):
    report = verification.verify(self.exports['ours'], run_train_step=False)
    self.assertTrue(report.ok, str(report))
    self.assertNotIn('train_step', [c.name for c in report.checks])

  def test_report_text_has_one_line_per_check(self):
    report = self._report('ours')
    text = str(report)
    self.assertStartsWith(text, f'PASSED: all {len(report.checks)} checks of ')
    self.assertLen(text.splitlines(), len(report.checks) + 2)
    self.assertNotIn('FAIL', text)


class VerifyBadExportsTest(models.ClassRootMixin, tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.good = multimode_export.export_all_saved_models(
        models.train_custom(os.path.join(cls.root, 'model')),
        os.path.join(cls.root, 'export'), receiver_fns.receiver_map())

  def _copy(self):
    # copytree copies file contents: the good export's variables may be hard
    # links to the checkpoint, which must stay intact.
    path = os.path.join(self.create_tempdir().full_path, 'copy')
    shutil.copytree(self.good, path)
    return path

  def test_truncated_variables_data_fails_naming_a_variable(self):
    path = self._copy()
    faults.truncate_variables_data(path, keep_fraction=0.3)
    report = verification.verify(path)
    self.assertFalse(report.ok)
    variables = _check(report, 'variables')
    self.assertFalse(variables.ok)
    self.assertRegex(variables.detail, r"variable '.+' unreadable")
    self.assertFalse(_check(report, 'tf1_load', ('train',)).ok)
    self.assertFalse(_check(report, 'tf2_load', ('train',)).ok)
    self.assertStartsWith(str(report), 'FAILED: ')
    self.assertIn('FAIL  *', str(report))

  def test_corrupt_variables_data_fails_variables_first_as_before(self):
    # The crc32c pass runs on a thread beside the loads; the report must be
    # what the sequential pass gave: `variables` first, failing with the
    # pass's own message, and no `saver` check (it depends on `variables`).
    path = self._copy()
    faults.flip_variables_byte(path, 'w')  # every graph restores it
    with self.assertRaises(bundle_check.BundleDataError) as raised:
      bundle_check.check(os.path.join(path, 'variables', 'variables'))
    report = verification.verify(path)
    variables = _check(report, 'variables')
    self.assertFalse(variables.ok)
    # As the sequential pass reported it: its message, long paths shortened.
    self.assertEqual(variables.detail,
                     report_lib.shorten_paths(str(raised.exception)))
    self.assertRegex(variables.detail,
                     r"^variable '.+' unreadable: checksum mismatch in .+"
                     r"variables.data-00000-of-00001: stored 0x[0-9a-f]+, "
                     r"computed 0x[0-9a-f]+$")
    self.assertEqual(
        [(c.name, c.tags) for c in report.checks if not c.ok],
        [('variables', ())] + [(load, (tag,)) for tag in ('train', 'eval',
                                                          'serve')
                               for load in ('tf1_load', 'tf2_load')])
    self.assertEqual(
        [(c.name, c.tags) for c in report.checks],
        [('saved_model', ()), ('safety', ()), ('safety', ('train',)),
         ('safety', ('eval',)), ('safety', ('serve',)), ('variables', ())] +
        [(load, (tag,)) for tag in ('train', 'eval', 'serve')
         for load in ('tf1_load', 'tf2_load')])
    self.assertEqual(str(report).splitlines()[7].split()[:3],
                     ['FAIL', '*', 'variables'])

  def test_unreadable_data_file_in_the_pass_is_reported(self):
    # An error other than a checksum mismatch, raised on the pass's thread.
    path = self._copy()
    [data] = tf.io.gfile.glob(
        os.path.join(path, 'variables', 'variables.data-*'))
    os.remove(data)
    os.mkdir(data)
    report = verification.verify(path)
    variables = _check(report, 'variables')
    self.assertFalse(variables.ok)
    self.assertStartsWith(variables.detail,
                          'variables/ unreadable: IsADirectoryError: ')
    self.assertEqual(report.checks[5], variables)

  def test_not_a_saved_model(self):
    report = verification.verify(self.create_tempdir().full_path)
    self.assertFalse(report.ok)
    [check] = report.checks
    self.assertEqual(check.name, 'saved_model')
    self.assertIn('is not a SavedModel', check.detail)

  def test_missing_directory(self):
    missing = os.path.join(self.create_tempdir().full_path, 'nothing')
    report = verification.verify(missing)
    self.assertFalse(report.ok)
    self.assertIn('does not exist', report.checks[0].detail)

  def test_a_long_path_never_hides_the_reason(self):
    # A Bazel sandbox under a long HOME, or a long object store URL: the
    # reason after the path must survive, the path is cut in the middle.
    deep = os.path.join(self.create_tempdir().full_path,
                        *(['d' * 40] * 8), 'nothing')
    for path, reason in ((deep, 'does not exist'),
                         ('ram://' + 'b' * 300 + '/nothing', 'does not exist')):
      detail = verification.verify(path).checks[0].detail
      self.assertIn(reason, detail)
      self.assertIn("nothing'", detail)
      self.assertLess(len(detail), len(path))

  def test_variable_missing_from_variables_dir(self):
    # Rewrite variables/ without the optimizer slots of `w`: the train graph's
    # saver needs them, the serve graph's does not.
    path = self._copy()
    prefix = os.path.join(path, 'variables', 'variables')
    values = assertions.checkpoint_values(prefix)
    kept = {k: v for k, v in values.items() if not k.startswith('w/Adam')}
    for f in tf.io.gfile.glob(prefix + '*'):
      tf.io.gfile.remove(f)
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=list(kept),
                      shape_and_slices=[''] * len(kept),
                      tensors=list(kept.values()))
    report = verification.verify(path)
    saver = _check(report, 'saver', ('train',))
    self.assertFalse(saver.ok)
    self.assertIn("'w/Adam' missing", saver.detail)
    self.assertIn("'w/Adam_1' missing", saver.detail)
    self.assertFalse(_check(report, 'tf1_load', ('train',)).ok)
    self.assertTrue(_check(report, 'saver', ('serve',)).ok)
    self.assertTrue(_check(report, 'tf1_signature:serving_default',
                           ('serve',)).ok)

  def test_variable_with_wrong_shape(self):
    path = self._copy()
    prefix = os.path.join(path, 'variables', 'variables')
    values = assertions.checkpoint_values(prefix)
    values['b'] = np.zeros([2], np.float32)
    for f in tf.io.gfile.glob(prefix + '*'):
      tf.io.gfile.remove(f)
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=list(values),
                      shape_and_slices=[''] * len(values),
                      tensors=list(values.values()))
    report = verification.verify(path)
    for tags in (('train',), ('eval',), ('serve',)):
      saver = _check(report, 'saver', tags)
      self.assertFalse(saver.ok)
      self.assertIn("'b' is float32[2], the graph expects float32[1]",
                    saver.detail)

  def test_tf2_saved_model(self):
    # Not an Estimator export: one MetaGraphDef, an object-based saver, an
    # init-op pseudo signature, a string input without a parser.
    module = tf.Module()
    module.v = tf.Variable([[1.0], [2.0], [3.0]])
    module.predict = tf.function(
        lambda x: {'y': x @ module.v},
        input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    module.length = tf.function(
        lambda text: {'n': tf.strings.length(text)},
        input_signature=[tf.TensorSpec([None], tf.string)])
    path = self.create_tempdir().full_path
    tf.saved_model.save(module, path, signatures={
        'serving_default': module.predict, 'length': module.length})
    report = verification.verify(path)
    self.assertTrue(report.ok, str(report))
    self.assertCountEqual(
        _names(report, ['serve']),
        ['safety', 'saver', 'tf1_load', 'tf1_signature:length',
         'tf1_signature:serving_default', 'tf2_load', 'tf2_signature:length',
         'tf2_signature:serving_default', 'tf2_function:length',
         'tf2_function:predict'])
    self.assertIn("text: b''[2]",
                  _check(report, 'tf1_signature:length', ('serve',)).detail)
    # Loaded without tags, each root function run once.
    self.assertIn('loaded without tags',
                  _check(report, 'tf2_load', ('serve',)).detail)

  def test_bad_argument_type(self):
    with self.assertRaisesRegex(TypeError, 'export_dir: expected str'):
      verification.verify(42)


class VerifyLayoutsTest(models.ClassRootMixin, tf.test.TestCase):
  """verify() on export bases and per-mode exports, built once."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.paths = running.export_every_layout(
        models.train_custom(os.path.join(cls.root, 'model')), cls.root)

  def test_shared_base_verifies_the_newest_version(self):
    report = verification.verify(self.paths['shared_base'])
    self.assertTrue(report.ok, str(report))
    self.assertEqual(report.export_dir, self.paths['shared_newest'])
    self.assertEqual(report.checks[0].name, 'layout')
    self.assertIn('shared layout', report.checks[0].detail)
    self.assertEqual(_names(report, ['serve'])[:2], ['safety', 'saver'])

  def test_per_mode_base_verifies_every_mode_of_the_newest_complete(self):
    report = verification.verify(self.paths['per_mode_base'])
    self.assertTrue(report.ok, str(report))
    self.assertEqual(report.export_dir, self.paths['per_mode_base'])
    layout_check = _check(report, 'layout')
    self.assertIn(f'newest complete {self.paths["per_mode_newest"]}',
                  layout_check.detail)
    for mode_dir, tags in (('train', ('train',)), ('eval', ('eval',)),
                           ('serve', ('serve',))):
      self.assertTrue(_check(report, f'{mode_dir}/saved_model').ok)
      self.assertTrue(_check(report, f'{mode_dir}/tf1_load', tags).ok)
    self.assertTrue(_check(report, 'train/train_step', ('train',)).ok)
    self.assertIn('serve/tf2_signature:serving_default', str(report))

  def test_per_mode_fixed_export_with_a_broken_mode(self):
    path = os.path.join(self.create_tempdir().full_path, 'copy')
    shutil.copytree(self.paths['per_mode_fixed'], path)
    faults.truncate_variables_data(os.path.join(path, 'serve'),
                                   keep_fraction=0.3)
    report = verification.verify(path, run_train_step=False)
    self.assertFalse(report.ok)
    self.assertIn('export_dir=', _check(report, 'layout').detail)
    self.assertEqual({c.name.split('/')[0] for c in report.failures},
                     {'serve'})
    self.assertFalse(_check(report, 'serve/variables').ok)
    self.assertTrue(_check(report, 'train/variables').ok)
    self.assertTrue(_check(report, 'eval/tf1_load', ('eval',)).ok)

  def test_per_mode_base_without_a_complete_version_fails_layout(self):
    base = self.create_tempdir().full_path
    version = self.paths['per_mode_newest']
    for mode_dir, number in (('train', int(version)),
                             ('serve', int(version) + 1)):
      shutil.copytree(
          os.path.join(self.paths['per_mode_base'], mode_dir, version),
          os.path.join(base, mode_dir, str(number)))
    report = verification.verify(base)
    layout_check = _check(report, 'layout')
    self.assertFalse(layout_check.ok)
    self.assertIn('no complete version: train missing', layout_check.detail)
    self.assertEqual([c.name for c in report.failures], ['layout'])
    self.assertTrue(_check(report, 'serve/tf1_load', ('serve',)).ok)


def _asserting_model_fn(features, labels, mode, params):
  """The linear model whose PREDICT graph rejects all-zero inputs."""
  spec = models.linear_model_fn(features, labels, mode, params)
  if mode != ModeKeys.PREDICT:
    return spec
  check = tf.debugging.assert_greater(
      tf.reduce_sum(tf.abs(features['x'])), 0.0, message='all-zero input')
  with tf.control_dependencies([check]):
    y = tf.identity(spec.predictions['y'])
  return tf.estimator.EstimatorSpec(
      mode, predictions={'y': y},
      export_outputs={'serving_default':
                      tf.estimator.export.PredictOutput({'y': y})})


class ExportVerifyTest(tf.test.TestCase):
  """export_all_saved_models(verify=True) verifies before publishing."""

  def test_verify_true_publishes_a_good_export(self):
    base = self.create_tempdir().full_path
    est = models.train_custom(self.create_tempdir().full_path)
    path = multimode_export.export_all_saved_models(
        est, base, receiver_fns.receiver_map(), verify=True)
    self.assertTrue(verification.verify(path).ok)
    self.assertEqual(os.listdir(base), [os.path.basename(path)])

  def test_verify_true_per_mode(self):
    base = self.create_tempdir().full_path
    est = models.train_custom(self.create_tempdir().full_path)
    paths = multimode_export.export_saved_models_per_mode(
        est, base, receiver_fns.receiver_map(), verify=True)
    self.assertLen(paths, 3)
    for path in paths.values():
      self.assertTrue(verification.verify(path).ok)

  def test_verify_true_refuses_to_publish_a_failing_export(self):
    base = self.create_tempdir().full_path
    est = tf.estimator.Estimator(
        _asserting_model_fn, model_dir=self.create_tempdir().full_path,
        params={})
    est.train(datasets.input_fn(), steps=2)
    with self.assertRaisesRegex(multimode_export.VerificationError,
                                'failed verification, not published') as cm:
      multimode_export.export_all_saved_models(
          est, base, receiver_fns.receiver_map(), verify=True)
    report = cm.exception.report
    self.assertIsInstance(report, multimode_export.VerifyReport)
    failed = {(c.name, c.tags) for c in report.failures}
    self.assertEqual(failed, {('tf1_signature:serving_default', ('serve',)),
                              ('tf2_signature:serving_default', ('serve',))})
    self.assertIn('all-zero input', str(cm.exception))
    self.assertEqual(os.listdir(base), [])  # Nothing published or left.
    # One SavedModel per mode: the serve one fails, so no mode is published.
    with self.assertRaisesRegex(multimode_export.VerificationError,
                                'not published'):
      multimode_export.export_saved_models_per_mode(
          est, base, receiver_fns.receiver_map(), verify=True)
    self.assertEqual(os.listdir(base), [])


if __name__ == '__main__':
  tf.test.main()
