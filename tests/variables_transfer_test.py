"""Every way `variables/` is produced, checked by loading every tag set.

Real estimators are trained for a few steps, exported, and each exported tag
set is loaded in a fresh graph; its variables must equal the checkpoint's.
"""

import glob
import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf
from absl import flags
from absl import logging
from absl.testing import absltest
from absl.testing import parameterized

import multimode_export
from multimode_export import _export as export_lib
from multimode_export import _options as options_lib
from multimode_export import _plan as plan_lib
from multimode_export.graph import _saver_spec as saver_spec
from multimode_export.variables import _bundle_index as bundle_index
from multimode_export.variables import _transfer as variables_transfer
from testing import assertions
from testing import datasets
from testing import models
from testing import receiver_fns
from testing import running
# Under pytest absl's flags are never parsed; create_tempdir() needs them.
if not flags.FLAGS.is_parsed():
  flags.FLAGS.mark_as_parsed()

ModeKeys = tf.estimator.ModeKeys
ALL_MODES = (ModeKeys.TRAIN, ModeKeys.EVAL, ModeKeys.PREDICT)


def _export(estimator, base, modes=ALL_MODES, **kwargs):
  return multimode_export.export_all_saved_models(
      estimator, base, receiver_fns.receiver_map(modes), **kwargs)


def _export_with_options(estimator, base, modes, **options):
  """Export through plan/write, for options the facade does not expose."""
  options = options_lib.ExportOptions(**options)
  plan = plan_lib.plan_export(estimator, base,
                              receiver_fns.receiver_map(modes), options)
  return export_lib.write_plan(plan, options)


def _checkpoint_files(prefix):
  return sorted(glob.glob(prefix + '.index') + glob.glob(prefix + '.data-*'))


def _variables_files(export_dir):
  return sorted(glob.glob(os.path.join(export_dir, 'variables', 'variables.*')))


def _supports_reflink(directory):
  src = os.path.join(directory, 'reflink-probe-src')
  dst = os.path.join(directory, 'reflink-probe-dst')
  with open(src, 'wb') as f:
    f.write(b'x')
  try:
    variables_transfer._reflink(src, dst)  # pylint: disable=protected-access
    return True
  except OSError:
    return False
  finally:
    for path in (src, dst):
      if os.path.exists(path):
        os.remove(path)


def _transfer_logs(test_case, fn):
  """Runs fn() and returns (its result, the absl INFO messages it logged)."""
  old = logging.get_verbosity()
  logging.set_verbosity(logging.INFO)
  try:
    with test_case.assertLogs('absl', level='INFO') as logs:
      result = fn()
  finally:
    logging.set_verbosity(old)
  return result, [r.getMessage() for r in logs.records]


def _method(messages):
  for message in messages:
    if message.startswith('variables/ written by '):
      return message.split()[3].rstrip(':')
  raise AssertionError(f'no "variables/ written by" log among {messages}')


class _TrainedModels(models.ClassRootMixin, parameterized.TestCase):
  """Trains the shared estimators once per class."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.estimators = {}
    for partitions in (1, 3):
      est = models.train_custom(
          os.path.join(cls.root, f'p{partitions}'), steps=3,
          partitions=partitions)
      cls.estimators[partitions] = est

  def assert_every_tag_set_matches(self, export_dir, expected, modes=ALL_MODES):
    """Loads each mode's tag set; its variables must equal `expected`."""
    for mode in modes:
      loaded = running.loaded_variables(export_dir, receiver_fns.TAGS[mode])
      self.assertNotEmpty(loaded)
      for name, value in loaded.items():
        self.assertIn(name, expected, f'{mode}: {name} not in the checkpoint')
        np.testing.assert_array_equal(value, expected[name],
                                      err_msg=f'{mode}: {name}')


