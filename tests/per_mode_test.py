"""Per-mode layout, layout detection, and the export options on both layouts.

Real estimators trained for a few steps, real exports on local disk and on
`ram://`, loaded with the TF1 loader, `tf.saved_model.load` and
`saved_model_cli`. Faults are injected by wrapping `os.rename` or one of our
own writer functions, and by killing an exporting process.
"""

import itertools
import os
import subprocess
import sys
import textwrap
from unittest import mock

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

import multimode_export
from multimode_export import _export as export
from multimode_export import _per_mode as per_mode
from multimode_export.publishing import _fixed_dir as target_dir
from multimode_export.publishing import _layout as layout
from multimode_export.publishing import _staging as publish
from multimode_export.saved_model import _writer as saved_model_writer
from multimode_export.variables import _checkpoint as checkpoint_lib
from testing import assertions
from testing import datasets
from testing import models
from testing import receiver_fns
from testing import running

ModeKeys = tf.estimator.ModeKeys
ALL_MODES = (ModeKeys.TRAIN, ModeKeys.EVAL, ModeKeys.PREDICT)
SUBSETS = [c for n in (1, 2, 3) for c in itertools.combinations(ALL_MODES, n)]
MODEL_VARIABLES = {'w', 'b', 'global_step'}
DEFAULT_TAGS = {ModeKeys.TRAIN: ['train'], ModeKeys.EVAL: ['eval'],
                ModeKeys.PREDICT: ['serve']}
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _subset_name(modes):
  return '_'.join(layout.MODE_DIRS[m] for m in modes)


def _layout_subset_params():
  for kind, modes in itertools.product((layout.SHARED, layout.PER_MODE),
                                       SUBSETS):
    yield dict(testcase_name=f'{kind}_{_subset_name(modes)}', kind=kind,
               modes=modes)


def _predict_graph_variables():
  """Global variables of a freshly built PREDICT graph (independent of the
  export code): what a SavedModel's serve graph must restore."""
  with tf.Graph().as_default():
    tf.compat.v1.train.create_global_step()
    x = tf.compat.v1.placeholder(tf.float32, [None, datasets.FEATURE_DIM])
    models.linear_model_fn({'x': x}, None, ModeKeys.PREDICT, {})
    return {v.op.name for v in tf.compat.v1.global_variables()}


def _serve(export_dir, x, tags=('serve',)):
  _, session, meta = running.tf1_load(export_dir, list(tags))
  with session:
    return running.run_signature(session, meta, 'serving_default',
                                {'x': x})['y']


