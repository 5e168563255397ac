"""verify/inspect on exports you did not make: looked at, refused, never run.

Every crafted export (tests/testing/crafted.py) would act outside its
directory if any of it ran; the canary files and the skipped load checks
show that nothing did. The same scan passes on real exports: ours, stock's
and TF2's, with their savers, assets and lookup tables.
"""

import os

import tensorflow as tf
from absl.testing import parameterized

import multimode_export
from multimode_export.checks import _safety as safety
from multimode_export.saved_model import _format
from testing import assertions
from testing import crafted
from testing import models
from testing import receiver_fns
from testing import running

ModeKeys = tf.estimator.ModeKeys


def _check(report, name, tags):
  [check] = [c for c in report.checks if c.name == name and c.tags == tags]
  return check


class CraftedExportsTest(parameterized.TestCase, tf.test.TestCase):
  """Each crafted export gets a failing verify naming the problem."""

  def setUp(self):
    super().setUp()
    self.root = self.create_tempdir().full_path
    self.export_dir = os.path.join(self.root, 'export')
    self.canary = os.path.join(self.root, 'canary')
    self.secret = os.path.join(self.root, 'secret.txt')
    with open(self.secret, 'w') as f:
      f.write('not yours')

  def assert_refused(self, report, tags, *fragments):
    """`safety` of `tags` failed naming `fragments`; nothing was loaded."""
    self.assertFalse(report.ok)
    safety = _check(report, 'safety', tags)
    self.assertFalse(safety.ok, str(report))
    for fragment in fragments:
      self.assertIn(fragment, safety.detail)
    for check in report.checks:
      if check.name in ('tf1_load', 'tf2_load'):
        self.assertTrue(check.skipped, str(report))
        self.assertIn('not run: the safety check', check.detail)
    self.assertFalse(os.path.exists(self.canary))

  def test_write_file_in_a_signature(self):
    crafted.write_file_in_signature(self.export_dir, self.canary)
    report = multimode_export.verify(self.export_dir)
    self.assert_refused(report, ('serve',),
                        "WriteFile (reads or writes files) at node "
                        "'write_canary'", '--allow_ops=WriteFile')
    # The canary is real: allowing the op runs it (twice, TF1 and TF2).
    report = multimode_export.verify(self.export_dir, allow_ops=['WriteFile'])
    self.assertTrue(report.ok, str(report))
    self.assertIn('allowed by allow_ops: WriteFile',
                  _check(report, 'safety', ('serve',)).detail)
    self.assertTrue(os.path.exists(self.canary))

  def test_write_file_in_the_main_op(self):
    crafted.write_file_everywhere(self.export_dir, self.canary)
    self.assert_refused(multimode_export.verify(self.export_dir), ('serve',),
                        "node 'signature_write'", "node 'main_op_write'")

  def test_read_file_outside_the_export(self):
    crafted.read_file_outside(self.export_dir, self.secret)
    self.assert_refused(
        multimode_export.verify(self.export_dir), ('serve',),
        "ReadFile (reads a file that is not an asset of the export) at node "
        "'read_outside'", '--allow_ops=ReadFile')

  def test_python_callback(self):
    graphs = []  # keeps the callback registered
    crafted.py_func_canary(self.export_dir, self.canary, graphs)
    self.assert_refused(multimode_export.verify(self.export_dir), ('serve',),
                        "PyFunc (calls back into Python) at node "
                        "'python_callback'", '--allow_ops=PyFunc')
    # The callback is registered in this process only. Allowed, it is run
    # where verify runs graphs: in its child process, which has no such
    # callback, so the signature fails there and nothing is written.
    report = multimode_export.verify(self.export_dir, allow_ops=['PyFunc'])
    signature = _check(report, 'tf1_signature:serving_default', ('serve',))
    self.assertFalse(signature.ok)
    self.assertIn('callback', signature.detail)
    self.assertFalse(os.path.exists(self.canary))

  def test_unknown_op(self):
    crafted.unknown_op(self.export_dir, 'MyCustomKernel')
    self.assert_refused(
        multimode_export.verify(self.export_dir), ('serve',),
        "MyCustomKernel (is not an op of the installed TensorFlow: custom",
        '--allow_ops=MyCustomKernel')

  def test_signature_that_runs_the_saver(self):
    crafted.signature_runs_the_saver(self.export_dir)
    cwd = os.getcwd()
    os.chdir(self.create_tempdir().full_path)
    self.addCleanup(os.chdir, cwd)
    self.assert_refused(
        multimode_export.verify(self.export_dir), ('serve',),
        "SaveV2 (reads or writes a checkpoint outside the saver) at node "
        "'save/SaveV2'", '--allow_ops=MergeV2Checkpoints,SaveV2')
    self.assertEqual(os.listdir('.'), [])

  def test_saver_reading_another_checkpoint(self):
    crafted.saver_reads(self.export_dir, self.secret)
    self.assert_refused(multimode_export.verify(self.export_dir), ('serve',),
                        "RestoreV2 (reads a path other than the saver's "
                        "filename tensor")

  @parameterized.named_parameters(
      ('dot_dot', '../../secret.txt', "climbs out of assets/ with '..'"),
      ('absolute', None, 'the file name is absolute'))
  def test_asset_path_outside_assets(self, filename, message):
    filename = filename or self.secret
    crafted.asset_named(self.export_dir, filename, self.secret)
    self.assert_refused(multimode_export.verify(self.export_dir), ('serve',),
                        f'asset {filename!r}', message)
    self.assertIn(message, multimode_export.inspect(self.export_dir))

  def test_asset_linking_out_of_the_export(self):
    crafted.asset_named(self.export_dir, 'secret.txt', self.secret)
    asset = os.path.join(self.export_dir, 'assets', 'secret.txt')
    os.remove(asset)
    os.symlink(self.secret, asset)
    self.assert_refused(multimode_export.verify(self.export_dir), ('serve',),
                        "asset 'secret.txt'",
                        f'a link to {os.path.realpath(self.secret)}, outside '
                        'the export')

  def test_asset_read_inside_the_export_runs(self):
    crafted.asset_named(self.export_dir, 'secret.txt', self.secret)
    report = multimode_export.verify(self.export_dir)
    self.assertTrue(report.ok, str(report))

  def test_variables_linking_out_of_the_export(self):
    crafted.write_file_in_signature(self.export_dir, self.canary)
    data = os.path.join(self.export_dir, 'variables',
                        'variables.data-00000-of-00001')
    os.rename(data, self.secret)
    os.symlink(self.secret, data)
    report = multimode_export.verify(self.export_dir,
                                     allow_ops=['WriteFile'])
    self.assert_refused(report, (), 'variables/variables.data-00000-of-00001',
                        'outside the export')
    self.assertTrue(_check(report, 'variables', ()).skipped)

  def test_index_claiming_a_terabyte(self):
    crafted.index_claiming(self.export_dir, [64] * 6 + [4])
    report = multimode_export.verify(self.export_dir)
    self.assert_refused(
        report, (), "entry 'v'",
        'claims float32[64,64,64,64,64,64,4] (1099511627776 bytes) but stores '
        '8 bytes')
    self.assertTrue(_check(report, 'variables', ()).skipped)
    self.assertIn('1099511627776 bytes',
                  multimode_export.inspect(self.export_dir))

  @parameterized.named_parameters(('float', tf.float32, 4398046511104),
                                  ('string', tf.string, 8796093022208))
  def test_input_of_two_to_the_forty_elements(self, dtype, size):
    crafted.huge_input(self.export_dir, dtype, 2**40)
    report = multimode_export.verify(self.export_dir)
    self.assertFalse(report.ok)
    inputs = _check(report, 'inputs:serving_default', ('serve',))
    self.assertIn(f"input 'x' declares {dtype.name}[1099511627776], "
                  f'1099511627776 elements ({size} bytes): over the', 
                  inputs.detail)
    # Nothing else is wrong: the graph loads, the signature is not run.
    self.assertTrue(_check(report, 'tf1_load', ('serve',)).ok)
    self.assertNotIn('tf1_signature:serving_default',
                     [c.name for c in report.checks])

  def test_allow_ops_must_be_names(self):
    crafted.write_file_in_signature(self.export_dir, self.canary)
    with self.assertRaisesRegex(TypeError, "the string 'WriteFile'"):
      multimode_export.verify(self.export_dir, allow_ops='WriteFile')
    with self.assertRaisesRegex(ValueError, "'Write File' is not an op type"):
      multimode_export.verify(self.export_dir, allow_ops=['Write File'])
    self.assertFalse(os.path.exists(self.canary))