class LinkTest(_TrainedModels):

  @parameterized.named_parameters(('plain', 1), ('partitioned', 3))
  def test_three_modes_link_checkpoint_files(self, partitions):
    est = self.estimators[partitions]
    prefix = est.latest_checkpoint()
    export_dir, logs = _transfer_logs(
        self, lambda: _export(est, self.create_tempdir().full_path))

    sources = _checkpoint_files(prefix)
    targets = _variables_files(export_dir)
    self.assertEqual([os.path.basename(p)[len('model.ckpt-3'):] for p in
                      sources],
                     [os.path.basename(p)[len('variables'):] for p in targets])
    if _supports_reflink(os.path.dirname(prefix)):
      self.assertEqual(_method(logs), 'reflink')
    else:
      self.assertEqual(_method(logs), 'hardlink')
      for src, dst in zip(sources, targets):
        if src.endswith('.index'):  # rewritten in place by a later save
          self.assertNotEqual(os.stat(src).st_ino, os.stat(dst).st_ino)
          self.assertEqual(os.stat(dst).st_nlink, 1)
        else:
          self.assertEqual(os.stat(src).st_ino, os.stat(dst).st_ino)
          self.assertGreaterEqual(os.stat(dst).st_nlink, 2)
    expected = assertions.checkpoint_values(prefix)
    self.assertSameElements(assertions.saved_variables(export_dir), expected)
    self.assert_every_tag_set_matches(export_dir, expected)

  def test_export_survives_checkpoint_deletion(self):
    est = models.train_custom(self.create_tempdir().full_path, steps=2)
    prefix = est.latest_checkpoint()
    expected = assertions.checkpoint_values(prefix)
    export_dir = _export(est, self.create_tempdir().full_path)
    for path in _checkpoint_files(prefix):
      os.remove(path)
    self.assertEmpty(_checkpoint_files(prefix))
    for path in _variables_files(export_dir):
      self.assertEqual(os.stat(path).st_nlink, 1)
    self.assert_every_tag_set_matches(export_dir, expected)

  @parameterized.named_parameters(('sharded_saver', True),
                                  ('plain_saver', False))
  def test_later_saves_do_not_change_the_export(self, sharded):
    est = models.train_custom(self.create_tempdir().full_path, steps=2)
    prefix = est.latest_checkpoint()
    expected = assertions.checkpoint_values(prefix)
    export_dir = _export(est, self.create_tempdir().full_path)

    # More training writes new checkpoints next to the linked one.
    est.train(datasets.input_fn(), steps=3)
    self.assertNotEqual(est.latest_checkpoint(), prefix)
    # A save to the very prefix that was linked. Data shards are written
    # under a temp name and renamed, so a linked one keeps the old values;
    # a sharded Saver (the Estimator's) rewrites the index in place.
    graph = tf.Graph()
    with graph.as_default():
      variables = {name: tf.compat.v1.Variable(value + 1, name=name)
                   for name, value in expected.items()}
      saver = tf.compat.v1.train.Saver(variables, sharded=sharded)
      with tf.compat.v1.Session(graph=graph) as session:
        session.run(tf.compat.v1.global_variables_initializer())
        saver.save(session, prefix, write_meta_graph=False, write_state=False)
    np.testing.assert_array_equal(assertions.checkpoint_values(prefix)['b'],
                                  expected['b'] + 1)

    saved = assertions.saved_variables(export_dir)
    for name, value in expected.items():
      np.testing.assert_array_equal(saved[name], value, err_msg=name)
    self.assert_every_tag_set_matches(export_dir, expected)


