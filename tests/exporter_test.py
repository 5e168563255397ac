"""Tests for multimode_export.exporter with real train_and_evaluate runs."""
# bazel-data: :mirrored_task

import fcntl
import json
import os
import pathlib
import subprocess
import sys
import uuid

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

import multimode_export
from multimode_export.integration import _exporter as exporter_lib
from multimode_export.publishing import _staging as publish
from testing import assertions
from testing import datasets
from testing import models
from testing import receiver_fns
from testing import running
ModeKeys = tf.estimator.ModeKeys
_HERE = os.path.dirname(os.path.abspath(__file__))


def _estimator(model_dir, **params):
  return tf.estimator.Estimator(
      models.linear_model_fn, model_dir=model_dir, params=params,
      config=tf.estimator.RunConfig(tf_random_seed=1, save_checkpoints_steps=5,
                                    keep_checkpoint_max=100))


def _train_and_evaluate(estimator, exporter, max_steps, train_input_fn=None):
  tf.estimator.train_and_evaluate(
      estimator,
      tf.estimator.TrainSpec(train_input_fn or datasets.input_fn(),
                             max_steps=max_steps),
      tf.estimator.EvalSpec(datasets.input_fn(seed=1), steps=2,
                            exporters=[exporter], start_delay_secs=0,
                            throttle_secs=0))


def _versions(base):
  return sorted(n for n in os.listdir(base) if n.isdigit())


class LatestModeTest(tf.test.TestCase):

  def test_exports_all_modes_from_evaluated_checkpoints_and_keeps_n(self):
    model_dir = self.create_tempdir().full_path
    base = os.path.join(model_dir, 'export', 'multimode')
    os.makedirs(base)
    # Foreign content the garbage collection must never delete: another
    # name, a version without saved_model.pb (mid-publish), a stock
    # PREDICT-only export, a live exporter's staging directory.
    os.makedirs(os.path.join(base, 'notes'))
    os.makedirs(os.path.join(base, '7', 'variables'))
    other = models.train_custom(self.create_tempdir().full_path, steps=1)
    stock = other.export_saved_model(base, receiver_fns.serving_receiver_fn())
    stock = os.path.basename(stock.decode() if isinstance(stock, bytes)
                             else stock)
    staging = os.path.join(base, publish.STAGING_PREFIX + 'live-' +
                           uuid.uuid4().hex)
    os.mkdir(staging)
    lock = os.open(staging, os.O_RDONLY)
    fcntl.flock(lock, fcntl.LOCK_EX)
    self.addCleanup(os.close, lock)
    foreign = sorted(os.listdir(base))

    exporter = models.RecordingExporter('multimode', receiver_fns.receiver_map(),
                                        exports_to_keep=2)
    _train_and_evaluate(_estimator(model_dir, partitions=2), exporter,
                        max_steps=20)

    made = [c for c in exporter.calls if c['path']]
    self.assertLen(made, len(exporter.calls))  # latest mode: every call
    self.assertEqual([c['global_step'] for c in made], [5, 10, 15, 20])
    for call in made:
      self.assertEqual(os.path.dirname(call['path']), base)
    kept = [os.path.basename(c['path']) for c in made[-2:]]
    self.assertEqual(sorted(os.listdir(base)), sorted(foreign + kept))
    for call in made[-2:]:
      assertions.assert_export_matches_checkpoint(self, call['path'],
                                              call['checkpoint'])
    self.assertIn(stock, os.listdir(base))

  def test_exports_only_requested_modes(self):
    model_dir = self.create_tempdir().full_path
    # A None receiver fn means the mode is not requested, as in the stock
    # export.
    receivers = dict(receiver_fns.receiver_map((ModeKeys.EVAL,
                                                ModeKeys.PREDICT)))
    receivers[ModeKeys.TRAIN] = None
    exporter = models.RecordingExporter('two', receivers, exports_to_keep=1)
    _train_and_evaluate(_estimator(model_dir), exporter, max_steps=10)
    path = exporter.calls[-1]['path']
    self.assertEqual(running.meta_graph_tags(path), [['eval'], ['serve']])
    self.assertEqual(_versions(os.path.dirname(path)),
                     [os.path.basename(path)])
    # The EVAL carrier restores the model variables, not the optimizer's.
    exported = assertions.saved_variables(path)
    for key, value in assertions.checkpoint_values(
        exporter.calls[-1]['checkpoint']).items():
      if key in exported:
        np.testing.assert_array_equal(exported[key], value)
    self.assertIn('w', exported)
    self.assertNotIn('w/Adam', exported)

  def test_exports_to_keep_none_keeps_everything(self):
    model_dir = self.create_tempdir().full_path
    exporter = models.RecordingExporter('all', receiver_fns.receiver_map(),
                                        exports_to_keep=None)
    _train_and_evaluate(_estimator(model_dir), exporter, max_steps=15)
    self.assertLen(_versions(os.path.join(model_dir, 'export', 'all')), 3)


