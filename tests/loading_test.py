"""TF2 loading helpers: train steps lower the loss, metrics and serving agree."""

import ast
import os

import numpy as np
import tensorflow as tf

import multimode_export
from multimode_export import loading
from testing import assertions
from testing import datasets
from testing import models
from testing import receiver_fns
from testing import running
class LoadingTest(models.ClassRootMixin, tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.export = multimode_export.export_all_saved_models(
        models.train_custom(os.path.join(cls.root, 'custom')),
        os.path.join(cls.root, 'export'), receiver_fns.receiver_map())

  def test_train_step_loss_falls(self):
    x, y = datasets.make_data()
    before = assertions.saved_variables(self.export)
    step = loading.load_mode(self.export, tf.estimator.ModeKeys.TRAIN)
    self.assertIsInstance(step, loading.TrainStep)
    self.assertEqual(step.input_keys, ('label', 'x'))
    losses = [float(step(x=x, label=y)) for _ in range(20)]
    self.assertLess(losses[-1], 0.5 * losses[0], losses)
    weights = {v.name: v.numpy() for v in step.variables}
    self.assertNotAllClose(weights['w:0'], before['w'])
    self.assertEqual(weights['global_step:0'], before['global_step'] + 20)
    # The first step starts from the exported values: its loss is the one
    # the TF1 train graph computes.
    self.assertAllClose(losses[0], running.train_steps(self.export, steps=1)[0],
                        rtol=1e-5)
    # Nothing is written back to the export.
    self.assertAllClose(assertions.saved_variables(self.export), before)

  def test_canned_estimator_train_step_loss_falls(self):
    export = assertions.stock_canned_export(
        models.train_canned_dnn(self.create_tempdir().full_path),
        self.create_tempdir().full_path)
    x, y = datasets.make_data()
    labels = np.clip((y * 2).astype(np.int64), 0, datasets.N_CLASSES - 1)
    step = loading.TrainStep(export)
    losses = [float(step(x=x, label=labels)) for _ in range(30)]
    self.assertLess(losses[-1], losses[0], losses)

  def test_eval_metrics_match_numpy(self):
    x, y = datasets.make_data()
    serving = loading.load_mode(self.export, tf.estimator.ModeKeys.PREDICT)
    predictions = serving['serving_default'](x=tf.constant(x))['y'].numpy()
    metrics = loading.load_mode(self.export, tf.estimator.ModeKeys.EVAL)
    self.assertEqual(metrics.metric_names, ('mae',))
    self.assertAllClose(metrics.result(), {'mae': 0.0})
    metrics.update(x=x[:40], label=y[:40])
    metrics.update(x=x[40:], label=y[40:])
    self.assertAllClose(metrics.result()['mae'],
                        np.mean(np.abs(predictions - y)), rtol=1e-5)
    metrics.reset()
    self.assertAllClose(metrics.result(), {'mae': 0.0})
    metrics.update(x=x[:8], label=y[:8])
    self.assertAllClose(metrics.result()['mae'],
                        np.mean(np.abs(predictions[:8] - y[:8])), rtol=1e-5)

  def test_serving_matches_tf1(self):
    x, _ = datasets.make_data(n=4)
    serving = loading.ServingSignatures(self.export)
    graph, session, meta = running.tf1_load(self.export, ['serve'])
    self.assertCountEqual(serving, meta.signature_def)
    with graph.as_default(), session:
      expected = running.run_signature(session, meta, 'serving_default',
                                      {'x': x})
    self.assertAllClose(serving['serving_default'](x=tf.constant(x))['y'],
                        expected['y'])

  def test_errors_name_the_problem(self):
    with self.assertRaisesRegex(ValueError, r"PREDICT is 'infer'.*'predict'"):
      loading.load_mode(self.export, 'predict')
    with self.assertRaisesRegex(
        ValueError, r"no MetaGraphDef tagged \['gpu', 'serve'\]; it has "
        r"\[\['train'\], \['eval'\], \['serve'\]\]"):
      loading.ServingSignatures(self.export, tags=['serve', 'gpu'])
    with self.assertRaisesRegex(ValueError, "not 'loss'"):
      loading.TrainStep(self.export, tags='serve',
                        signature_key='serving_default')
    with self.assertRaisesRegex(ValueError, 'has no saved_model.pb'):
      loading.TrainStep(self.create_tempdir().full_path)
    step = loading.TrainStep(self.export)
    with self.assertRaisesRegex(TypeError,
                                r"expected inputs \['label', 'x'\], got \['x'\]"):
      step(x=np.zeros([1, 3], np.float32))

  def test_a_missing_signature_lists_the_available_ones(self):
    # A canned estimator exported with a raw serving receiver: TF builds only
    # 'predict', no 'serving_default'.
    export = multimode_export.export_all_saved_models(
        models.train_canned_dnn(self.create_tempdir().full_path),
        self.create_tempdir().full_path,
        {tf.estimator.ModeKeys.PREDICT:
             tf.estimator.export.build_raw_serving_input_receiver_fn(
                 {'x': tf.zeros([1, datasets.FEATURE_DIM])})})
    serving = loading.load_mode(export, tf.estimator.ModeKeys.PREDICT)
    with self.assertRaisesRegex(
        KeyError, r"'serving_default'.*\['serve'\] has signatures \['predict'\]"):
      serving['serving_default']  # pylint: disable=pointless-statement
    self.assertIn('predict', serving)
    self.assertNotIn('serving_default', serving)

  def test_no_train_op_in_eval_graph(self):
    with self.assertRaisesRegex(ValueError, 'has no train op'):
      loading.TrainStep(self.export, tags=['eval'], signature_key='eval')

  def test_tflite_converts_the_serve_graph(self):
    converter = tf.lite.TFLiteConverter.from_saved_model(
        self.export, signature_keys=['serving_default'], tags={'serve'})
    interpreter = tf.lite.Interpreter(model_content=converter.convert())
    runner = interpreter.get_signature_runner('serving_default')
    x, _ = datasets.make_data(n=1)
    graph, session, meta = running.tf1_load(self.export, ['serve'])
    with graph.as_default(), session:
      expected = running.run_signature(session, meta, 'serving_default',
                                      {'x': x})
    self.assertAllClose(runner(x=x)['y'], expected['y'], rtol=1e-5)

  def test_module_is_standalone(self):
    # docs/loading.md tells TF 2.16+ users to copy this file: it must not
    # import the rest of the package (which needs tf.estimator).
    with open(loading.__file__, encoding='utf-8') as f:
      tree = ast.parse(f.read())
    imported = set()
    for node in ast.walk(tree):
      if isinstance(node, ast.Import):
        imported.update(a.name for a in node.names)
      elif isinstance(node, ast.ImportFrom):
        imported.add(node.module)
    self.assertEqual(
        {m for m in imported if m.startswith('multimode_export') or
         'estimator' in m}, set())

  def test_standalone_copy_of_the_assets_collection_agrees(self):
    # Standalone, the module spells the collection out itself.
    from multimode_export.saved_model import _format  # pylint: disable=g-import-not-at-top
    self.assertEqual(loading._ASSETS_COLLECTION, _format.ASSETS_COLLECTION)  # pylint: disable=protected-access


if __name__ == '__main__':
  tf.test.main()
