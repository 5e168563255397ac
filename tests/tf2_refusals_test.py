"""`convert_to_tf2` refuses what it cannot carry, before writing anything.

An SDCA LinearClassifier (its example state is a MutableHashTable restored
from the checkpoint), a TFMA-style eval graph (a tensor under two input
keys), a non-empty output, a directory that is no export
(keys the carrier does not restore: `variable_map_test.py`), a writer
that fails half-way: each a specific exception naming the offending item,
and nothing written (no output directory, no staging directory left beside
it). Also the CLI's `convert` command.
"""

import os
import subprocess
import sys

import tensorflow as tf
from absl.testing import absltest

import multimode_export
from multimode_export.tf2 import _convert
from multimode_export.tf2 import _save
from testing import conversion_models
from testing import datasets
from testing import models
from testing import receiver_fns

ModeKeys = tf.estimator.ModeKeys


class RefusalsTest(models.ClassRootMixin, absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.sdca = conversion_models.sdca_linear_classifier(
        os.path.join(cls.root, 'sdca'))
    cls.simple = multimode_export.export_all_saved_models(
        models.train_custom(os.path.join(cls.root, 'simple'), steps=2),
        os.path.join(cls.root, 'simple_export'), receiver_fns.receiver_map())

  def _assert_nothing_written(self, parent: str, output: str):
    self.assertFalse(os.path.exists(output))
    self.assertEqual(os.listdir(parent), [])

  def test_sdca_table_contents_are_refused_by_name(self):
    parent = self.create_tempdir().full_path
    output = os.path.join(parent, 'tf2')
    with self.assertRaises(multimode_export.ConversionError) as raised:
      multimode_export.convert_to_tf2(self.sdca, output)
    self.assertIn('lookup table', str(raised.exception))
    self.assertIn('mutablehashtable', str(raised.exception.what).lower())
    self.assertIsInstance(raised.exception, ValueError)
    self._assert_nothing_written(parent, output)

  def test_tfma_eval_graph_is_refused(self):
    root = self.create_tempdir().full_path
    spec = {'x': tf.io.FixedLenFeature([datasets.FEATURE_DIM], tf.float32),
            'label': tf.io.FixedLenFeature([1], tf.float32)}
    export = multimode_export.export_all_saved_models(
        models.train_custom(os.path.join(root, 'model'), steps=2),
        os.path.join(root, 'export'), {
            ModeKeys.EVAL: receiver_fns.tfma_style_eval_receiver_fn(spec)})
    output = os.path.join(root, 'tf2')
    with self.assertRaisesRegex(multimode_export.ConversionError,
                                'several input keys') as raised:
      multimode_export.convert_to_tf2(export, output)
    self.assertEqual(raised.exception.what, 'eval')
    self.assertFalse(os.path.exists(output))

  def test_output_dir_must_be_absent_or_empty(self):
    parent = self.create_tempdir().full_path
    output = os.path.join(parent, 'tf2')
    os.makedirs(output)
    with open(os.path.join(output, 'keep.txt'), 'w') as f:
      f.write('mine')
    with self.assertRaisesRegex(multimode_export.ExportDirError, 'not empty'):
      multimode_export.convert_to_tf2(self.simple, output)
    self.assertEqual(os.listdir(output), ['keep.txt'])
    self.assertEqual(os.listdir(parent), ['tf2'])

  def test_an_empty_output_dir_is_used(self):
    parent = self.create_tempdir().full_path
    output = os.path.join(parent, 'tf2')
    os.makedirs(output)
    self.assertEqual(multimode_export.convert_to_tf2(self.simple, output),
                     output)
    self.assertTrue(os.path.exists(os.path.join(output, 'saved_model.pb')))
    self.assertEqual(os.listdir(parent), ['tf2'])

  def test_not_an_export(self):
    parent = self.create_tempdir().full_path
    with self.assertRaisesRegex(multimode_export.NotASavedModelError,
                                'holds no export'):
      multimode_export.convert_to_tf2(parent, os.path.join(parent, 'tf2'))
    self.assertEqual(os.listdir(parent), [])

  def test_a_failing_writer_leaves_nothing(self):
    parent = self.create_tempdir().full_path
    output = os.path.join(parent, 'tf2')
    seen = []

    def half_write(request):
      # What a writer that indexes the source's tensors is handed.
      seen.append(sorted(request.plan.checkpoint_entries.values()))
      _save.load_and_save(request)
      raise OSError('disk full')

    with self.assertRaisesRegex(multimode_export.PublishError, 'disk full'):
      _convert.convert_with(self.simple, output, half_write)
    self._assert_nothing_written(parent, output)
    self.assertIn(('w', ''), seen[0])
    self.assertIn(('global_step', ''), seen[0])

  def test_cli_convert(self):
    parent = self.create_tempdir().full_path
    output = os.path.join(parent, 'tf2')
    result = subprocess.run(
        [sys.executable, '-m', 'multimode_export', 'convert', self.simple,
         output], capture_output=True, text=True, check=False,
        stdin=subprocess.DEVNULL)
    self.assertEqual(result.returncode, 0, result.stderr[-2000:])
    self.assertEqual(result.stdout.strip(), output)
    again = subprocess.run(
        [sys.executable, '-m', 'multimode_export', 'convert', self.simple,
         output], capture_output=True, text=True, check=False,
        stdin=subprocess.DEVNULL)
    self.assertEqual(again.returncode, 1)
    self.assertIn('convert: error: ExportDirError', again.stderr)


if __name__ == '__main__':
  absltest.main()