class PerModeLayoutTest(tf.test.TestCase):

  def test_exports_each_mode_and_collects_versions_across_mode_dirs(self):
    model_dir = self.create_tempdir().full_path
    base = os.path.join(model_dir, 'export', 'pm')
    # Foreign content in a mode directory: never deleted.
    os.makedirs(os.path.join(base, 'serve', 'notes'))
    os.makedirs(os.path.join(base, 'serve', '7', 'variables'))
    exporter = models.RecordingExporter('pm', receiver_fns.receiver_map(),
                                        exports_to_keep=2, layout='per_mode')
    self.assertEqual(exporter.layout, 'per_mode')
    _train_and_evaluate(_estimator(model_dir), exporter, max_steps=20)

    made = [c for c in exporter.calls if c['path']]
    self.assertEqual([c['global_step'] for c in made], [5, 10, 15, 20])
    for call in made:  # the mode published last
      self.assertEqual(os.path.dirname(call['path']),
                       os.path.join(base, 'serve'))
    kept = [os.path.basename(c['path']) for c in made[-2:]]
    self.assertEqual(sorted(os.listdir(base)), ['eval', 'serve', 'train'])
    self.assertEqual(_versions(os.path.join(base, 'train')), kept)
    self.assertEqual(_versions(os.path.join(base, 'eval')), kept)
    self.assertEqual(sorted(os.listdir(os.path.join(base, 'serve'))),
                     sorted(['7', 'notes'] + kept))
    last = made[-1]
    expected = assertions.checkpoint_values(last['checkpoint'])
    for mode_dir, tags in (('train', [['train']]), ('eval', [['eval']]),
                           ('serve', [['serve']])):
      path = os.path.join(base, mode_dir, kept[-1])
      self.assertEqual(running.meta_graph_tags(path), tags)
      exported = assertions.saved_variables(path)
      self.assertIn('w', exported)
      self.assertEqual('w/Adam' in exported, mode_dir == 'train')
      for key, value in exported.items():
        np.testing.assert_array_equal(value, expected[key], err_msg=key)

  def test_gc_spares_other_tag_sets_in_the_mode_dirs(self):
    base = self.create_tempdir().full_path
    estimator = models.train_custom(self.create_tempdir().full_path, steps=1)
    # An EVAL+PREDICT per-mode exporter's versions share serve/ and eval/.
    other = exporter_lib.MultiModeExporter(
        'pm', receiver_fns.receiver_map(), exports_to_keep=1, layout='per_mode',
        tags={ModeKeys.PREDICT: ['serve', 'other']})
    foreign = other.export(estimator, base, None, {'loss': 1.0}, False)
    exporter = exporter_lib.MultiModeExporter(
        'pm', receiver_fns.receiver_map(), exports_to_keep=1, layout='per_mode')
    paths = [exporter.export(estimator, base, None, {'loss': 1.0}, False)
             for _ in range(2)]
    foreign_version = os.path.basename(foreign)
    for mode_dir in ('train', 'eval', 'serve'):  # the whole version spared
      self.assertTrue(os.path.exists(
          os.path.join(base, mode_dir, foreign_version, 'saved_model.pb')))
      self.assertFalse(os.path.exists(os.path.join(
          base, mode_dir, os.path.basename(paths[0]))))
    result = exporter.garbage_collect(base)
    self.assertEqual(result.deleted, ())
    self.assertEqual([os.path.relpath(p, base) for p in result.kept],
                     [f'{d}/{os.path.basename(paths[1])}'
                      for d in ('train', 'eval', 'serve')])

  def test_rejects_an_unknown_layout(self):
    with self.assertRaisesRegex(ValueError, "layout: expected 'shared' or "
                                "'per_mode', got 'flat'"):
      exporter_lib.MultiModeExporter('e', receiver_fns.receiver_map(),
                                     layout='flat')


