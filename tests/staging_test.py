"""Publishing: complete versions, no leftovers, nothing existing touched.

Every test exports a real trained estimator on local disk and on TF's
`ram://` filesystem (where renaming a directory does not move its files).
"""

import os
import time
import uuid
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import tensorflow as tf

import multimode_export
from multimode_export.publishing import _staging as publish
from multimode_export.publishing import _versions as versions
from testing import faults
from testing import models
from testing import receiver_fns
from testing import running

ModeKeys = tf.estimator.ModeKeys
FILESYSTEMS = (('local', 'local'), ('ram', 'ram'))


def _remove(path: str) -> None:
  if tf.io.gfile.exists(path):
    tf.io.gfile.rmtree(path)


def _read(path: str) -> bytes:
  with tf.io.gfile.GFile(path, 'rb') as f:
    return f.read()


class PublishTest(models.ClassRootMixin, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.model_dir = os.path.join(cls.root, 'model')
    cls.estimator = models.train_custom(cls.model_dir, steps=3)
    cls.checkpoint = tf.train.latest_checkpoint(cls.model_dir)

  def _base(self, filesystem: str) -> str:
    if filesystem == 'local':
      return os.path.join(self.create_tempdir().full_path, 'export')
    root = f'ram://publish-{uuid.uuid4().hex}'
    self.addCleanup(_remove, root)
    return root + '/export'

  def _export(self, base: str, modes=tuple(receiver_fns.TAGS), **kwargs) -> str:
    return multimode_export.export_all_saved_models(
        self.estimator, base, receiver_fns.receiver_map(modes), **kwargs)

  @parameterized.named_parameters(*FILESYSTEMS)
  def test_export_is_complete_when_returned(self, filesystem):
    base = self._base(filesystem)
    path = self._export(base)
    # Only the version, no staging directory, and it holds everything.
    self.assertEqual(tf.io.gfile.listdir(base), [os.path.basename(path)])
    self.assertTrue(os.path.basename(path).isdigit())
    self.assertEqual(running.load_every_tag_set(path),
                     [['eval'], ['serve'], ['train']])
    # The full export holds exactly the checkpoint's bundle.
    self.assertEqual(_read(path + '/variables/variables.index'),
                     _read(self.checkpoint + '.index'))
    self.assertEqual(
        _read(path + '/variables/variables.data-00000-of-00001'),
        _read(self.checkpoint + '.data-00000-of-00001'))

  @parameterized.named_parameters(*FILESYSTEMS)
  def test_existing_exports_are_never_touched(self, filesystem):
    base = self._base(filesystem)
    first = self._export(base)
    before = faults.snapshot(first)
    second = self._export(base)
    third = self._export(base, modes=(ModeKeys.PREDICT,))
    self.assertEqual(faults.snapshot(first), before)
    self.assertLess(int(os.path.basename(first)),
                    int(os.path.basename(second)))
    self.assertLess(int(os.path.basename(second)),
                    int(os.path.basename(third)))
    self.assertLen(tf.io.gfile.listdir(base), 3)

  @parameterized.named_parameters(
      ('local_link', 'local', {}),
      ('local_copy', 'local', {'allow_links': False}),
      ('local_stream', 'local', {'modes': (ModeKeys.PREDICT,)}),
      ('ram', 'ram', {}),
      ('ram_stream', 'ram', {'modes': (ModeKeys.PREDICT,)}),
  )
  def test_model_dir_and_checkpoint_are_unchanged(self, filesystem, kwargs):
    before = faults.snapshot(self.model_dir)
    stat = os.stat(self.checkpoint + '.data-00000-of-00001')
    path = self._export(self._base(filesystem), **kwargs)
    running.load_every_tag_set(path)
    self.assertEqual(faults.snapshot(self.model_dir), before)
    after = os.stat(self.checkpoint + '.data-00000-of-00001')
    self.assertEqual((after.st_ino, after.st_size, after.st_mtime_ns),
                     (stat.st_ino, stat.st_size, stat.st_mtime_ns))

  def test_dead_staging_is_removed_at_once_live_staging_is_kept(self):
    base = self._base('local')
    first = self._export(base)
    # A dead exporter's staging directory: nobody holds its lock. It is
    # brand new, so no age-based rule could tell it from a live one.
    dead = os.path.join(base, publish.STAGING_PREFIX + 'host-1-dead-0')
    os.makedirs(os.path.join(dead, 'variables'))
    with open(os.path.join(dead, 'variables', 'variables.index'), 'wb') as f:
      f.write(b'half written')
    unrelated = os.path.join(base, '.not-ours')
    os.mkdir(unrelated)
    with publish.open_staging(base) as live:
      with open(os.path.join(live.path, 'data'), 'w') as f:
        f.write('live')
      second = self._export(base)
      self.assertFalse(os.path.exists(dead))
      self.assertTrue(os.path.exists(os.path.join(live.path, 'data')))
    self.assertCountEqual(
        os.listdir(base),
        [os.path.basename(first), os.path.basename(second), '.not-ours'])

  def test_remote_staging_is_removed_once_stale(self):
    base = self._base('ram')
    now = int(time.time())
    names = {
        'old': f'{publish.STAGING_PREFIX}h-1-aaaa-{now - 2 * 86400}',
        'young': f'{publish.STAGING_PREFIX}h-2-bbbb-{now - 60}',
        'no_time': f'{publish.STAGING_PREFIX}h-3-cccc',
    }
    for name in names.values():
      tf.io.gfile.makedirs(f'{base}/{name}/variables')
    path = self._export(base)
    self.assertCountEqual(
        [n.rstrip('/') for n in tf.io.gfile.listdir(base)],
        [names['young'], names['no_time'], os.path.basename(path)])

  def test_remote_version_claimed_by_another_exporter_takes_the_next(self):
    base = self._base('ram')
    real_next_version = versions.next_version
    claimed = []

    def racing_next_version(export_dir_bases):
      # Between choosing a version and moving the first file, another
      # exporter moves its own first file into that version.
      [export_dir_base] = export_dir_bases
      version = real_next_version(export_dir_bases)
      if not claimed:
        claimed.append(version)
        other = f'{export_dir_base}/{version}/variables'
        tf.io.gfile.makedirs(other)
        with tf.io.gfile.GFile(
            other + '/variables.data-00000-of-00001', 'wb') as f:
          f.write(b'the other exporter')
      return version

    with mock.patch.object(versions, 'next_version', racing_next_version):
      path = self._export(base)
    self.assertGreater(int(os.path.basename(path)), claimed[0])
    self.assertEqual(
        _read(f'{base}/{claimed[0]}/variables/variables.data-00000-of-00001'),
        b'the other exporter')
    self.assertFalse(tf.io.gfile.exists(f'{base}/{claimed[0]}/saved_model.pb'))
    self.assertEqual(running.load_every_tag_set(path),
                     [['eval'], ['serve'], ['train']])

  @parameterized.named_parameters(*FILESYSTEMS)
  def test_versions_increase_past_a_future_version(self, filesystem):
    base = self._base(filesystem)
    future = int(time.time()) + 1000
    tf.io.gfile.makedirs(f'{base}/{future}')
    paths = [self._export(base, modes=(ModeKeys.PREDICT,)) for _ in range(2)]
    self.assertEqual([int(os.path.basename(p)) for p in paths],
                     [future + 1, future + 2])

  @parameterized.named_parameters(*FILESYSTEMS)
  def test_failed_export_removes_the_base_and_parents_it_created(
      self, filesystem):
    base = self._base(filesystem)
    parent = os.path.dirname(base)
    target = base + '/a/b'
    # The disk fills up at the last moment, after everything was staged.
    with mock.patch.object(
        publish.Staging, 'publish',
        side_effect=OSError(28, 'No space left on device')):
      with self.assertRaisesRegex(multimode_export.PublishError,
                                  'No space left'):
        self._export(target)
    self.assertFalse(tf.io.gfile.exists(base))
    if filesystem == 'local':
      self.assertTrue(os.path.isdir(parent))


if __name__ == '__main__':
  absltest.main()
