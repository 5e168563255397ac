"""End-to-end tests of `export_all_saved_models` against the stock export.

A custom Estimator and a mixin Estimator are trained for a few steps; each
mode subset is exported, every tag set is loaded in a fresh graph (TF1 loader
and `tf.saved_model.load(tags=...)`) and run, and the export is compared with
the stock `experimental_export_all_saved_models` on the same checkpoint.
"""

import os
import pathlib
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
from testing import running
ModeKeys = tf.estimator.ModeKeys
ALL = (ModeKeys.TRAIN, ModeKeys.EVAL, ModeKeys.PREDICT)
KINDS = ('function', 'mixin')


def _export(estimator, kind: str, base, modes=ALL, **kwargs) -> str:
  receivers = receiver_fns.receiver_map(modes)
  if kind == 'mixin':
    return estimator.export_all_saved_models(base, receivers, **kwargs)
  return multimode_export.export_all_saved_models(estimator, base, receivers,
                                                  **kwargs)


def _raw_feeds():
  x, y = datasets.make_data()
  return {'x': x, 'label': y}


class ModeMatrixTest(tf.test.TestCase, parameterized.TestCase):
  """Every mode subset, through the free function and through the mixin."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls._dir = tempfile.mkdtemp(prefix='export_test_')
    cls.estimators = {
        'function': models.train_custom(
            os.path.join(cls._dir, 'function'), extra_signature=True),
        'mixin': models.train_custom(
            os.path.join(cls._dir, 'mixin'), extra_signature=True,
            estimator_cls=models.MixinEstimator),
    }

  @parameterized.named_parameters(
      (f'{kind}_{name}', kind, modes) for kind in KINDS
      for name, modes in receiver_fns.MODE_SETS)
  def test_export_loads_runs_and_matches_stock(self, kind, modes):
    estimator = self.estimators[kind]
    base = self.create_tempdir().full_path
    path = _export(estimator, kind, os.path.join(base, 'ours'), modes)

    self.assertIsInstance(path, str)
    self.assertEqual(os.path.dirname(path), os.path.join(base, 'ours'))
    self.assertTrue(os.path.basename(path).isdigit(), path)
    stock = assertions.stock_export(estimator, os.path.join(base, 'stock'), modes)
    assertions.assert_same_as_stock(self, path, stock)

    # variables/ holds the checkpoint's values, byte for byte.
    checkpoint = assertions.checkpoint_values(estimator.latest_checkpoint())
    for name, value in assertions.saved_variables(path).items():
      self.assertEqual(assertions.comparable(value),
                       assertions.comparable(checkpoint[name]), name)

    expected_tags = sorted(tuple(receiver_fns.TAGS[m]) for m in modes)
    raw = _raw_feeds()
    tf1 = running.run_all_tf1(path, raw)
    tf2 = running.run_all_tf2(path, raw)
    self.assertEqual(sorted(tf1), expected_tags)
    self.assertEqual(sorted(tf2), expected_tags)
    expected_y = raw['x'] @ checkpoint['w'] + checkpoint['b']
    for tags in expected_tags:
      self.assertEqual(sorted(tf1[tags]), sorted(tf2[tags]))
      for key, outputs in tf1[tags].items():
        for out_key, value in outputs.items():
          if out_key.startswith('metrics/'):
            continue  # update and value in one run: order undefined
          self.assertAllClose(value, tf2[tags][key][out_key], atol=1e-5,
                              msg=f'{tags} {key} {out_key}')
    if ModeKeys.PREDICT in modes:
      serve = tf1[('serve',)]
      self.assertEqual(sorted(serve), ['doubled', 'serving_default'])
      self.assertAllClose(serve['serving_default']['y'], expected_y, atol=1e-5)
      self.assertAllClose(serve['doubled']['y2'], 2 * expected_y, atol=1e-5)
    for mode in (ModeKeys.TRAIN, ModeKeys.EVAL):
      if mode in modes:
        outputs = tf1[(receiver_fns.TAGS[mode][0],)][mode]
        self.assertAllClose(outputs['predictions/y'], expected_y, atol=1e-5)
        self.assertAllClose(
            outputs['loss'], np.mean((expected_y - raw['label'])**2),
            rtol=1e-4)

    if ModeKeys.TRAIN in modes:
      losses = running.train_steps(path, steps=15, feeds=raw)
      self.assertLess(losses[-1], losses[0])
      tf2_losses = running.tf2_train_steps(path, steps=15, tags=['train'],
                                           feeds=raw)
      self.assertLess(tf2_losses[-1], tf2_losses[0])
      # Training from the export starts at the exported weights.
      self.assertAllClose(tf2_losses[0], losses[0], rtol=1e-5)
    if ModeKeys.EVAL in modes:
      metrics = running.run_eval_metrics(path, raw)
      mae = float(np.mean(np.abs(expected_y - raw['label'])))
      self.assertEqual(metrics['mae']['before'], 0.0)
      self.assertAllClose(metrics['mae']['update'], mae, rtol=1e-4)
      self.assertAllClose(metrics['mae']['value'], mae, rtol=1e-4)


class ExportOptionsTest(tf.test.TestCase, parameterized.TestCase):
  """Path types, as_text, strip_default_attrs, assets_extra."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls._dir = tempfile.mkdtemp(prefix='export_options_test_')
    cls.estimator = models.train_custom(os.path.join(cls._dir, 'model'),
                                        estimator_cls=models.MixinEstimator)

  @parameterized.named_parameters(
      (f'{kind}_{path_type.__name__}', kind, path_type)
      for kind in KINDS for path_type in (str, bytes, pathlib.Path))
  def test_path_types(self, kind, path_type):
    base = os.path.join(self.create_tempdir().full_path, 'exports')
    prefix = self.estimator.latest_checkpoint()
    as_type = (lambda p: p.encode('utf-8')) if path_type is bytes else path_type
    path = _export(self.estimator, kind, as_type(base),
                   checkpoint_path=as_type(prefix))
    self.assertIsInstance(path, str)
    self.assertEqual(os.path.dirname(path), base)
    self.assertEqual(running.meta_graph_tags(path),
                     [['eval'], ['serve'], ['train']])
    running.run_all_tf1(path, _raw_feeds())

  def test_none_receiver_is_a_mode_not_requested_like_stock(self):
    # TFMA's export_eval_savedmodel passes {EVAL: fn, PREDICT: None}.
    receivers = dict(receiver_fns.receiver_map((ModeKeys.TRAIN,
                                                ModeKeys.EVAL)))
    receivers[ModeKeys.PREDICT] = None
    base = self.create_tempdir().full_path
    stock = assertions.stock_export(self.estimator, os.path.join(base, 'stock'),
                                    receivers=receivers)
    for path in (
        multimode_export.export_all_saved_models(
            self.estimator, os.path.join(base, 'free'), receivers),
        self.estimator.export_all_saved_models(os.path.join(base, 'mixin'),
                                               receivers)):
      self.assertEqual(running.meta_graph_tags(path), [['eval'], ['train']])
      assertions.assert_same_as_stock(self, path, stock)
    per_mode = multimode_export.export_saved_models_per_mode(
        self.estimator, os.path.join(base, 'per_mode'), receivers)
    self.assertCountEqual(per_mode, [ModeKeys.TRAIN, ModeKeys.EVAL])
    self.assertCountEqual(os.listdir(os.path.join(base, 'per_mode')),
                          ['train', 'eval'])

  def test_no_default_signature_warning_for_train_and_eval(self):
    # TRAIN and EVAL have no serving signature by design: no TF warning
    # "Export includes no default signature!" for them.
    base = self.create_tempdir().full_path
    with self.assertLogs(tf.get_logger(), 'WARNING') as logs:
      tf.get_logger().warning('marker')
      _export(self.estimator, 'function', os.path.join(base, 'ok'))
    self.assertFalse([m for m in logs.output if 'no default signature' in m],
                     logs.output)

  def test_as_text_writes_pbtxt_that_loads(self):
    base = self.create_tempdir().full_path
    path = _export(self.estimator, 'mixin', os.path.join(base, 'text'),
                   as_text=True)
    self.assertCountEqual(os.listdir(path), ['saved_model.pbtxt', 'fingerprint.pb',
                                           'variables'])
    binary = _export(self.estimator, 'mixin', os.path.join(base, 'binary'))
    self.assertEqual(assertions.describe_export(path),
                     assertions.describe_export(binary))
    raw = _raw_feeds()
    self.assertEqual(sorted(running.run_all_tf1(path, raw)),
                     [('eval',), ('serve',), ('train',)])
    self.assertLen(running.run_all_tf2(path, raw), 3)
    stock = assertions.stock_export(self.estimator, os.path.join(base, 'stock'),
                                as_text=True)
    assertions.assert_same_as_stock(self, path, stock)

  def test_strip_default_attrs(self):
    base = self.create_tempdir().full_path

    def attr_count(path):
      return sum(len(n.attr) for m in running.read_meta_graphs(path)
                 for n in m.graph_def.node)

    default = _export(self.estimator, 'function', os.path.join(base, 'd'))
    kept = _export(self.estimator, 'function', os.path.join(base, 'f'),
                   strip_default_attrs=False)
    stripped = _export(self.estimator, 'function', os.path.join(base, 't'),
                       strip_default_attrs=True)
    stock = assertions.stock_export(self.estimator, os.path.join(base, 'stock'))
    # Default is False (as tf.contrib.estimator had); the stock method strips.
    self.assertEqual(attr_count(default), attr_count(kept))
    self.assertLess(attr_count(stripped), attr_count(kept))
    self.assertEqual(attr_count(stripped), attr_count(stock))
    raw = _raw_feeds()
    for path in (kept, stripped):
      self.assertLen(running.run_all_tf1(path, raw), 3)
      self.assertLen(running.run_all_tf2(path, raw), 3)
      assertions.assert_same_as_stock(self, path, stock)

  def test_assets_extra_nested_destinations(self):
    tmp = self.create_tempdir()
    first = tmp.create_file('first.txt', content='first').full_path
    second = tmp.create_file('second.bin', content='\x00second').full_path
    extra = {'top.txt': first, 'a/b/c/deep.bin': second,
             'a/sibling.txt': first}
    base = tmp.full_path
    path = _export(self.estimator, 'mixin', os.path.join(base, 'ours'),
                   assets_extra=extra)
    self.assertEqual(
        assertions.files_under(os.path.join(path, 'assets.extra')),
        {'top.txt': b'first', os.path.join('a', 'b', 'c', 'deep.bin'):
             b'\x00second', os.path.join('a', 'sibling.txt'): b'first'})
    stock = assertions.stock_export(self.estimator, os.path.join(base, 'stock'),
                                assets_extra=extra)
    assertions.assert_same_as_stock(self, path, stock)
    self.assertLen(running.run_all_tf1(path, _raw_feeds()), 3)