class RamFilesystemTest(parameterized.TestCase, tf.test.TestCase):
  """Exports to ram://, from an estimator trained on local disk."""

  @parameterized.named_parameters(('shared', 'shared'),
                                  ('per_mode', 'per_mode'))
  def test_exports_and_collects_on_ram(self, layout):
    estimator = models.train_custom(self.create_tempdir().full_path, steps=2)
    base = f'ram://exporter_test/{layout}/{uuid.uuid4().hex}/export/e'
    self.addCleanup(tf.io.gfile.rmtree, base.rsplit('/export/', 1)[0])
    exporter = exporter_lib.MultiModeExporter(
        'e', receiver_fns.receiver_map(), exports_to_keep=2, layout=layout)
    paths = [exporter.export(estimator, base, None, {'loss': 1.0}, False)
             for _ in range(3)]
    versions = [p.rsplit('/', 1)[1] for p in paths]
    self.assertEqual(versions, sorted(versions, key=int))
    self.assertFalse(tf.io.gfile.exists(paths[0] + '/saved_model.pb'))
    mode_dirs = ([''] if layout == 'shared' else ['train/', 'eval/', 'serve/'])
    for mode_dir in mode_dirs:
      listed = sorted(n.rstrip('/') for n in
                      tf.io.gfile.listdir(base + '/' + mode_dir)
                      if n.rstrip('/').isdigit())
      self.assertEqual(listed, versions[1:], mode_dir)
    report = multimode_export.verify(base, run_train_step=False)
    self.assertTrue(report.ok, str(report))
    self.assertIn(f'newest{" complete" * (layout == "per_mode")} '
                  f'{versions[-1]}', report.checks[0].detail)


class ExportDirBaseTest(parameterized.TestCase, tf.test.TestCase):
  """`export_dir_base`: versions published elsewhere than `model_dir`."""

  @parameterized.named_parameters(('shared', 'shared'),
                                  ('per_mode', 'per_mode'))
  def test_publishes_and_collects_under_the_base(self, layout):
    model_dir = self.create_tempdir().full_path
    # A directory that does not exist yet, on another tree than model_dir.
    base = os.path.join(self.create_tempdir().full_path, 'serving', 'm')
    exporter = models.RecordingExporter(
        'multimode', receiver_fns.receiver_map(), exports_to_keep=2,
        layout=layout, export_dir_base=pathlib.Path(base))
    self.assertEqual(exporter.export_dir_base, base)
    _train_and_evaluate(_estimator(model_dir), exporter, max_steps=15)

    made = [c for c in exporter.calls if c['path']]
    self.assertEqual([c['global_step'] for c in made], [5, 10, 15])
    mode_dirs = ['.'] if layout == 'shared' else ['train', 'eval', 'serve']
    for call in made:  # per-mode: the mode published last, serve/
      self.assertEqual(os.path.dirname(call['path']),
                       os.path.normpath(os.path.join(base, mode_dirs[-1])))
    kept = [os.path.basename(c['path']) for c in made[-2:]]
    for mode_dir in mode_dirs:
      self.assertEqual(_versions(os.path.join(base, mode_dir)), kept)
    self.assertFalse(os.path.exists(os.path.join(model_dir, 'export')))
    last = made[-1]
    if layout == 'shared':
      assertions.assert_export_matches_checkpoint(self, last['path'],
                                                  last['checkpoint'])
    x, _ = datasets.make_data(4)
    _, session, meta = running.tf1_load(last['path'], ['serve'])
    values = assertions.checkpoint_values(last['checkpoint'])
    with session:
      out = running.run_signature(session, meta, 'serving_default', {'x': x})
    self.assertAllClose(out['y'], x @ values['w'] + values['b'], rtol=1e-5)

  def test_garbage_collect_collects_at_the_base(self):
    base = self.create_tempdir().full_path
    estimator = models.train_custom(self.create_tempdir().full_path, steps=1)
    exporter = exporter_lib.MultiModeExporter(
        'e', receiver_fns.receiver_map(), exports_to_keep=1,
        export_dir_base=os.fsencode(base) + b'/')
    self.assertEqual(exporter.export_dir_base, base)
    ignored = os.path.join(self.create_tempdir().full_path, 'export', 'e')
    first = exporter.export(estimator, ignored, None, {'loss': 1.0}, False)
    second = exporter.export(estimator, ignored, None, {'loss': 1.0}, False)
    self.assertFalse(os.path.exists(ignored))
    self.assertEqual(_versions(base), [os.path.basename(second)])
    self.assertFalse(os.path.exists(first))
    result = exporter.garbage_collect(ignored)
    self.assertEqual(result.kept, (second,))


