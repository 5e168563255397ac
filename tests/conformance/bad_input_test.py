"""Every bad input of docs/errors.md: its exception, its message, no trace.

One test per row of the table. Each asserts the exception class, that the
message names the offending value, and that `export_dir_base` is exactly as
before: an existing base (holding an earlier export) keeps every byte, and a
base that did not exist still does not, on local disk and on `ram://`.
"""

# bazel-data: //docs:errors.md

import os
import shutil
import subprocess
import uuid

from absl.testing import absltest
from absl.testing import parameterized
import tensorflow as tf

import multimode_export
from multimode_export import errors
from testing import datasets
from testing import faults
from testing import models
from testing import receiver_fns
from tools import doc_generated

ModeKeys = tf.estimator.ModeKeys
DOC = 'docs/errors.md'  # a table row per test: exception and message


def _remove(path: str) -> None:
  if tf.io.gfile.exists(path):
    tf.io.gfile.rmtree(path)


def _serving_receiver_for_train():
  return receiver_fns.serving_receiver_fn()()


def _raising_receiver():
  raise RuntimeError('feature spec unavailable')


def _dict_receiver():
  return {'x': tf.zeros([1, datasets.FEATURE_DIM])}


def _raising_model_fn(features, labels, mode, params):
  if mode == ModeKeys.EVAL:
    raise KeyError('eval_only_feature')
  return models.linear_model_fn(features, labels, mode, params)


def _multi_head_model_fn(features, labels, mode, params):
  """PREDICT has two heads and none is 'serving_default'."""
  spec = models.linear_model_fn(features, labels, mode, params)
  if mode != ModeKeys.PREDICT:
    return spec
  predictions = spec.predictions['y']
  return tf.estimator.EstimatorSpec(mode, predictions=spec.predictions,
                                    export_outputs={
                                        'head_a': tf.estimator.export
                                                  .PredictOutput(
                                                      {'a': predictions}),
                                        'head_b': tf.estimator.export
                                                  .RegressionOutput(
                                                      predictions),
                                    })


def _mismatched_model_fn(features, labels, mode, params):
  """`w` with the shape/dtype of params, not the trained [3, 1] float32."""
  del labels
  w = tf.compat.v1.get_variable('w', shape=params['w_shape'],
                                dtype=params['w_dtype'],
                                initializer=tf.compat.v1.zeros_initializer())
  b = tf.compat.v1.get_variable('b', shape=[1],
                                initializer=tf.compat.v1.zeros_initializer())
  y = tf.matmul(features['x'], tf.cast(w, tf.float32))[:, :1] + b
  return tf.estimator.EstimatorSpec(mode, predictions={'y': y})


