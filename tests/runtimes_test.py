"""The raw predict signature in other runtimes: TFLite and tf2onnx + onnxruntime.

Canned estimators with a numeric column and a vocabulary column (parsed as a
fixed-length string, so its raw input is a dense string tensor) are exported
once with `raw_signatures=True`; their `raw:predict` signature is converted
and run, and the outputs compared with `estimator.predict` on the same rows.
TFLite also runs under the newest TensorFlow, in the venv `.ci/run` makes
(`$MULTIMODE_EXPORT_TF_NEW_VENV`, default /tmp/venv-tf-new) with
`tests/tflite_newest_tf.py`. Measured results are in docs/loading.md.
"""

# bazel-data: :tflite_newest_tf

import json
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf
from absl.testing import absltest

import multimode_export
from testing import datasets
from testing import models

ModeKeys = tf.estimator.ModeKeys
VENV = os.environ.get('MULTIMODE_EXPORT_TF_NEW_VENV', '/tmp/venv-tf-new')
_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                       'tflite_newest_tf.py')
_ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
# make_column_data's `cat` cycles a, b, c, d ('d' is out of vocabulary).
_IN_VOCABULARY = [0, 1, 2, 4, 5, 6]


def _needs(available: bool, what: str):
  """Skips outside CI when `what` is missing; in CI its absence fails."""
  if available:
    return
  if os.environ.get('CI') == 'true':
    raise AssertionError(f'{what} is missing: .ci/run installs it')
  raise absltest.SkipTest(f'{what} is not installed')


class _Export:
  """One trained canned estimator, exported with raw signatures."""

  def __init__(self, root: str, **kwargs):
    self.estimator, spec, features = models.train_canned_with_vocabulary(
        os.path.join(root, 'model'), **kwargs)
    self.rows = {k: v[:8] for k, v in features.items()}
    self.path = multimode_export.export_all_saved_models(
        self.estimator, os.path.join(root, 'export'), {
            ModeKeys.PREDICT:
                tf.estimator.export.build_parsing_serving_input_receiver_fn(
                    spec)}, raw_signatures=True)
    self.expected = list(self.estimator.predict(
        lambda: tf.data.Dataset.from_tensor_slices(self.rows).batch(8)))

  def want(self, key: str, rows=slice(None)) -> np.ndarray:
    return np.array([p[key] for p in self.expected])[rows]

  def inputs(self, rows=slice(None)):
    out = {'x': self.rows['x'][rows]}
    if 'cat' in self.rows:
      out['cat'] = self.rows['cat'][rows].astype(bytes)
    return out


def _tflite(path: str, key: str, select: bool):
  converter = tf.lite.TFLiteConverter.from_saved_model(
      path, signature_keys=[key], tags={'serve'})
  if select:
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS,
                                           tf.lite.OpsSet.SELECT_TF_OPS]
  return tf.lite.Interpreter(
      model_content=converter.convert()).get_signature_runner(key)