class BestModeTest(parameterized.TestCase, tf.test.TestCase):

  @parameterized.named_parameters(('under_model_dir', False),
                                  ('export_dir_base', True))
  def test_restart_never_exports_a_worse_model(self, elsewhere):
    model_dir = self.create_tempdir().full_path
    base = os.path.join(model_dir, 'export', 'best')
    # With export_dir_base the exports go elsewhere; the history is still
    # read from model_dir's event files.
    kwargs = {}
    if elsewhere:
      base = os.path.join(self.create_tempdir().full_path, 'best')
      kwargs = dict(export_dir_base=base)
    first = models.RecordingExporter('best', receiver_fns.receiver_map(),
                                     compare_fn=exporter_lib.loss_smaller,
                                     **kwargs)
    _train_and_evaluate(_estimator(model_dir), first, max_steps=20)
    made = [c for c in first.calls if c['path']]
    losses = [c['loss'] for c in first.calls]
    # Every export was an improvement over all evaluations before it.
    for call in made:
      earlier = [c['loss'] for c in first.calls
                 if c['global_step'] < call['global_step']]
      self.assertLess(call['loss'], min(earlier, default=np.inf))
    self.assertNotEmpty(made)
    exported_before = _versions(base)
    best_loss = min(losses)

    # Restart: a new Estimator and exporter on the same model_dir, trained
    # on shifted labels so every new evaluation is worse than the best.
    x, y = datasets.make_data()

    def bad_input_fn():
      return tf.data.Dataset.from_tensor_slices(
          ({'x': x}, y + 5.0)).repeat().batch(16)
    second = models.RecordingExporter('best', receiver_fns.receiver_map(),
                                      compare_fn=exporter_lib.loss_smaller,
                                      **kwargs)
    _train_and_evaluate(_estimator(model_dir), second, max_steps=30,
                        train_input_fn=bad_input_fn)
    self.assertNotEmpty(second.calls)
    for call in second.calls:
      self.assertGreater(call['loss'], best_loss)
      self.assertIsNone(call['path'])
    self.assertEqual(_versions(base), exported_before)
    self.assertEqual(os.path.exists(os.path.join(model_dir, 'export')),
                     not elsewhere)
    self.assertAllClose(second.best_eval_result['loss'], best_loss)

    # The restarted exporter still exports a result better than the best.
    path = second.export(_estimator(model_dir), base,
                         tf.train.latest_checkpoint(model_dir),
                         {'loss': best_loss / 2, 'global_step': 31}, False)
    self.assertEqual(os.path.dirname(path), base)
    assertions.assert_export_matches_checkpoint(
        self, path, tf.train.latest_checkpoint(model_dir))

  def test_first_evaluation_of_a_fresh_job_exports(self):
    model_dir = self.create_tempdir().full_path
    exporter = models.RecordingExporter('best', receiver_fns.receiver_map(),
                                        compare_fn=exporter_lib.loss_smaller)
    _train_and_evaluate(_estimator(model_dir), exporter, max_steps=5)
    self.assertLen(exporter.calls, 1)
    self.assertIsNotNone(exporter.calls[0]['path'])

  def test_without_event_files_a_restart_forgets_the_best(self):
    model_dir = self.create_tempdir().full_path
    estimator = models.train_custom(model_dir, steps=3)
    checkpoint = estimator.latest_checkpoint()
    base = os.path.join(model_dir, 'export', 'b')
    exporter = exporter_lib.MultiModeExporter(
        'b', receiver_fns.receiver_map(), compare_fn=exporter_lib.loss_smaller,
        event_file_pattern=None)
    self.assertIsNotNone(exporter.export(
        estimator, base, checkpoint, {'loss': 1.0, 'global_step': 3}, False))
    self.assertIsNone(exporter.export(
        estimator, base, checkpoint, {'loss': 2.0, 'global_step': 3}, False))
    restarted = exporter_lib.MultiModeExporter(
        'b', receiver_fns.receiver_map(), compare_fn=exporter_lib.loss_smaller,
        event_file_pattern=None)
    self.assertIsNotNone(restarted.export(
        estimator, base, checkpoint, {'loss': 2.0, 'global_step': 3}, False))


  def test_skips_a_checkpoint_deleted_before_its_export(self):
    model_dir = self.create_tempdir().full_path
    estimator = models.train_custom(model_dir, steps=2)
    base = os.path.join(model_dir, 'export', 'gone')
    exporter = exporter_lib.MultiModeExporter(
        'gone', receiver_fns.receiver_map(), compare_fn=exporter_lib.loss_smaller,
        event_file_pattern=None)
    gone = os.path.join(model_dir, 'model.ckpt-999')
    self.assertIsNone(exporter.export(
        estimator, base, gone, {'loss': 1.0, 'global_step': 999}, False))
    self.assertFalse(os.path.exists(base))
    self.assertIsNone(exporter.best_eval_result)
    # The next evaluation's checkpoint still exports (1.5 > 1.0 is fine:
    # the skipped result never became the best).
    self.assertIsNotNone(exporter.export(
        estimator, base, estimator.latest_checkpoint(),
        {'loss': 1.5, 'global_step': 2}, False))