class CopyTest(_TrainedModels):

  def test_no_links_copies_and_logs_progress(self):
    est = self.estimators[1]
    prefix = est.latest_checkpoint()
    export_dir, logs = _transfer_logs(
        self, lambda: _export(est, self.create_tempdir().full_path,
                              allow_links=False))
    self.assertEqual(_method(logs), 'copy')
    total = sum(os.path.getsize(p) for p in _checkpoint_files(prefix))
    self.assertTrue(
        any(m.startswith(f'copying checkpoint {prefix}: {total} / {total} '
                         'bytes (100%)') for m in logs), logs)
    for src, dst in zip(_checkpoint_files(prefix), _variables_files(export_dir)):
      self.assertNotEqual(os.stat(src).st_ino, os.stat(dst).st_ino)
      self.assertEqual(os.stat(dst).st_nlink, 1)
      with open(src, 'rb') as a, open(dst, 'rb') as b:
        self.assertEqual(a.read(), b.read())
    self.assert_every_tag_set_matches(export_dir,
                                      assertions.checkpoint_values(prefix))

  def test_other_local_filesystem_copies(self):
    shm = '/dev/shm'
    if not os.path.isdir(shm) or not os.access(shm, os.W_OK):
      self.skipTest('no writable /dev/shm')
    est = self.estimators[1]
    prefix = est.latest_checkpoint()
    if os.stat(shm).st_dev == os.stat(prefix + '.index').st_dev:
      self.skipTest('/dev/shm is on the checkpoint filesystem')
    base = tempfile.mkdtemp(dir=shm, prefix='variables_transfer_test')
    self.addCleanup(shutil.rmtree, base)
    export_dir, logs = _transfer_logs(self, lambda: _export(est, base))
    self.assertEqual(_method(logs), 'copy')
    self.assert_every_tag_set_matches(export_dir,
                                      assertions.checkpoint_values(prefix))

  @parameterized.named_parameters(('three_modes', ALL_MODES),
                                  ('predict_only', (ModeKeys.PREDICT,)))
  def test_ram_filesystem(self, modes):
    est = self.estimators[3]
    prefix = est.latest_checkpoint()
    base = f'ram://variables_transfer_test/{self.id()}'
    export_dir, logs = _transfer_logs(self, lambda: _export(est, base, modes))
    self.addCleanup(tf.io.gfile.rmtree, base)
    self.assertTrue(export_dir.startswith('ram://'), export_dir)
    self.assertEqual(_method(logs),
                     'copy' if len(modes) == 3 else 'extent_copy')

    # Load straight from ram:// ...
    loaded = tf.saved_model.load(export_dir, tags=['serve'])
    x = np.array([[1.0, 2.0, 3.0]], np.float32)
    served = loaded.signatures['serving_default'](x=tf.constant(x))['y']
    expected = assertions.checkpoint_values(prefix)
    np.testing.assert_allclose(served.numpy(),
                               x @ expected['w'] + expected['b'], rtol=1e-6)
    # ... and every tag set after a copy back to local disk.
    local = self.create_tempdir().full_path
    for directory, _, files in tf.io.gfile.walk(export_dir):
      target = os.path.join(local, directory[len(export_dir):].lstrip('/'))
      os.makedirs(target, exist_ok=True)
      for name in files:
        tf.io.gfile.copy(f'{directory.rstrip("/")}/{name}',
                         os.path.join(target, name))
    self.assert_every_tag_set_matches(local, expected, modes)


