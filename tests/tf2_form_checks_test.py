"""`verify` and `inspect` on the TF2 form (`convert_to_tf2`'s SavedModel).

The form is one MetaGraphDef tagged `serve` with an object graph whose root
has functions. `verify` scans it first as any export, then loads it without
tags in its loading child and runs every signature and each function once
on synthetic inputs; `inspect` lists the functions.
"""

import contextlib
import io
import os

import tensorflow as tf

import multimode_export
from multimode_export.checks import _inspection as inspection
from multimode_export.checks import _verification as verification
from multimode_export.integration import _cli as cli
from testing import conversion_models
from testing import models

_FUNCTIONS = ('eval_reset', 'eval_result', 'eval_update', 'serve',
              'train_step')


def _check(report, name):
  [check] = [c for c in report.checks if c.name == name]
  return check


class _Module(tf.Module):
  """A hand-built TF2 form: `train_step` fails its assertion when run."""

  def __init__(self, print_in_serve=False):
    super().__init__()
    self.w = tf.Variable(tf.ones([3, 1]))
    self._print = print_in_serve

  @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
  def serve(self, x):
    if self._print:
      tf.print('served', x)
    return {'y': tf.matmul(x, self.w)}

  @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
  def train_step(self, x):
    tf.debugging.assert_positive(tf.reduce_sum(x), message='no positive sum')
    self.w.assign_add(tf.ones([3, 1]))
    return {'loss': tf.reduce_sum(x)}


def _save_module(path, **kwargs):
  module = _Module(**kwargs)
  tf.saved_model.save(module, path,
                      signatures={'serving_default': module.serve})
  return path


class TF2FormChecksTest(models.ClassRootMixin, tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    # A canned DNNClassifier on tf.Example inputs: every function parses
    # its input, inside a function the signature calls.
    case = conversion_models.dnn_classifier_vocabulary(cls.root)
    cls.converted = multimode_export.convert_to_tf2(
        case.export_dir, os.path.join(cls.root, 'tf2'))
    cls.report = verification.verify(cls.converted)

  def test_verify_passes_and_runs_each_function(self):
    self.assertTrue(self.report.ok, str(self.report))
    names = [c.name for c in self.report.checks]
    for function in _FUNCTIONS:
      self.assertIn(f'tf2_function:{function}', names)
    self.assertIn('loaded without tags', _check(self.report, 'tf2_load').detail)
    self.assertRegex(_check(self.report, 'tf2_function:train_step').detail,
                     r'ran on examples: tf.Example\(cat,label,x\)\[2\] -> '
                     r'1 output, loss [0-9.]+$')
    self.assertIn('9 outputs',
                  _check(self.report, 'tf2_function:eval_result').detail)

  def test_verify_scans_before_loading(self):
    names = [c.name for c in self.report.checks]
    self.assertLess(names.index('safety'), names.index('tf1_load'))
    self.assertLess(names.index('tf1_load'), names.index('tf2_load'))

  def test_cli_verify_reports_passed(self):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
      status = cli.main(['multimode-export', 'verify', self.converted])
    self.assertEqual(status, 0, out.getvalue())
    self.assertStartsWith(out.getvalue(), 'PASSED: all ')
    self.assertIn('tf2_function:train_step', out.getvalue())

  def test_inspect_lists_the_functions(self):
    text = inspection.inspect(self.converted)
    self.assertIn('TF2 function train_step(examples: string), ', text)
    self.assertIn('TF2 function eval_result(), ', text)
    self.assertIn("signature 'classification'  tensorflow/serving/classify",
                  text)
    summary = inspection.summarize(self.converted)
    [meta] = summary.meta_graphs
    self.assertEqual(sorted(f.name for f in meta.functions), list(_FUNCTIONS))
    self.assertGreater(
        [f for f in meta.functions if f.name == 'train_step'][0].captures, 0)

  def test_a_failing_function_fails_its_check(self):
    path = _save_module(os.path.join(self.create_tempdir().full_path, 'm'))
    report = verification.verify(path)
    self.assertFalse(report.ok)
    failed = [c for c in report.checks if not c.ok]
    self.assertEqual([c.name for c in failed], ['tf2_function:train_step'],
                     str(report))
    self.assertIn('no positive sum', failed[0].detail)
    self.assertTrue(_check(report, 'tf2_function:serve').ok)
    self.assertTrue(_check(report, 'tf2_signature:serving_default').ok)

  def test_an_unsafe_function_is_not_loaded(self):
    path = _save_module(os.path.join(self.create_tempdir().full_path, 'm'),
                        print_in_serve=True)
    report = verification.verify(path)
    self.assertFalse(report.ok)
    safety = [c for c in report.checks if c.name == 'safety' and c.tags]
    self.assertFalse(safety[0].ok)
    self.assertIn('PrintV2', safety[0].detail)
    self.assertTrue(_check(report, 'tf2_load').skipped)
    self.assertNotIn('tf2_function:train_step',
                     [c.name for c in report.checks])


if __name__ == '__main__':
  tf.test.main()