class TaskRuleTest(parameterized.TestCase, tf.test.TestCase):

  _CLUSTER = {'chief': ['127.0.0.1:1'], 'worker': ['127.0.0.1:2'],
              'ps': ['127.0.0.1:3']}

  def _config(self, task_type, index=0, cluster=True):
    tf_config = {'task': {'type': task_type, 'index': index}}
    if cluster:
      tf_config['cluster'] = self._CLUSTER
    old = os.environ.get('TF_CONFIG')
    os.environ['TF_CONFIG'] = json.dumps(tf_config)
    try:
      return tf.estimator.RunConfig()
    finally:
      if old is None:
        del os.environ['TF_CONFIG']
      else:
        os.environ['TF_CONFIG'] = old

  @parameterized.named_parameters(
      ('chief', 'chief', 0, True),
      ('worker', 'worker', 0, False),
      ('ps', 'ps', 0, False),
      ('evaluator', 'evaluator', 0, True),
      ('second_evaluator', 'evaluator', 1, False),
  )
  def test_rule(self, task_type, index, expected):
    self.assertEqual(exporter_lib.is_exporting_task(
        self._config(task_type, index)), expected)

  def test_single_machine_exports(self):
    self.assertTrue(exporter_lib.is_exporting_task(tf.estimator.RunConfig()))

  def test_worker_writes_nothing(self):
    model_dir = self.create_tempdir().full_path
    models.train_custom(model_dir, steps=2)
    worker = tf.estimator.Estimator(models.linear_model_fn,
                                    model_dir=model_dir,
                                    config=self._config('worker'))
    base = os.path.join(model_dir, 'export', 'w')
    exporter = exporter_lib.MultiModeExporter('w', receiver_fns.receiver_map())
    self.assertIsNone(exporter.export(worker, base, None,
                                      {'loss': 1.0, 'global_step': 2}, False))
    self.assertFalse(os.path.exists(base))


def _files_under(path: str) -> dict:
  """Relative file name -> bytes of every file under `path`."""
  files = {}
  for root, _, names in os.walk(path):
    for name in names:
      with open(os.path.join(root, name), 'rb') as f:
        files[os.path.relpath(os.path.join(root, name), path)] = f.read()
  return files