class SubsetTest(_TrainedModels):

  @parameterized.named_parameters(('plain', 1), ('partitioned', 3))
  def test_predict_only_skips_optimizer_slots(self, partitions):
    est = self.estimators[partitions]
    prefix = est.latest_checkpoint()
    export_dir, logs = _transfer_logs(
        self, lambda: _export(est, self.create_tempdir().full_path,
                              (ModeKeys.PREDICT,)))
    self.assertEqual(_method(logs), 'extent_copy')
    stock_dir = est.export_saved_model(self.create_tempdir().full_path,
                                       receiver_fns.serving_receiver_fn())
    stock = assertions.saved_variables(stock_dir.decode('utf-8'))
    ours = assertions.saved_variables(export_dir)
    self.assertSameElements(ours, stock)
    self.assertFalse([k for k in ours if 'Adam' in k or 'power' in k], ours)
    self.assertIn('Adam', ' '.join(assertions.checkpoint_values(prefix)))
    for name in stock:
      self.assertEqual(ours[name].dtype, stock[name].dtype)
      self.assertEqual(ours[name].tobytes(), stock[name].tobytes(), name)
    # The index too: every entry's dtype, shape, slices, size and crc32c.
    _, our_entries = bundle_index.read(
        os.path.join(export_dir, 'variables', 'variables.index'))
    _, stock_entries = bundle_index.read(
        os.path.join(stock_dir.decode('utf-8'), 'variables', 'variables.index'))
    self.assertSameElements(our_entries, stock_entries)
    for key, entry in stock_entries.items():
      for field in ('dtype', 'shape', 'slices', 'size', 'crc32c'):
        self.assertEqual(getattr(our_entries[key], field), getattr(entry, field),
                         f'{key!r}: {field}')
    self.assert_every_tag_set_matches(export_dir,
                                      assertions.checkpoint_values(prefix),
                                      (ModeKeys.PREDICT,))

  def test_repartitioned_model_is_streamed_in_small_chunks(self):
    # The graph reads `w` as 3 slices; the checkpoint holds it whole: no
    # extent to copy, so the subset is read and written through TF ops.
    est = self.estimators[3]
    prefix = self.estimators[1].latest_checkpoint()
    whole = _export(est, self.create_tempdir().full_path, (ModeKeys.PREDICT,),
                    checkpoint_path=prefix)
    chunked, logs = _transfer_logs(
        self, lambda: _export_with_options(
            est, self.create_tempdir().full_path, (ModeKeys.PREDICT,),
            checkpoint_path=prefix, chunk_bytes=8))
    self.assertEqual(_method(logs), 'stream')
    self.assertTrue(any(m.startswith("extent copy cannot write this subset "
                                     "('w' is read as slices") for m in logs),
                    logs)
    # w (3 one-float slices), b (1 float), global_step (int64).
    chunks = [m for m in logs if m.startswith('streaming 24 bytes')]
    self.assertLen(chunks, 1, logs)
    self.assertRegex(chunks[0], r'in [3-5] chunk\(s\) of at most 8 bytes')
    self.assertEqual(
        {k: v.tobytes() for k, v in assertions.saved_variables(chunked).items()},
        {k: v.tobytes() for k, v in assertions.saved_variables(whole).items()})
    self.assertFalse(tf.io.gfile.exists(
        os.path.join(chunked, 'variables', '.parts')))
    self.assert_every_tag_set_matches(chunked,
                                      assertions.checkpoint_values(prefix),
                                      (ModeKeys.PREDICT,))


class SessionFallbackTest(_TrainedModels):

  @parameterized.named_parameters(
      ('v1_checkpoint', 'v1', 'is not in V2 format'),
      ('unreadable_saver', 'opaque_names',
       'saver of the train, eval, infer graph'))
  def test_session_fallback(self, saver, reason):
    est = models.train_custom(self.create_tempdir().full_path, steps=2,
                              saver=saver)
    prefix = est.latest_checkpoint()
    self.assertEqual(os.path.exists(prefix + '.index'), saver != 'v1')
    export_dir, logs = _transfer_logs(
        self, lambda: _export(est, self.create_tempdir().full_path))
    self.assertEqual(_method(logs), 'session')
    self.assertTrue(any(reason in m for m in logs), logs)
    expected = assertions.checkpoint_values(prefix)
    self.assertSameElements(assertions.saved_variables(export_dir), expected)
    self.assert_every_tag_set_matches(export_dir, expected)


