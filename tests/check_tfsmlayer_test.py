"""The serve part of a per-mode export under Keras 3's TFSMLayer, newest TF.

Also: importing the package under the newest TF, or without TF, fails with
one clear sentence.

The export is made here (TF 2.15, the last with tf.estimator); the loading
runs `tools/check_tfsmlayer.py` in a separate venv with the newest
tensorflow-cpu and Keras 3 (`$MULTIMODE_EXPORT_TF_NEW_VENV`, default
/tmp/venv-tf-new). The venv is created if missing; when it cannot be (no
package index reachable), the tests skip and say why.
"""
# bazel-data: //tools:sources

import json
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf
from absl.testing import absltest

from multimode_export import _export as export
from multimode_export import _per_mode as per_mode
from testing import assertions
from testing import models
from testing import receiver_fns

ModeKeys = tf.estimator.ModeKeys
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO_ROOT, 'tools', 'check_tfsmlayer.py')
VENV = os.environ.get('MULTIMODE_EXPORT_TF_NEW_VENV', '/tmp/venv-tf-new')
_ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')


def _venv_python() -> str:
  """The venv's python, creating the venv if needed; raises SkipTest."""
  python = os.path.join(VENV, 'bin', 'python')
  if os.path.exists(python) and subprocess.run(
      [python, '-c', 'import keras, tensorflow'], env=_ENV,
      capture_output=True, check=False).returncode == 0:
    return python
  result = subprocess.run(
      [sys.executable, SCRIPT, '--create_venv', VENV], capture_output=True,
      text=True, timeout=1800, check=False)
  if result.returncode != 0:
    raise absltest.SkipTest(
        f'cannot create {VENV} with the newest tensorflow-cpu (offline?): '
        f'{result.stderr.strip()[-500:]}')
  return python


def _run_script(python: str, saved_model: str, inputs):
  return subprocess.run(
      [python, SCRIPT, '--saved_model', saved_model, '--inputs',
       json.dumps(inputs)], capture_output=True, text=True, timeout=600,
      env=_ENV, check=False)


class CheckTfsmLayerTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.python = _venv_python()

  def test_serve_part_runs_in_tfsmlayer_under_newest_tf(self):
    root = self.create_tempdir().full_path
    est = models.train_custom(os.path.join(root, 'model'), steps=3)
    paths = per_mode.export_saved_models_per_mode(
        est, os.path.join(root, 'export'), receiver_fns.receiver_map())
    x = [[1.0, 2.0, 3.0], [0.5, 0.0, -1.0]]
    result = _run_script(self.python, paths[ModeKeys.PREDICT], x)
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    report = json.loads(result.stdout.strip().splitlines()[-1])
    self.assertTrue(report['keras'].startswith('3.'), report)
    major, minor = (int(p) for p in report['tensorflow'].split('.')[:2])
    self.assertGreater((major, minor), (2, 15), report)
    values = assertions.checkpoint_values(
        tf.train.latest_checkpoint(est.model_dir))
    expected = np.array(x, np.float32) @ values['w'] + values['b']
    np.testing.assert_allclose(report['outputs']['y'], expected, rtol=1e-5)
    np.testing.assert_allclose(report['model_outputs']['y'], expected,
                               rtol=1e-5)

  def test_shared_export_is_what_tfsmlayer_cannot_load(self):
    root = self.create_tempdir().full_path
    est = models.train_custom(os.path.join(root, 'model'), steps=2)
    path = export.export_all_saved_models(est, os.path.join(root, 'export'),
                                          receiver_fns.receiver_map())
    result = _run_script(self.python, path, [[1.0, 2.0, 3.0]])
    self.assertNotEqual(result.returncode, 0)
    self.assertIn('MetaGraph', result.stderr)

  def test_package_import_fails_in_one_sentence_under_newest_tf(self):
    result = subprocess.run(
        [self.python, '-c', 'import multimode_export'], capture_output=True,
        text=True, timeout=300, env=dict(_ENV, PYTHONPATH=REPO_ROOT),
        cwd=REPO_ROOT, check=False)
    self.assertNotEqual(result.returncode, 0)
    last = result.stderr.strip().splitlines()[-1]
    self.assertRegex(last, r'^ImportError: multimode_export needs TensorFlow '
                     r'2\.13-2\.15, found 2\.(1[6-9]|[2-9]\d)')
    self.assertNotIn('tensorflow_estimator', result.stderr)


class ImportWithoutTensorFlowTest(absltest.TestCase):

  def test_import_fails_in_one_sentence_without_tensorflow(self):
    # `sys.modules[name] = None` makes `import name` raise ImportError, as
    # on a machine where TensorFlow is not installed.
    code = ("import sys; sys.modules['tensorflow'] = None; "
            'import multimode_export')
    result = subprocess.run(
        [sys.executable, '-c', code], capture_output=True, text=True,
        timeout=300, env=dict(_ENV, PYTHONPATH=REPO_ROOT), cwd=REPO_ROOT,
        check=False)
    self.assertNotEqual(result.returncode, 0)
    lines = result.stderr.strip().splitlines()
    self.assertRegex(lines[-1], r"^ImportError: multimode_export needs "
                     r"TensorFlow 2\.13-2\.15 .*pip install")
    self.assertNotIn('During handling', result.stderr)
    self.assertLess(len(lines), 12, result.stderr)


if __name__ == '__main__':
  absltest.main()