class InspectRunsNothingTest(tf.test.TestCase):

  def test_canary_exports_are_shown_not_run(self):
    root = self.create_tempdir().full_path
    canary = os.path.join(root, 'canary')
    graphs = []  # keeps the callback registered
    crafted.write_file_everywhere(os.path.join(root, 'writes'), canary)
    crafted.py_func_canary(os.path.join(root, 'calls'), canary, graphs)
    text = multimode_export.inspect(os.path.join(root, 'writes'))
    self.assertIn("safety: WriteFile at node 'signature_write': reads or "
                  'writes files', text)
    self.assertIn("safety: WriteFile at node 'main_op_write'", text)
    text = multimode_export.inspect(os.path.join(root, 'calls'))
    self.assertIn("safety: PyFunc at node 'python_callback'", text)
    self.assertFalse(os.path.exists(canary))


def _tf2_module(vocabulary: str, secret: str = '') -> tf.Module:
  """A TF2 model with a vocabulary table and an asset read.

  Given `secret`, it also has a function reading the path a variable holds.
  """
  module = tf.Module()
  module.table = tf.lookup.StaticHashTable(
      tf.lookup.TextFileInitializer(
          vocabulary, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE,
          tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER), -1)
  module.asset = tf.saved_model.Asset(vocabulary)
  module.lookup = tf.function(
      lambda x: {'ids': module.table.lookup(x),
                 'text': tf.io.read_file(module.asset.asset_path)},
      input_signature=[tf.TensorSpec([None], tf.string)])
  if secret:
    module.path = tf.Variable(secret)
    module.steal = tf.function(lambda: {'text': tf.io.read_file(module.path)},
                               input_signature=[])
  return module