class PredictOnlyVariableTest(_TrainedModels):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.estimator = models.train_custom(
        os.path.join(cls.root, 'predict-only-variable'), steps=2,
        predict_only_variable=True)

  def _checkpoint_with_scale(self, scale):
    values = assertions.checkpoint_values(self.estimator.latest_checkpoint())
    values['predict_scale'] = np.array(scale, np.float32)
    return datasets.write_checkpoint(
        os.path.join(self.create_tempdir().full_path, 'model.ckpt-2'), values)

  @parameterized.named_parameters(('link', ALL_MODES, 'hardlink'),
                                  ('subset', (ModeKeys.PREDICT,), 'extent_copy'))
  def test_included_when_the_checkpoint_has_it(self, modes, method):
    prefix = self._checkpoint_with_scale(2.0)
    export_dir, logs = _transfer_logs(
        self, lambda: _export(self.estimator, self.create_tempdir().full_path,
                              modes, checkpoint_path=prefix))
    self.assertEqual(_method(logs), method)
    expected = assertions.checkpoint_values(prefix)
    self.assertIn('predict_scale', assertions.saved_variables(export_dir))
    self.assert_every_tag_set_matches(export_dir, expected, modes)
    _, session, meta = running.tf1_load(export_dir, ['serve'])
    x = np.array([[1.0, 2.0, 3.0]], np.float32)
    served = running.run_signature(session, meta, 'serving_default', {'x': x})
    np.testing.assert_allclose(served['y'],
                               2.0 * (x @ expected['w'] + expected['b']),
                               rtol=1e-6)

  @parameterized.named_parameters(('three_modes', ALL_MODES),
                                  ('predict_only', (ModeKeys.PREDICT,)))
  def test_missing_raises_before_writing(self, modes):
    base = os.path.join(self.create_tempdir().full_path, 'export')
    prefix = self.estimator.latest_checkpoint()
    with self.assertRaisesRegex(multimode_export.MissingVariablesError,
                                r"Mode 'infer' .*checkpoint .*model\.ckpt-2.*"
                                r'predict_scale') as raised:
      _export(self.estimator, base, modes)
    self.assertEqual(raised.exception.mode, ModeKeys.PREDICT)
    self.assertEqual(raised.exception.names, ('predict_scale',))
    self.assertEqual(raised.exception.checkpoint_path, prefix)
    self.assertFalse(os.path.exists(base))


class MismatchTest(_TrainedModels):

  @parameterized.named_parameters(
      ('shape', np.zeros([4, 1], np.float32), r'float32\[3, 1\].*float32\[4, 1\]'),
      ('dtype', np.zeros([3, 1], np.float64), r'float32\[3, 1\].*float64\[3, 1\]'))
  def test_wrong_variable_raises_before_writing(self, bad_w, pattern):
    values = assertions.checkpoint_values(self.estimators[1].latest_checkpoint())
    values['w'] = bad_w
    prefix = datasets.write_checkpoint(
        os.path.join(self.create_tempdir().full_path, 'model.ckpt-3'), values)
    base = os.path.join(self.create_tempdir().full_path, 'export')
    with self.assertRaisesRegex(multimode_export.VariableMismatchError,
                                r"'w' of mode 'train'.*" + pattern) as raised:
      _export(self.estimators[1], base, checkpoint_path=prefix)
    self.assertEqual(raised.exception.name, 'w')
    self.assertEqual(raised.exception.actual,
                     (bad_w.dtype.name, tuple(bad_w.shape)))
    self.assertFalse(os.path.exists(base))


class ChunkPlanTest(absltest.TestCase):

  def test_slice_sizes(self):
    spec = saver_spec.VariableSpec('e', 'float32', (4, 3),
                                   ('4 3 0,1:-', '4 3 1,3:0,3'))
    entry_bytes = variables_transfer._entry_bytes  # pylint: disable=protected-access
    self.assertEqual(entry_bytes(spec, '', (4, 3)), 48)
    self.assertEqual(entry_bytes(spec, '4 3 0,1:-', (4, 3)), 12)
    self.assertEqual(entry_bytes(spec, '4 3 1,3:0,3', (4, 3)), 36)


if __name__ == '__main__':
  absltest.main()
