"""One artifact that trains, serves and is analysed by real TFMA 0.46.

`tools/tfma_check.py` runs in the venv of `tools/make_venv_tf_full.py`
(`$MULTIMODE_EXPORT_TF_FULL_VENV`, default /tmp/venv-tf-full: TFMA needs
the full `tensorflow` package, so it cannot share this venv; `.ci/run`
makes it). It exports one trained canned estimator with TFMA's own
`export_eval_savedmodel` and with this package (free function, mixin, the
per-mode `eval` part, `MultiModeExporter`, and `export_eval_savedmodel`
routed through this package with and without a serving fn), analyses each
with `tfma.run_model_analysis` over a TFRecord with a slice spec, trains
from the train graph and serves from the serve graph, and reports; this
test checks the report. Without the venv the test skips, except in CI
(CI=true), where it fails.
"""
# bazel-data: //tools:sources
# bazel-size: large

import json
import os
import subprocess

import numpy as np
from absl.testing import absltest
from absl.testing import parameterized

import multimode_export
from testing import models

SCRIPT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
        __file__)))), 'tools', 'tfma_check.py')
VENV = (os.environ.get('MULTIMODE_EXPORT_TF_FULL_VENV') or
        '/tmp/venv-tf-full')
OURS = ('free_function', 'mixin', 'per_mode_eval', 'exporter',
        'routed_with_serving', 'routed_without_serving')
EXPECTED_TAGS = {
    'tfma_own': [['eval'], ['serve']],
    'free_function': [['eval'], ['serve'], ['train']],
    'mixin': [['eval'], ['serve'], ['train']],
    'per_mode_eval': [['eval']],
    'exporter': [['eval'], ['serve'], ['train']],
    'routed_with_serving': [['eval'], ['serve']],
    'routed_without_serving': [['eval']],
}
LANGUAGES = ('chinese', 'english', 'other')  # tools/tfma_check.py's data


def _environment(root: str) -> dict:
  """The script's environment: the package under test first on its path.

  Whatever the venv's editable install points to, and without the rest of
  this interpreter's site-packages (its tensorflow-cpu), whether the package
  comes from a checkout, a wheel or Bazel's runfiles.
  """
  os.symlink(os.path.dirname(os.path.abspath(multimode_export.__file__)),
             os.path.join(root, 'multimode_export'))
  return dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', PYTHONPATH=root)


def _venv_python(env: dict) -> str:
  """The TFMA venv's python; SkipTest without it (a failure in CI)."""
  python = os.path.join(VENV, 'bin', 'python')
  reason = f'no TFMA venv at {VENV}'
  if os.path.exists(python):
    probe = subprocess.run(
        [python, '-c', 'import tensorflow_model_analysis'], env=env,
        capture_output=True, text=True, check=False)
    if probe.returncode == 0:
      return python
    reason = f'{python} cannot import TFMA: {probe.stderr.strip()[-500:]}'
  message = (f'{reason}; make it with `python3 tools/make_venv_tf_full.py` '
             '(.ci/run does)')
  if os.environ.get('CI') == 'true':
    raise AssertionError(message)
  raise absltest.SkipTest(message)


class TfmaTest(models.ClassRootMixin, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    root = cls.root
    os.mkdir(os.path.join(root, 'path'))
    env = _environment(os.path.join(root, 'path'))
    python = _venv_python(env)
    report = os.path.join(root, 'report.json')
    result = subprocess.run(
        [python, SCRIPT, '--workdir', os.path.join(root, 'work'), '--report',
         report], env=env, capture_output=True, text=True, timeout=1200,
        check=False)
    if result.returncode != 0:
      raise AssertionError(f'{SCRIPT} failed:\n{result.stderr[-5000:]}')
    with open(report, encoding='utf-8') as f:
      cls.report = json.load(f)

  def test_every_step_ran(self):
    self.assertEqual(self.report['errors'], {})
    self.assertEqual(self.report['versions']['tfma'], '0.46.0')
    self.assertEqual(  # The package under test, not another checkout.
        self.report['versions']['multimode_export_dir'],
        os.path.dirname(os.path.realpath(multimode_export.__file__)))

  def test_tag_sets(self):
    self.assertEqual(self.report['tags'], EXPECTED_TAGS)

  @parameterized.parameters(*OURS)
  def test_metrics_identical_to_tfma_own_export_per_slice(self, name):
    ours = self.report['metrics'][name]
    stock = self.report['metrics']['tfma_own']
    self.assertCountEqual(stock, ['overall'] + [f'language={l}'
                                                   for l in LANGUAGES])
    self.assertEqual(ours, stock)
    counts = [stock[f'language={l}']['post_export_metrics/example_count']
              for l in LANGUAGES]
    self.assertEqual(sum(counts),
                     stock['overall']['post_export_metrics/example_count'])

  @parameterized.parameters('tfma_own', *OURS)
  def test_verify_passes(self, name):
    verified = self.report['verify'][name]
    self.assertTrue(verified['ok'], verified['text'])

  @parameterized.parameters('tfma_own', *OURS)
  def test_inspect_shows_a_tfma_ready_eval_graph_and_its_version(self, name):
    self.assertIn("TFMA-ready eval graph (signature 'eval'), built by TFMA "
                  f"{self.report['versions']['tfma']}",
                  self.report['inspect'][name])

  def test_trains_from_the_train_graph(self):
    losses = self.report['train_losses']
    self.assertLen(losses, 20)
    self.assertTrue(np.all(np.isfinite(losses)), losses)
    self.assertLess(losses[-1], losses[0])

  def test_serves_from_the_serve_graph_as_estimator_predict(self):
    served = self.report['serve']
    self.assertLen(served['exported'], len(served['estimator']))
    np.testing.assert_allclose(served['exported'], served['estimator'],
                               rtol=1e-5, atol=1e-6)

  @parameterized.parameters('tfma_own', 'free_function')
  def test_load_mode_eval_metrics_equal_tfma_overall_metrics(self, name):
    ours = self.report['eval_metrics'][name]
    tfma = self.report['metrics'][name]['overall']
    for metric in ('accuracy', 'average_loss', 'auc', 'label/mean',
                   'prediction/mean'):
      self.assertAlmostEqual(ours[metric], tfma[metric], places=5, msg=metric)


if __name__ == '__main__':
  absltest.main()