class TFLiteTest(models.ClassRootMixin, tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.classifier = _Export(os.path.join(cls.root, 'classifier'))
    cls.regressor = _Export(os.path.join(cls.root, 'regressor'),
                            regressor=True)
    cls.numeric = _Export(os.path.join(cls.root, 'numeric'), regressor=True,
                          vocabulary=False)

  def test_classifier_needs_select_ops_for_its_string_classes(self):
    with self.assertRaisesRegex(Exception, 'AsString'):
      _tflite(self.classifier.path, 'raw:predict', select=False)
    out = _tflite(self.classifier.path, 'raw:predict', select=True)(
        **self.classifier.inputs())
    self.assertAllClose(out['probabilities'],
                        self.classifier.want('probabilities'))
    self.assertAllEqual(out['class_ids'], self.classifier.want('class_ids'))

  def test_regressors_convert_with_builtin_ops_alone(self):
    # The vocabulary lookup becomes TFLite's builtin hashtable ops.
    for export in (self.regressor, self.numeric):
      out = _tflite(export.path, 'raw:predict', select=False)(**export.inputs())
      self.assertAllClose(out['predictions'], export.want('predictions'))

  def test_example_signature_needs_select_ops_for_the_parser(self):
    with self.assertRaisesRegex(Exception, 'ParseExampleV2'):
      _tflite(self.regressor.path, 'predict', select=False)
    examples = datasets.serialize_examples(self.regressor.rows)
    out = _tflite(self.regressor.path, 'predict', select=True)(
        examples=np.array(examples))
    self.assertAllClose(out['predictions'], self.regressor.want('predictions'))

  def test_newest_tensorflow_converts_with_builtin_ops_alone(self):
    _needs(os.path.exists(os.path.join(VENV, 'bin', 'python')),
           f'the newest-TF venv {VENV}')
    for export in (self.regressor, self.numeric):
      inputs = os.path.join(self.create_tempdir().full_path, 'inputs.npz')
      np.savez(inputs, **export.inputs())
      result = subprocess.run(
          [os.path.join(VENV, 'bin', 'python'), _SCRIPT, export.path,
           'raw:predict', inputs], capture_output=True, text=True, env=_ENV,
          check=False)
      self.assertEqual(result.returncode, 0, result.stderr[-2000:])
      out = json.loads(result.stdout.strip().splitlines()[-1])
      self.assertNotEqual(out['tensorflow'], tf.__version__)
      self.assertAllClose(out['outputs']['predictions'],
                          export.want('predictions'))


def _onnx_session(onnx_path: str, contrib: bool):
  import onnxruntime  # pylint: disable=g-import-not-at-top
  options = onnxruntime.SessionOptions()
  if contrib:
    import onnxruntime_extensions  # pylint: disable=g-import-not-at-top
    options.register_custom_ops_library(
        onnxruntime_extensions.get_library_path())
  return onnxruntime.InferenceSession(onnx_path, options)


class OnnxTest(models.ClassRootMixin, tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.regressor = _Export(os.path.join(cls.root, 'regressor'),
                            regressor=True)
    cls.numeric = _Export(os.path.join(cls.root, 'numeric'), regressor=True,
                          vocabulary=False)

  def setUp(self):
    super().setUp()
    try:
      import onnxruntime_extensions  # pylint: disable=g-import-not-at-top,unused-import
      import tf2onnx  # pylint: disable=g-import-not-at-top,unused-import
      available = True
    except ImportError:
      available = False
    _needs(available, 'tf2onnx / onnxruntime / onnxruntime-extensions')

  def _convert(self, saved_model: str, *args: str) -> str:
    onnx_path = os.path.join(self.create_tempdir().full_path, 'model.onnx')
    result = subprocess.run(
        [sys.executable, '-m', 'tf2onnx.convert', '--saved-model', saved_model,
         '--output', onnx_path, '--opset', '17', *args],
        capture_output=True, text=True, env=_ENV, check=False)
    self.assertEqual(result.returncode, 0, result.stderr[-2000:])
    return onnx_path

  def test_numeric_raw_signature_converts_from_the_export(self):
    onnx_path = self._convert(self.numeric.path, '--tag', 'serve',
                              '--signature_def', 'raw:predict')
    [out] = _onnx_session(onnx_path, contrib=False).run(
        ['predictions'], self.numeric.inputs())
    self.assertAllClose(out, self.numeric.want('predictions'))

  def test_vocabulary_raw_signature_through_a_tf2_resave(self):
    # tf2onnx cannot freeze a TF1 graph's lookup table from the export
    # itself (its table initializer is not in the pruned signature), and it
    # compares strings only with the onnxruntime-extensions op.
    resaved = os.path.join(self.create_tempdir().full_path, 'resaved')
    loaded = tf.saved_model.load(self.regressor.path, tags=['serve'])
    tf.saved_model.save(loaded, resaved, signatures={
        'serving_default': loaded.signatures['raw:predict']})
    onnx_path = self._convert(resaved, '--extra_opset', 'ai.onnx.contrib:1')
    inputs = self.regressor.inputs(_IN_VOCABULARY)
    inputs['cat'] = inputs['cat'].astype(str).astype(object)
    [out] = _onnx_session(onnx_path, contrib=True).run(['predictions'], inputs)
    self.assertAllClose(out, self.regressor.want('predictions',
                                                 _IN_VOCABULARY))


if __name__ == '__main__':
  absltest.main()