class BadInputTest(models.ClassRootMixin, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.model_dir = os.path.join(cls.root, 'model')
    cls.estimator = models.train_custom(cls.model_dir, steps=3)
    cls.prefix = os.path.basename(tf.train.latest_checkpoint(cls.model_dir))
    cls.source = os.path.join(cls.root, 'notes.txt')
    with open(cls.source, 'w') as f:
      f.write('notes')

  # --- helpers --------------------------------------------------------------

  def _bases(self):
    """An existing base with an earlier (fake) export, and missing bases."""
    root = self.create_tempdir().full_path
    existing = os.path.join(root, 'existing')
    os.makedirs(os.path.join(existing, '1000', 'variables'))
    with open(os.path.join(existing, '1000', 'saved_model.pb'), 'wb') as f:
      f.write(b'an earlier export')
    ram = f'ram://bad-input-{uuid.uuid4().hex}/export'
    self.addCleanup(_remove, ram)
    return [existing, os.path.join(root, 'missing', 'export'), ram]

  def assertRejected(self, run, error_class, *fragments, bases=None):
    """`run(base)` raises `error_class` naming `fragments`, writes nothing."""
    for base in bases or self._bases():
      parent = base.rsplit('/', 1)[0]
      before = faults.snapshot(parent)
      with self.assertRaises(error_class, msg=base) as raised:
        run(base)
      for fragment in fragments:
        self.assertIn(fragment, str(raised.exception))
      self.assertEqual(faults.snapshot(parent), before, base)
      if base == (bases or self._bases())[0]:
        self._assert_documented(raised.exception)

  def _assert_documented(self, error: Exception) -> None:
    """docs/errors.md's row of this test shows the exception (and message).

    The message is checked where the row names this test alone: a row for a
    family of tests (`test_x_{a,b}`) shows the message of one of them.
    """
    rows = doc_generated.rows_naming_test(DOC, self._testMethodName)
    self.assertLen(rows, 1, f'{DOC}: rows naming {self._testMethodName}')
    [(row, alone)] = rows
    [exception] = [v for k, v in row.items() if k.startswith('Exception')]
    self.assertIn(f'`{type(error).__name__}`', exception)
    if alone:
      self.assertTrue(doc_generated.shows_message(row['Message'], str(error)),
                      f'{DOC} shows {row["Message"]}, the message is {error}')

  def _export(self, receivers=None, estimator=None, **kwargs):
    receivers = receiver_fns.receiver_map() if receivers is None else receivers
    return lambda base: multimode_export.export_all_saved_models(
        estimator or self.estimator, base, receivers, **kwargs)

  def _estimator(self, model_fn=models.linear_model_fn, model_dir=None,
                 **params):
    return tf.estimator.Estimator(
        model_fn, model_dir=model_dir or self.model_dir, params=params,
        config=tf.estimator.RunConfig(tf_random_seed=1))

  def _damaged_copy(self, damage) -> tf.estimator.Estimator:
    """An estimator over a copy of the trained model_dir, damaged."""
    model_dir = os.path.join(self.create_tempdir().full_path, 'model')
    shutil.copytree(self.model_dir, model_dir)
    damage(os.path.join(model_dir, self.prefix))
    return self._estimator(model_dir=model_dir)

  # --- receiver map ----------------------------------------------------------

  def test_unknown_mode_key_next_to_valid_ones(self):
    receivers = receiver_fns.receiver_map()
    receivers['serving'] = receiver_fns.serving_receiver_fn()
    self.assertRejected(self._export(receivers), errors.InvalidModeError,
                        "'serving'")

  def test_predict_key_gets_an_infer_hint(self):
    self.assertRejected(
        self._export({'predict': receiver_fns.serving_receiver_fn()}),
        errors.InvalidModeError, "'predict'", "'infer'")

  def test_predict_key_next_to_modekeys_predict(self):
    fn = receiver_fns.serving_receiver_fn()
    self.assertRejected(
        self._export({ModeKeys.PREDICT: fn, 'predict': fn}),
        errors.InvalidModeError, "'predict'", 'ModeKeys.PREDICT')

  def test_empty_receiver_map(self):
    self.assertRejected(self._export({}), ValueError,
                        'No valid modes for exporting found. Got dict_keys([]). ')

  def test_only_none_receivers(self):
    self.assertRejected(
        self._export({ModeKeys.EVAL: None, ModeKeys.PREDICT: None}),
        ValueError, ("No valid modes for exporting found. Got "
                         "dict_keys(['eval', 'infer']). "))

  def test_receiver_map_not_a_mapping(self):
    self.assertRejected(self._export([receiver_fns.serving_receiver_fn()]),
                        TypeError, 'list')

  @parameterized.named_parameters(('string', 'serving_fn', "'serving_fn'"),
                                  ('number', 3, '3'))
  def test_receiver_not_callable(self, receiver, shown):
    self.assertRejected(self._export({ModeKeys.PREDICT: receiver}),
                        errors.ReceiverError, shown, "'infer'")

  def test_receiver_raises(self):
    receivers = receiver_fns.receiver_map()
    receivers[ModeKeys.EVAL] = _raising_receiver
    self.assertRejected(self._export(receivers), errors.ReceiverError,
                        "'eval'", 'RuntimeError', 'feature spec unavailable')

  def test_receiver_returns_the_wrong_type(self):
    self.assertRejected(self._export({ModeKeys.PREDICT: _dict_receiver}),
                        errors.ReceiverError, "'infer'", 'got dict')

  @parameterized.named_parameters(('train', ModeKeys.TRAIN),
                                  ('eval', ModeKeys.EVAL))
  def test_serving_receiver_for_a_mode_with_labels(self, mode):
    receivers = receiver_fns.receiver_map()
    receivers[mode] = _serving_receiver_for_train
    self.assertRejected(self._export(receivers), errors.ReceiverError,
                        repr(mode), 'got ServingInputReceiver', 'no labels')

  # --- model_fn --------------------------------------------------------------

  def test_multi_head_predict_without_serving_default(self):
    estimator = self._estimator(_multi_head_model_fn)
    self.assertRejected(self._export(estimator=estimator),
                        errors.ModelFnError, "'infer'", 'export_outputs')

  def test_model_fn_raises(self):
    estimator = self._estimator(_raising_model_fn)
    self.assertRejected(self._export(estimator=estimator),
                        errors.ModelFnError, "'eval'", 'KeyError',
                        'eval_only_feature')

  # --- checkpoint ------------------------------------------------------------

  def test_no_checkpoint_in_model_dir(self):
    model_dir = self.create_tempdir().full_path
    estimator = self._estimator(model_dir=model_dir)
    self.assertRejected(self._export(estimator=estimator),
                        errors.CheckpointNotFoundError, repr(model_dir))

  def test_checkpoint_path_that_does_not_exist(self):
    missing = os.path.join(self.model_dir, 'model.ckpt-999')
    self.assertRejected(self._export(checkpoint_path=missing),
                        errors.CheckpointNotFoundError, repr(missing))

  def _truncate(self, path, keep):
    with open(path, 'r+b') as f:
      f.truncate(keep(os.path.getsize(path)))

  def _flip_bytes(self, path, start, count):
    with open(path, 'r+b') as f:
      f.seek(start)
      data = f.read(count)
      f.seek(start)
      f.write(bytes(b ^ 0xff for b in data))

  @parameterized.named_parameters(
      ('truncated', lambda self, p: self._truncate(p + '.index',
                                                   lambda n: n // 2)),
      ('emptied', lambda self, p: self._truncate(p + '.index', lambda n: 0)),
      ('corrupted', lambda self, p: self._flip_bytes(p + '.index', 10, 8)),
  )
  def test_corrupt_index(self, damage):
    estimator = self._damaged_copy(lambda p: damage(self, p))
    self.assertRejected(self._export(estimator=estimator),
                        errors.CheckpointReadError, self.prefix)

  @parameterized.named_parameters(
      ('truncated', lambda n: n - 1),
      ('emptied', lambda n: 0),
  )
  def test_truncated_data_shard(self, keep):
    estimator = self._damaged_copy(lambda p: self._truncate(
        p + '.data-00000-of-00001', keep))
    self.assertRejected(self._export(estimator=estimator),
                        errors.CheckpointReadError,
                        self.prefix + '.data-00000-of-00001', 'truncated')

  def test_missing_data_shard(self):
    estimator = self._damaged_copy(
        lambda p: os.remove(p + '.data-00000-of-00001'))
    self.assertRejected(self._export(estimator=estimator),
                        errors.CheckpointReadError,
                        self.prefix + '.data-00000-of-00001', 'missing')

  def test_corrupted_data_bytes_when_streamed(self):
    # Same size, other bytes: only a tensor's crc32c can tell, checked when
    # the tensor is read. A graph that reads `w` in 3 slices from a
    # checkpoint that holds it whole is streamed (read) through TF ops; a
    # linking or extent-copying export does not read tensors (see
    # docs/errors.md: `verify` finds the damage there).
    damaged = self._damaged_copy(lambda p: self._flip_bytes(
        p + '.data-00000-of-00001', 0, 1 << 20))
    estimator = self._estimator(model_dir=damaged.model_dir, partitions=3)
    self.assertRejected(
        self._export(receiver_fns.receiver_map((ModeKeys.PREDICT,)),
                     estimator=estimator),
        errors.CheckpointReadError, self.prefix, 'Checksum does not match')

  @parameterized.named_parameters(
      ('shape', [datasets.FEATURE_DIM, 2], tf.float32, 'float32[3, 2]'),
      ('dtype', [datasets.FEATURE_DIM, 1], tf.float64, 'float64[3, 1]'),
  )
  def test_variable_with_wrong_shape_or_dtype(self, shape, dtype, expected):
    estimator = self._estimator(_mismatched_model_fn, w_shape=shape,
                                w_dtype=dtype)
    self.assertRejected(
        self._export(receiver_fns.receiver_map((ModeKeys.PREDICT,)),
                     estimator=estimator),
        errors.VariableMismatchError, "'w'", expected, 'float32[3, 1]')

  def test_variable_missing_from_checkpoint(self):
    estimator = self._estimator(predict_only_variable=True)
    self.assertRejected(self._export(estimator=estimator),
                        errors.MissingVariablesError, 'predict_scale',
                        "'infer'")

  # --- export_dir_base -------------------------------------------------------

  @parameterized.named_parameters(('local', 'local'), ('ram', 'ram'))
  def test_base_is_a_file(self, filesystem):
    if filesystem == 'local':
      base = os.path.join(self.create_tempdir().full_path, 'file')
    else:
      base = f'ram://bad-input-{uuid.uuid4().hex}/file'
      tf.io.gfile.makedirs(base.rsplit('/', 1)[0])
      self.addCleanup(_remove, base.rsplit('/', 1)[0])
    with tf.io.gfile.GFile(base, 'w') as f:
      f.write('not a directory')
    self.assertRejected(self._export(), errors.ExportDirError, repr(base),
                        bases=[base])

  def test_base_under_a_file(self):
    parent = os.path.join(self.create_tempdir().full_path, 'file')
    with open(parent, 'w') as f:
      f.write('not a directory')
    base = os.path.join(parent, 'export')
    self.assertRejected(self._export(), errors.ExportDirError, repr(base),
                        'not writable', bases=[base])

  def test_base_on_a_filesystem_without_room_for_it(self):
    base = '/proc/multimode-export-test/export'  # procfs: no mkdir, even root
    self.assertRejected(self._export(), errors.ExportDirError, repr(base),
                        'not writable', bases=[base])
    self.assertFalse(os.path.exists(base))

  def test_base_on_a_read_only_mount(self):
    mount = self.create_tempdir().full_path
    os.makedirs(os.path.join(mount, 'existing', '1000'))
    done = subprocess.run(['mount', '--bind', '-o', 'ro', mount, mount],
                          capture_output=True, check=False)
    if done.returncode:
      self.skipTest(f'cannot make a read-only bind mount: {done.stderr!r}')
    self.addCleanup(subprocess.run, ['umount', mount], check=False)
    for base in (os.path.join(mount, 'existing'),
                 os.path.join(mount, 'missing')):
      self.assertRejected(self._export(), errors.ExportDirError, repr(base),
                          'not writable', bases=[base])

  def test_base_in_a_read_only_directory(self):
    if os.geteuid() == 0:
      self.skipTest('root writes into mode 0o555 directories anyway; '
                    'test_base_on_a_read_only_mount covers root')
    parent = self.create_tempdir().full_path
    os.chmod(parent, 0o555)
    self.addCleanup(os.chmod, parent, 0o755)
    base = os.path.join(parent, 'export')
    self.assertRejected(self._export(), errors.ExportDirError, repr(base),
                        bases=[base])

  @parameterized.named_parameters(('empty', '', ValueError, "''"),
                                  ('number', 42, TypeError, 'int'))
  def test_base_not_a_path(self, base, error_class, shown):
    with self.assertRaisesRegex(error_class, shown):
      self._export()(base)

  # --- assets_extra ----------------------------------------------------------

  @parameterized.named_parameters(
      ('absolute', '/etc/evil.txt', 'relative path'),
      ('dotdot', '../../escape.txt', 'relative path'),
      ('dotdot_inside', 'notes/../../escape.txt', 'relative path'),
      ('url', 'gs://bucket/x.txt', 'relative path'),
      ('empty', '', 'relative path'),
      ('dot', '.', 'relative path'),
  )
  def test_assets_extra_destination_outside(self, destination, fragment):
    self.assertRejected(
        self._export(assets_extra={destination: self.source}),
        errors.AssetsExtraError, repr(destination), fragment)

  def test_assets_extra_missing_source(self):
    missing = os.path.join(self.root, 'no-such-file.txt')
    self.assertRejected(
        self._export(assets_extra={'notes.txt': missing}),
        errors.AssetsExtraError, repr(missing), 'not an existing file')

  def test_assets_extra_source_is_a_directory(self):
    self.assertRejected(
        self._export(assets_extra={'notes.txt': self.root}),
        errors.AssetsExtraError, repr(self.root), 'not an existing file')

  @parameterized.named_parameters(
      ('dot_segment', 'a/./notes.txt'),
      ('double_slash', 'a//notes.txt'),
      ('dotdot_back', 'a/b/../notes.txt'),
      ('trailing_slash', 'a/notes.txt/'),
  )
  def test_assets_extra_duplicate_after_normalization(self, second):
    self.assertRejected(
        self._export(assets_extra={'a/notes.txt': self.source,
                                   second: self.source}),
        errors.AssetsExtraError, repr(second), "'a/notes.txt'", 'twice')

  def test_assets_extra_not_a_mapping(self):
    self.assertRejected(self._export(assets_extra=[self.source]), TypeError,
                        'list')

  # --- others ----------------------------------------------------------------

  def test_estimator_not_an_estimator(self):
    self.assertRejected(self._export(estimator=object()), TypeError,
                        'object')


if __name__ == '__main__':
  absltest.main()