class ReuseGraphsTest(tf.test.TestCase, parameterized.TestCase):
  """reuse_graphs: the model_fn runs at the first export only."""

  def _counting_estimator(self, model_dir, calls):
    def model_fn(features, labels, mode, params):
      calls.append(mode)
      return models.linear_model_fn(features, labels, mode, params)
    return tf.estimator.Estimator(
        model_fn, model_dir=model_dir, params={},
        config=tf.estimator.RunConfig(tf_random_seed=1,
                                      save_checkpoints_steps=5,
                                      keep_checkpoint_max=100))

  @parameterized.named_parameters(('reuse', True), ('rebuild', False))
  def test_exports_what_a_fresh_export_writes(self, reuse_graphs):
    model_dir = self.create_tempdir().full_path
    calls = []
    estimator = self._counting_estimator(model_dir, calls)
    exporter = models.RecordingExporter(
        'multimode', receiver_fns.receiver_map(), exports_to_keep=None,
        reuse_graphs=reuse_graphs)
    _train_and_evaluate(estimator, exporter, max_steps=15)
    made = [c for c in exporter.calls if c['path']]
    self.assertEqual([c['global_step'] for c in made], [5, 10, 15])
    # Training and evaluation call the model_fn too: count the export's
    # calls only, from the exporter's own, on the same estimator.
    del calls[:]
    exporter.export(estimator, os.path.dirname(made[-1]['path']),
                    made[-1]['checkpoint'], {'loss': 1.0, 'global_step': 15},
                    True)
    self.assertLen(calls, 0 if reuse_graphs else 3)
    for call in made:
      fresh = multimode_export.export_all_saved_models(
          estimator, self.create_tempdir().full_path,
          receiver_fns.receiver_map(), checkpoint_path=call['checkpoint'])
      for name in ('saved_model.pb', 'fingerprint.pb'):
        with open(os.path.join(call['path'], name), 'rb') as f:
          ours = f.read()
        with open(os.path.join(fresh, name), 'rb') as f:
          self.assertEqual(ours, f.read(), name)
      assertions.assert_export_matches_checkpoint(self, call['path'],
                                                  call['checkpoint'])

  def test_per_mode_layout_exports_what_a_fresh_export_writes(self):
    model_dir = self.create_tempdir().full_path
    calls = []
    estimator = self._counting_estimator(model_dir, calls)
    exporter = models.RecordingExporter(
        'pm', receiver_fns.receiver_map(), exports_to_keep=None,
        layout='per_mode')
    _train_and_evaluate(estimator, exporter, max_steps=10)
    made = [c for c in exporter.calls if c['path']]
    self.assertEqual([c['global_step'] for c in made], [5, 10])
    for call in made:
      fresh = multimode_export.export_saved_models_per_mode(
          estimator, self.create_tempdir().full_path,
          receiver_fns.receiver_map(), checkpoint_path=call['checkpoint'])
      self.assertLen(fresh, 3)
      # One version number in every mode directory; the call returns serve's.
      base = os.path.dirname(os.path.dirname(call['path']))
      for mode, path in fresh.items():
        mode_dir = os.path.basename(os.path.dirname(path))  # infer -> serve
        ours = _files_under(os.path.join(base, mode_dir,
                                         os.path.basename(call['path'])))
        self.assertNotEqual(ours, {}, mode_dir)
        theirs = _files_under(path)
        self.assertCountEqual(ours, theirs, mode)
        for name, content in ours.items():
          self.assertEqual(content, theirs[name], f'{mode}/{name}')

  def test_another_estimator_gets_its_own_graphs(self):
    model_dir = self.create_tempdir().full_path
    calls = []
    first = self._counting_estimator(model_dir, calls)
    first.train(datasets.input_fn(), max_steps=5)
    exporter = exporter_lib.MultiModeExporter('e', receiver_fns.receiver_map())
    base = os.path.join(model_dir, 'export', 'e')
    result = {'loss': 1.0, 'global_step': 5}
    del calls[:]
    exporter.export(first, base, first.latest_checkpoint(), result, False)
    self.assertLen(calls, 3)
    second = self._counting_estimator(model_dir, calls)
    exporter.export(second, base, second.latest_checkpoint(), result, False)
    self.assertLen(calls, 6)
    exporter.export(second, base, second.latest_checkpoint(), result, False)
    self.assertLen(calls, 6)


class ArgumentsTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ('empty_name', dict(name=''), ValueError, 'name'),
      ('slash_name', dict(name='a/b'), ValueError, 'name'),
      ('zero_keep', dict(exports_to_keep=0), ValueError, 'exports_to_keep'),
      ('float_keep', dict(exports_to_keep=2.0), ValueError, 'exports_to_keep'),
      ('compare_args', dict(compare_fn=lambda a, b: True), ValueError,
       'compare_fn'),
      ('compare_type', dict(compare_fn=3), TypeError, 'compare_fn'),
      ('pattern', dict(event_file_pattern=''), ValueError,
       'event_file_pattern'),
      ('mode', dict(input_receiver_fn_map={'predict': receiver_fns.serving_receiver_fn()}),
       ValueError, 'infer'),
      ('tags', dict(tags={ModeKeys.TRAIN: ['serve']}), ValueError, 'tags'),
      ('only_none', dict(input_receiver_fn_map={ModeKeys.EVAL: None}),
       ValueError, 'No valid modes for exporting found'),
      ('reuse_graphs', dict(reuse_graphs=1), TypeError, 'reuse_graphs'),
      ('base_type', dict(export_dir_base=3), TypeError,
       r'export_dir_base: expected None, str, bytes or os.PathLike, got 3'),
      ('base_empty', dict(export_dir_base=''), multimode_export.ExportDirError,
       "export_dir_base: expected a non-empty path, got ''"),
      ('base_no_bucket', dict(export_dir_base='gs:///models'),
       multimode_export.ExportDirError,
       r"export_dir_base: expected a URL with a bucket.*'gs:///models'"),
      ('base_scheme', dict(export_dir_base='s4://bucket/models'),
       multimode_export.ExportDirError,
       r"export_dir_base: no TensorFlow filesystem is registered for s4://.*"
       r"got 's4://bucket/models'"),
  )
  def test_rejects(self, override, error, regex):
    kwargs = dict(name='e', input_receiver_fn_map=receiver_fns.receiver_map())
    kwargs.update(override)
    with self.assertRaisesRegex(error, regex):
      exporter_lib.MultiModeExporter(**kwargs)

  def test_does_not_mutate_receiver_map(self):
    receivers = receiver_fns.receiver_map()
    before = dict(receivers)
    exporter_lib.MultiModeExporter('e', receivers)
    self.assertEqual(receivers, before)

  def test_is_an_estimator_exporter(self):
    exporter = exporter_lib.MultiModeExporter('e', receiver_fns.receiver_map())
    self.assertIsInstance(exporter, tf.estimator.Exporter)
    self.assertEqual(exporter.name, 'e')
    tf.estimator.EvalSpec(datasets.input_fn(), exporters=[exporter])

  def test_loss_smaller(self):
    self.assertTrue(exporter_lib.loss_smaller({'loss': 2.0}, {'loss': 1.0}))
    self.assertFalse(exporter_lib.loss_smaller({'loss': 1.0}, {'loss': 1.0}))
    with self.assertRaisesRegex(ValueError, 'current_eval_result'):
      exporter_lib.loss_smaller({'loss': 1.0}, {'mae': 1.0})


class MirroredStrategyTest(tf.test.TestCase):

  def test_mirrored_training_exports_and_loads(self):
    # Logical devices must be configured before TensorFlow initializes, so
    # the training runs in a fresh process.
    model_dir = self.create_tempdir().full_path
    record = os.path.join(model_dir, 'record.jsonl')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(_HERE), os.environ.get('PYTHONPATH', '')]),
               TF_CPP_MIN_LOG_LEVEL='2')
    env.pop('TF_CONFIG', None)
    result = subprocess.run(
        [sys.executable, os.path.join(_HERE, 'mirrored_task.py'),
         '--model_dir', model_dir, '--record_file', record],
        env=env, capture_output=True, text=True, timeout=120, check=False)
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    self.assertIn('replicas=2', result.stdout)
    calls = [c for c in models.read_records(record) if c['path']]
    self.assertNotEmpty(calls)
    last = calls[-1]
    assertions.assert_export_matches_checkpoint(self, last['path'],
                                            last['checkpoint'])
    for tags in (['train'], ['eval'], ['serve']):
      graph, session, meta = running.tf1_load(last['path'], tags)
      with graph.as_default(), session:
        self.assertNotEmpty(meta.signature_def)
    x, _ = datasets.make_data(4)
    _, session, meta = running.tf1_load(last['path'], ['serve'])
    with session:
      out = running.run_signature(session, meta, 'serving_default', {'x': x})
    self.assertEqual(out['y'].shape, (4, 1))
    losses = running.train_steps(last['path'], steps=5)
    self.assertLess(losses[-1], losses[0])


if __name__ == '__main__':
  tf.test.main()