class PerModeTest(models.ClassRootMixin, parameterized.TestCase,
                  tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.estimator = models.train_custom(os.path.join(cls.root, 'model'))
    cls.checkpoint = checkpoint_lib.read(
        tf.train.latest_checkpoint(cls.estimator.model_dir))
    cls.values = assertions.checkpoint_values(cls.checkpoint.prefix)

  def _expected(self, x):
    return x @ self.values['w'] + self.values['b']

  # Both layouts, every mode subset.

  @parameterized.named_parameters(*_layout_subset_params())
  def test_layout_and_variables(self, kind, modes):
    base = self.create_tempdir().full_path
    if kind == layout.SHARED:
      path = export.export_all_saved_models(self.estimator, base,
                                            receiver_fns.receiver_map(modes))
      self.assertEqual(running.meta_graph_tags(path),
                       sorted(DEFAULT_TAGS[m] for m in modes))
      found = layout.find_layout(base)
      self.assertEqual(found.kind, layout.SHARED)
      self.assertEqual(found.saved_model_dirs(), {layout.SHARED: path})
      expected = (set(self.checkpoint.variables) if ModeKeys.TRAIN in modes
                  else MODEL_VARIABLES)
      self.assertEqual(set(assertions.saved_variables(path)), expected)
      return

    paths = per_mode.export_saved_models_per_mode(
        self.estimator, base, receiver_fns.receiver_map(modes))
    self.assertEqual(set(paths), set(modes))
    versions = {os.path.basename(p) for p in paths.values()}
    self.assertLen(versions, 1)  # one version for the whole group
    version = versions.pop()
    self.assertCountEqual(os.listdir(base),
                          [layout.MODE_DIRS[m] for m in modes])
    for mode, path in paths.items():
      self.assertEqual(path, os.path.join(base, layout.MODE_DIRS[mode],
                                          version))
      self.assertEqual(running.meta_graph_tags(path), [DEFAULT_TAGS[mode]])
      saved = assertions.saved_variables(path)
      expected = (set(self.checkpoint.variables) if mode == ModeKeys.TRAIN
                  else MODEL_VARIABLES)
      self.assertEqual(set(saved), expected)
      for name, value in saved.items():
        self.assertAllEqual(value, self.values[name])
      # Each part loads on its own.
      _, session, _ = running.tf1_load(path, DEFAULT_TAGS[mode])
      session.close()
    found = layout.find_layout(base)
    self.assertEqual(found.kind, layout.PER_MODE)
    self.assertEqual(found.versions, (int(version),))
    self.assertEqual(found.saved_model_dirs(), paths)

  def test_serve_part_has_exactly_the_predict_graph_variables(self):
    paths = per_mode.export_saved_models_per_mode(
        self.estimator, self.create_tempdir().full_path,
        receiver_fns.receiver_map())
    serve = assertions.saved_variables(paths[ModeKeys.PREDICT])
    self.assertEqual(set(serve), _predict_graph_variables())
    self.assertEmpty([k for k in serve if 'Adam' in k or '_power' in k])
    # ... while the checkpoint and the train part do hold the Adam slots.
    self.assertIn('w/Adam', assertions.saved_variables(paths[ModeKeys.TRAIN]))
    train_bytes = sum(v.nbytes for v in
                      assertions.saved_variables(paths[ModeKeys.TRAIN]).values())
    self.assertLess(sum(v.nbytes for v in serve.values()), train_bytes)

  def test_versions_increase_across_mode_dirs(self):
    base = self.create_tempdir().full_path
    first = per_mode.export_saved_models_per_mode(
        self.estimator, base, receiver_fns.receiver_map([ModeKeys.PREDICT]))
    second = per_mode.export_saved_models_per_mode(
        self.estimator, base, receiver_fns.receiver_map([ModeKeys.TRAIN]))
    self.assertGreater(int(os.path.basename(second[ModeKeys.TRAIN])),
                       int(os.path.basename(first[ModeKeys.PREDICT])))
    found = layout.find_layout(base)
    self.assertLen(found.versions, 2)
    self.assertEqual(found.saved_model_dirs(found.versions[0]), first)
    self.assertEqual(found.saved_model_dirs(), second)

  def test_find_layout_rejects_non_exports(self):
    empty = self.create_tempdir().full_path
    with self.assertRaisesRegex(multimode_export.NotASavedModelError,
                                'holds no export'):
      layout.find_layout(empty)

  # Consumers of the serve and train parts.

  def test_serve_part_loads_without_tags(self):
    paths = per_mode.export_saved_models_per_mode(
        self.estimator, self.create_tempdir().full_path,
        receiver_fns.receiver_map())
    loaded = tf.saved_model.load(paths[ModeKeys.PREDICT])
    x = np.array([[1.0, 2.0, 3.0], [0.5, 0.0, -1.0]], np.float32)
    y = loaded.signatures['serving_default'](x=tf.constant(x))['y']
    self.assertAllClose(y, self._expected(x))

  def test_serve_part_in_saved_model_cli(self):
    paths = per_mode.export_saved_models_per_mode(
        self.estimator, self.create_tempdir().full_path,
        receiver_fns.receiver_map([ModeKeys.PREDICT]))
    result = subprocess.run(
        [sys.executable, '-m', 'tensorflow.python.tools.saved_model_cli',
         'show', '--all', '--dir', paths[ModeKeys.PREDICT]],
        capture_output=True, text=True, timeout=120,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'), check=False)
    self.assertEqual(result.returncode, 0, result.stderr[-2000:])
    self.assertIn("MetaGraphDef with tag-set: 'serve'", result.stdout)
    self.assertIn("signature_def['serving_default']", result.stdout)
    self.assertEqual(result.stdout.count('MetaGraphDef with tag-set'), 1)

  def test_train_part_trains_from_tf1_and_tf2(self):
    paths = per_mode.export_saved_models_per_mode(
        self.estimator, self.create_tempdir().full_path,
        receiver_fns.receiver_map([ModeKeys.TRAIN]))
    for losses in (running.train_steps(paths[ModeKeys.TRAIN], steps=10),
                   running.tf2_train_steps(paths[ModeKeys.TRAIN], steps=10)):
      self.assertLess(losses[-1], 0.7 * losses[0])

  def test_mixin_method(self):
    est = models.train_custom(self.create_tempdir().full_path, steps=2,
                              estimator_cls=models.MixinEstimator)
    paths = est.export_saved_models_per_mode(
        self.create_tempdir().full_path,
        receiver_fns.receiver_map([ModeKeys.PREDICT]))
    self.assertEqual(running.meta_graph_tags(paths[ModeKeys.PREDICT]),
                     [['serve']])
    added = {n for n in vars(multimode_export.MultiModeExportMixin)
             if not n.startswith('__')}
    self.assertIn('export_saved_models_per_mode', added)
    self.assertEmpty(added & set(dir(tf.estimator.Estimator)))

  # Export options.

  @parameterized.named_parameters(('shared', layout.SHARED),
                                  ('per_mode', layout.PER_MODE))
  def test_custom_tags(self, kind):
    tags = {ModeKeys.PREDICT: ['serve', 'gpu'],
            ModeKeys.TRAIN: ['train', 'custom']}
    base = self.create_tempdir().full_path
    x = np.array([[1.0, -1.0, 2.0]], np.float32)
    if kind == layout.SHARED:
      path = export.export_all_saved_models(
          self.estimator, base, receiver_fns.receiver_map(), tags=tags)
      self.assertEqual(running.meta_graph_tags(path),
                       [['custom', 'train'], ['eval'], ['gpu', 'serve']])
      serve = train = path
    else:
      paths = per_mode.export_saved_models_per_mode(
          self.estimator, base, receiver_fns.receiver_map(), tags=tags)
      serve, train = paths[ModeKeys.PREDICT], paths[ModeKeys.TRAIN]
      self.assertEqual(running.meta_graph_tags(serve), [['gpu', 'serve']])
      self.assertEqual(running.meta_graph_tags(paths[ModeKeys.EVAL]),
                       [['eval']])
      loaded = tf.saved_model.load(serve)  # single graph: no tags needed
      self.assertAllClose(loaded.signatures['serving_default'](
          x=tf.constant(x))['y'], self._expected(x))
    self.assertAllClose(_serve(serve, x, tags=('serve', 'gpu')),
                        self._expected(x))
    with self.assertRaises(RuntimeError):
      running.tf1_load(serve, ['serve'])  # the plain tag set is not there
    losses = running.train_steps(train, steps=5, tags=('train', 'custom'))
    self.assertLess(losses[-1], losses[0])

  def test_tags_must_stay_distinct(self):
    with self.assertRaisesRegex(ValueError, 'distinct tag set'):
      per_mode.export_saved_models_per_mode(
          self.estimator, self.create_tempdir().full_path,
          receiver_fns.receiver_map(), tags={ModeKeys.EVAL: ['serve']})

  @parameterized.named_parameters(('shared', layout.SHARED),
                                  ('per_mode', layout.PER_MODE))
  def test_clear_devices(self, kind):
    est = models.train_pinned(self.create_tempdir().full_path,
                              '/device:GPU:0')
    serve_dirs = {}
    for clear in (False, True):
      base = self.create_tempdir().full_path
      if kind == layout.SHARED:
        serve_dirs[clear] = export.export_all_saved_models(
            est, base, receiver_fns.receiver_map(), clear_devices=clear)
      else:
        serve_dirs[clear] = per_mode.export_saved_models_per_mode(
            est, base, receiver_fns.receiver_map(), clear_devices=clear)[
                ModeKeys.PREDICT]
    # Default: placements kept, as the stock export does.
    stock = assertions.stock_export(est, self.create_tempdir().full_path)
    self.assertIn('/device:GPU:0', running.graph_devices(stock))
    self.assertIn('/device:GPU:0', running.graph_devices(serve_dirs[False]))
    self.assertEqual(running.graph_devices(serve_dirs[True]), [''])

    # A consumer that does not soft-place, on this CPU-only host: only the
    # cleared export loads.
    x = np.array([[1.0, 2.0, 3.0]], np.float32)
    previous = tf.config.get_soft_device_placement()
    tf.config.set_soft_device_placement(False)
    self.addCleanup(tf.config.set_soft_device_placement, previous)
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, 'GPU'):
      _serve(serve_dirs[False], x)
    values = assertions.checkpoint_values(tf.train.latest_checkpoint(
        est.model_dir))
    self.assertAllClose(_serve(serve_dirs[True], x),
                        x @ values['w'] + values['b'])
    if kind == layout.PER_MODE:
      loaded = tf.saved_model.load(serve_dirs[True])
      self.assertAllClose(
          loaded.signatures['serving_default'](x=tf.constant(x))['y'],
          x @ values['w'] + values['b'])

  # export_dir= and overwrite=.

  @parameterized.named_parameters(('shared', layout.SHARED),
                                  ('per_mode', layout.PER_MODE))
  def test_export_dir_refuses_non_empty_target(self, kind):
    target = self.create_tempdir()
    target.create_file('keep.txt', 'mine')
    fn = (export.export_all_saved_models if kind == layout.SHARED else
          per_mode.export_saved_models_per_mode)
    with self.assertRaisesRegex(multimode_export.ExportDirError,
                                f'{target.full_path}.*overwrite=True') as cm:
      fn(self.estimator, None, receiver_fns.receiver_map(),
         export_dir=target.full_path)
    self.assertEqual(cm.exception.path, target.full_path)
    self.assertEqual(os.listdir(target.full_path), ['keep.txt'])
    # Not even overwrite=True replaces something that is not an export.
    with self.assertRaisesRegex(multimode_export.ExportDirError,
                                'is not an export'):
      fn(self.estimator, None, receiver_fns.receiver_map(),
         export_dir=target.full_path, overwrite=True)
    self.assertEqual(os.listdir(target.full_path), ['keep.txt'])

  def test_export_dir_argument_errors(self):
    parent = self.create_tempdir()
    afile = parent.create_file('file').full_path
    with self.assertRaisesRegex(multimode_export.ExportDirError,
                                'expected a directory, got the file'):
      per_mode.export_saved_models_per_mode(
          self.estimator, None, receiver_fns.receiver_map(), export_dir=afile)
    with self.assertRaisesRegex(ValueError, 'export_dir_base: expected None'):
      per_mode.export_saved_models_per_mode(
          self.estimator, parent.full_path, receiver_fns.receiver_map(),
          export_dir=os.path.join(parent.full_path, 'x'))

  @parameterized.named_parameters(('exchange', True), ('rename_aside', False))
  def test_overwrite_replaces_only_the_target(self, exchange):
    parent = self.create_tempdir()
    sibling = parent.create_file('sibling.txt', 'untouched').full_path
    target = os.path.join(parent.full_path, 'model')
    empty = os.path.join(parent.full_path, 'empty')
    os.mkdir(empty)  # an existing empty directory needs no overwrite
    path = export.export_all_saved_models(
        self.estimator, None, receiver_fns.receiver_map(), export_dir=empty)
    self.assertEqual(path, empty)
    self.assertEqual(layout.find_layout(empty).kind, layout.SHARED)

    export.export_all_saved_models(self.estimator, None,
                                   receiver_fns.receiver_map(), export_dir=target)
    self.assertEqual(layout.find_layout(target).kind, layout.SHARED)
    with mock.patch.object(
        target_dir, '_exchange',
        wraps=target_dir._exchange if exchange else (lambda a, b: False)):
      paths = per_mode.export_saved_models_per_mode(
          self.estimator, None, receiver_fns.receiver_map(), export_dir=target,
          overwrite=True)
    self.assertEqual(paths, {m: os.path.join(target, layout.MODE_DIRS[m])
                             for m in ALL_MODES})
    self.assertCountEqual(os.listdir(target), ['train', 'eval', 'serve'])
    found = layout.find_layout(target)
    self.assertEqual((found.kind, found.versions), (layout.PER_MODE, ()))
    self.assertEqual(found.saved_model_dirs(), paths)
    self.assertEqual(set(assertions.saved_variables(paths[ModeKeys.PREDICT])),
                     MODEL_VARIABLES)
    # Nothing else in the parent was touched, nothing was left behind.
    self.assertCountEqual(os.listdir(parent.full_path),
                          ['model', 'empty', 'sibling.txt'])
    with open(sibling) as f:
      self.assertEqual(f.read(), 'untouched')

  def test_failed_replace_keeps_the_old_export(self):
    target = os.path.join(self.create_tempdir().full_path, 'model')
    old = export.export_all_saved_models(
        self.estimator, None, receiver_fns.receiver_map([ModeKeys.PREDICT]),
        export_dir=target)
    real_rename = os.rename

    def failing_rename(src, dst):
      if dst == target and 'replaced' not in src:
        raise OSError(28, 'No space left on device (injected)')
      return real_rename(src, dst)
    with mock.patch.object(target_dir, '_exchange', lambda a, b: False), \
         mock.patch('os.rename', failing_rename):
      with self.assertRaisesRegex(multimode_export.PublishError, 'injected'):
        per_mode.export_saved_models_per_mode(
            self.estimator, None, receiver_fns.receiver_map(), export_dir=target,
            overwrite=True)
    self.assertEqual(layout.find_layout(target).kind, layout.SHARED)
    self.assertEqual(running.meta_graph_tags(old), [['serve']])
    self.assertEqual(os.listdir(os.path.dirname(target)), ['model'])

  def test_ram_filesystem(self):
    base = f'ram://per_mode_test/{self.id()}'
    paths = per_mode.export_saved_models_per_mode(
        self.estimator, base + '/base', receiver_fns.receiver_map())
    self.assertLen({p.rsplit('/', 1)[1] for p in paths.values()}, 1)
    self.assertEqual(layout.find_layout(base + '/base').saved_model_dirs(),
                     paths)
    serve = checkpoint_lib.read(
        paths[ModeKeys.PREDICT] + '/variables/variables')
    self.assertEqual(set(serve.variables), MODEL_VARIABLES)

    target = base + '/fixed'
    export.export_all_saved_models(self.estimator, None,
                                   receiver_fns.receiver_map(), export_dir=target)
    paths = per_mode.export_saved_models_per_mode(
        self.estimator, None, receiver_fns.receiver_map([ModeKeys.PREDICT]),
        export_dir=target, overwrite=True)
    self.assertEqual(tf.io.gfile.listdir(target), ['serve'])
    self.assertEqual(running.meta_graph_tags(paths[ModeKeys.PREDICT]),
                     [['serve']])
    self.assertCountEqual([n.rstrip('/') for n in tf.io.gfile.listdir(base)],
                          ['base', 'fixed'])

  # Failures publish nothing.

  def _assert_nothing_published(self, base):
    if not os.path.isdir(base):
      return
    for name in os.listdir(base):
      self.assertIn(name, layout.MODE_DIRS.values())
      self.assertEmpty(os.listdir(os.path.join(base, name)))

  def test_write_failure_of_one_mode_publishes_nothing(self):
    base = os.path.join(self.create_tempdir().full_path, 'base')
    real_write = saved_model_writer.write_saved_model
    calls = []

    def write_then_fail(path, *args, **kwargs):
      calls.append(path)
      if len(calls) == 3:
        raise OSError(5, 'Input/output error (injected)')
      return real_write(path, *args, **kwargs)
    with mock.patch.object(saved_model_writer, 'write_saved_model',
                           write_then_fail):
      with self.assertRaisesRegex(multimode_export.PublishError, 'injected'):
        per_mode.export_saved_models_per_mode(self.estimator, base,
                                              receiver_fns.receiver_map())
    self.assertLen(calls, 3)
    self._assert_nothing_published(base)

  def test_publish_failure_rolls_back_the_group(self):
    base = self.create_tempdir().full_path
    first = per_mode.export_saved_models_per_mode(
        self.estimator, base, receiver_fns.receiver_map([ModeKeys.PREDICT]))
    real_rename = os.rename

    def fail_on_serve(src, dst):
      if f'{os.sep}serve{os.sep}' in str(dst):
        raise OSError(28, 'No space left on device (injected)')
      return real_rename(src, dst)
    with mock.patch('os.rename', fail_on_serve):
      with self.assertRaisesRegex(multimode_export.PublishError,
                                  'nothing published.*injected'):
        per_mode.export_saved_models_per_mode(self.estimator, base,
                                              receiver_fns.receiver_map())
    self.assertEqual(os.listdir(base), ['serve'])  # train/, eval/ removed
    self.assertEqual(layout.find_layout(base).saved_model_dirs(), first)

  def test_remote_publish_failure_moves_every_file_back(self):
    base = f'ram://per_mode_test/{self.id()}'
    real_rename = tf.io.gfile.rename
    moved = []

    def fail_on_serve_proto(src, dst, overwrite=False):
      if '/serve/' in dst and dst.endswith('/saved_model.pb'):
        raise tf.errors.UnavailableError(None, None, 'injected')
      moved.append(dst)
      return real_rename(src, dst, overwrite)
    with mock.patch.object(tf.io.gfile, 'rename', fail_on_serve_proto):
      with self.assertRaisesRegex(multimode_export.PublishError, 'injected'):
        per_mode.export_saved_models_per_mode(self.estimator, base,
                                              receiver_fns.receiver_map())
    # The serve proto goes last: everything else had been published...
    published = [m for m in moved if publish.STAGING_PREFIX not in m]
    self.assertLen([m for m in published if m.endswith('/saved_model.pb')],
                   2)
    self.assertTrue(any('/serve/' in m and '/variables/' in m
                        for m in published))
    # ... and was moved back into staging, then removed.
    self.assertLen(moved, 2 * len(published))
    for name in layout.MODE_DIRS.values():
      self.assertEqual(layout.numbered_versions(f'{base}/{name}'), ())
    leftovers = [f for d, _, fs in tf.io.gfile.walk(base) for f in fs]
    self.assertEmpty(leftovers)

  def test_killed_exporter_group_is_unpublished_by_the_next_export(self):
    base = self.create_tempdir().full_path
    script = textwrap.dedent(f'''
        import os, sys
        sys.path.insert(0, {os.path.join(REPO_ROOT, 'tests')!r})
        sys.path.insert(0, {REPO_ROOT!r})
        import tensorflow as tf
        from testing import models, receiver_fns
        from multimode_export import _per_mode as per_mode
        real_rename = os.rename
        def die_on_eval(src, dst):
          if '/eval/' in str(dst):
            os._exit(9)  # killed between two renames of the group
          return real_rename(src, dst)
        os.rename = die_on_eval
        est = tf.estimator.Estimator(models.linear_model_fn,
                                     model_dir={self.estimator.model_dir!r},
                                     params={{}})
        per_mode.export_saved_models_per_mode(est, {base!r},
                                              receiver_fns.receiver_map())
        ''')
    result = subprocess.run([sys.executable, '-c', script], timeout=300,
                            capture_output=True, text=True, check=False,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))
    self.assertEqual(result.returncode, 9, result.stderr[-2000:])
    orphan = layout.find_layout(base).saved_model_dirs()
    self.assertEqual(list(orphan), [ModeKeys.TRAIN])  # half a group visible

    # The dead exporter's staging directory is unlocked: removed at once.
    paths = per_mode.export_saved_models_per_mode(
        self.estimator, base, receiver_fns.receiver_map([ModeKeys.PREDICT]))
    self.assertFalse(os.path.exists(orphan[ModeKeys.TRAIN]))
    found = layout.find_layout(base)
    self.assertEqual(found.saved_model_dirs(), paths)
    self.assertLen(found.versions, 1)
    self.assertEqual([n for n in os.listdir(base) if n.startswith('.')], [])


if __name__ == '__main__':
  tf.test.main()