class OurExportsPassTest(models.ClassRootMixin, parameterized.TestCase,
                         tf.test.TestCase):
  """Real exports pass with no allow_ops; the scan knows what they are."""

  def test_every_layout_and_estimator_kind(self):
    exports = dict(running.export_every_layout(
        models.train_custom(os.path.join(self.root, 'custom')),
        os.path.join(self.root, 'custom_exports')))
    canned = models.train_canned_dnn(os.path.join(self.root, 'dnn'))
    exports['canned'] = multimode_export.export_all_saved_models(
        canned, os.path.join(self.root, 'canned'),
        receiver_fns.canned_receiver_map())
    exports['stock_canned'] = assertions.stock_canned_export(
        canned, os.path.join(self.root, 'stock_canned'))
    for name, path in exports.items():
      if not os.path.isdir(path):
        continue  # 'per_mode_newest' is a version number
      with self.subTest(name):
        assertions.assert_passes_safety_scan(path)

  def test_tf2_saved_model_with_tables_and_assets(self):
    root = self.create_tempdir().full_path
    vocabulary = os.path.join(root, 'vocab.txt')
    with open(vocabulary, 'w') as f:
      f.write('a\nb\n')
    module = _tf2_module(vocabulary)
    path = os.path.join(root, 'tf2')
    tf.saved_model.save(module, path, signatures={'lookup': module.lookup})
    report = multimode_export.verify(path)
    self.assertTrue(report.ok, str(report))
    # The same ReadFile on a variable's value (a checkpoint string) is not an
    # asset read.
    module = _tf2_module(vocabulary, secret=vocabulary)
    tf.saved_model.save(module, path + '_steal',
                        signatures={'steal': module.steal})
    meta_graph_def, = _format.read_saved_model(path + '_steal').meta_graphs
    scan = safety.scan_meta_graph(meta_graph_def, path + '_steal')
    self.assertIn('ReadFile (reads a file that is not an asset of the export)',
                  scan.describe())

  def test_model_with_print_publishes_and_verify_names_the_flag(self):
    def model_fn(features, labels, mode, params):
      spec = models.linear_model_fn(features, labels, mode, params)
      if mode != ModeKeys.PREDICT:
        return spec
      printed = tf.print('predicting', tf.shape(features['x']))
      with tf.control_dependencies([printed]):
        predictions = {k: tf.identity(v) for k, v in spec.predictions.items()}
      return spec._replace(predictions=predictions, export_outputs={
          'serving_default': tf.estimator.export.PredictOutput(predictions)})

    estimator = models.train_custom(os.path.join(self.root, 'print'))
    printing = tf.estimator.Estimator(model_fn, model_dir=estimator.model_dir,
                                      params=estimator.params)
    path = multimode_export.export_all_saved_models(
        printing, os.path.join(self.root, 'print_export'),
        receiver_fns.receiver_map(), verify=True)
    report = multimode_export.verify(path)
    self.assertIn('--allow_ops=PrintV2',
                  _check(report, 'safety', ('serve',)).detail)
    self.assertTrue(multimode_export.verify(path, allow_ops=['PrintV2']).ok)


if __name__ == '__main__':
  tf.test.main()