class CheckpointResolutionTest(tf.test.TestCase, parameterized.TestCase):
  """Which checkpoint is exported: explicit, latest, warm-start."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls._dir = tempfile.mkdtemp(prefix='checkpoint_resolution_test_')
    cls.model_dir = os.path.join(cls._dir, 'model')
    cls.estimator = models.train_custom(cls.model_dir, steps=3)
    cls.first = cls.estimator.latest_checkpoint()
    cls.estimator.train(datasets.input_fn(), steps=3)
    cls.latest = cls.estimator.latest_checkpoint()
    assert cls.first != cls.latest, (cls.first, cls.latest)

  def _assert_exports(self, estimator, expected_prefix, checkpoint_path=None):
    base = self.create_tempdir().full_path
    path = multimode_export.export_all_saved_models(
        estimator, os.path.join(base, 'ours'), receiver_fns.receiver_map(),
        checkpoint_path=checkpoint_path)
    stock = assertions.stock_export(estimator, os.path.join(base, 'stock'),
                                checkpoint_path=checkpoint_path)
    assertions.assert_same_as_stock(self, path, stock)
    expected = assertions.checkpoint_values(expected_prefix)
    self.assertEqual(assertions.comparable_variables(path),
                     {k: assertions.comparable(v) for k, v in expected.items()})
    return path

  def test_latest_in_model_dir(self):
    path = self._assert_exports(self.estimator, self.latest)
    self.assertEqual(assertions.saved_variables(path)['global_step'], 6)

  def test_explicit_older_checkpoint(self):
    path = self._assert_exports(self.estimator, self.first,
                                checkpoint_path=self.first)
    self.assertEqual(assertions.saved_variables(path)['global_step'], 3)

  def test_explicit_directory_means_its_latest(self):
    path = multimode_export.export_all_saved_models(
        self.estimator, self.create_tempdir().full_path, receiver_fns.receiver_map(),
        checkpoint_path=self.model_dir)
    self.assertEqual(assertions.saved_variables(path)['global_step'], 6)

  @parameterized.named_parameters(('directory', False), ('prefix', True))
  def test_warm_start_checkpoint_when_model_dir_is_empty(self, use_prefix):
    source = self.first if use_prefix else self.model_dir
    expected = self.first if use_prefix else self.latest
    warm = tf.estimator.Estimator(
        models.linear_model_fn, model_dir=self.create_tempdir().full_path,
        params={}, warm_start_from=source)
    self.assertIsNone(warm.latest_checkpoint())
    self._assert_exports(warm, expected)

  def test_no_checkpoint_names_where_it_looked(self):
    model_dir = self.create_tempdir().full_path
    empty = tf.estimator.Estimator(models.linear_model_fn, model_dir=model_dir,
                                   params={})
    base = os.path.join(self.create_tempdir().full_path, 'exports')
    with self.assertRaisesRegex(multimode_export.CheckpointNotFoundError,
                                model_dir) as caught:
      multimode_export.export_all_saved_models(empty, base,
                                               receiver_fns.receiver_map())
    self.assertIsInstance(caught.exception, ValueError)  # as stock raises
    self.assertIn(model_dir, caught.exception.searched)
    self.assertFalse(os.path.exists(base))
    with self.assertRaises(ValueError):
      assertions.stock_export(empty, os.path.join(base, 'stock'))


if __name__ == '__main__':
  absltest.main()
