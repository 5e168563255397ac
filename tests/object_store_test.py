"""The export paths on `s3://` and `gs://`, against real servers on 127.0.0.1.

A moto S3 server and a gcp-storage-emulator run on free 127.0.0.1 ports (one
of each per test class, stopped by PID); tensorflow-io 0.36.0's filesystems
talk to them from a worker process (`testing.object_stores`). Every test
gets a bucket of its own. In CI (`CI=true`) a server that cannot start fails
the tests; elsewhere they skip when the server packages are missing.
"""

import os

from absl.testing import absltest
import numpy as np

from testing import models
from testing import object_stores

_STAGING = '.multimode-export-staging-'


class _StoreTest(models.ClassRootMixin, absltest.TestCase):
  """Starts a server and a worker for the class; a fresh bucket per test."""

  KIND = ''

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.server = object_stores.StoreServer.start(cls.KIND)
    cls.addClassCleanup(cls.server.stop)
    cls.worker = object_stores.Worker(
        cls.server.client_env(), log_path=os.path.join(cls.root, 'worker.log'))
    cls.addClassCleanup(cls.worker.close)
    cls.model_dir = os.path.join(cls.root, 'model')
    cls.checkpoint = cls.worker.call('train', cls.model_dir, 3)

  def setUp(self):
    super().setUp()
    self.bucket = self.server.create_bucket()

  def call(self, name, *args):
    return self.worker.call(name, *args)

  def objects(self):
    """Every file of the test's bucket: relative path -> size."""
    return self.call('sizes', self.bucket + '/')

  def assert_serves(self, export_dir, tags=(['eval'], ['serve'], ['train'])):
    served = self.call('serve', export_dir)
    self.assertEqual(served['tags'], [list(t) for t in tags])
    np.testing.assert_allclose(served['y'], served['expected'], rtol=1e-6)

  def assert_no_staging_left(self):
    leftovers = [k for k in self.objects() if _STAGING in k]
    self.assertEqual(leftovers, [])


class _ExportPaths(_StoreTest):
  """Each export entry point, run against the class's server."""

  def test_new_prefix_under_the_bucket(self):
    # The first export of a model: nothing under the bucket yet.
    base = self.bucket + '/new-model/exports'
    first = self.call('export', self.model_dir, base)
    second = self.call('export', self.model_dir, base)
    self.assertEqual(os.path.dirname(first), base)
    self.assertGreater(int(os.path.basename(second)),
                       int(os.path.basename(first)))
    self.assertEqual(self.call('listdir', base),
                     sorted(os.path.basename(p) for p in (first, second)))
    self.assert_serves(second)
    self.assertEqual(self.call('saved_values', second),
                     self.call('checkpoint_values', self.checkpoint))
    report = self.call('verify', base)
    self.assertTrue(report['ok'], report['text'])
    self.assertEqual(report['export_dir'], second)
    shown = self.call('inspect', base)
    self.assertIn(f'newest {os.path.basename(second)}', shown)
    self.assertIn('MetaGraphDef [serve]', shown)
    self.assert_no_staging_left()

  def test_bucket_root_as_base(self):
    for base in (self.bucket, self.bucket + '/'):
      path = self.call('export', self.model_dir, base)
      self.assertEqual(os.path.dirname(path), self.bucket)
      self.assert_serves(path)
    self.assertLen([k for k in self.objects() if k.endswith('saved_model.pb')],
                   2)
    self.assert_no_staging_left()

  def test_per_mode_layout(self):
    base = self.bucket + '/per-mode'
    paths = self.call('export', self.model_dir, base, 'per_mode')
    version = os.path.basename(paths['infer'])
    self.assertEqual(paths, {m: f'{base}/{d}/{version}' for m, d in (
        ('train', 'train'), ('eval', 'eval'), ('infer', 'serve'))})
    self.assert_serves(paths['infer'], tags=[['serve']])
    report = self.call('verify', base)
    self.assertTrue(report['ok'], report['text'])
    self.assert_no_staging_left()

  def test_fixed_export_dir_and_overwrite(self):
    target = self.bucket + '/model'  # directly under the bucket
    self.assertEqual(self.worker.call(
        'export', self.model_dir, None, export_dir=target), target)
    before = self.objects()
    with self.assertRaises(object_stores.WorkerError) as raised:
      self.worker.call('export', self.model_dir, None, export_dir=target)
    self.assertEqual(raised.exception.type_name, 'ExportDirError')
    self.assertEqual(self.objects(), before)
    # Overwrite with a newer checkpoint: the values change.
    newer = self.call('train', self.model_dir + '-newer', 6)
    self.worker.call('export', self.model_dir + '-newer', None,
                     export_dir=target, overwrite=True)
    self.assertEqual(self.call('saved_values', target),
                     self.call('checkpoint_values', newer))
    self.assert_serves(target)
    self.assert_no_staging_left()

  def test_train_remote_model_dir_exporter_gc_and_export(self):
    model_dir = self.bucket + '/run'
    calls = self.call('train_and_export', model_dir, 6, 2)
    self.assertEqual([c['global_step'] for c in calls], [2, 4, 6])
    base = model_dir + '/export/multimode'
    kept = [os.path.basename(c['path']) for c in calls[-2:]]
    self.assertEqual(self.call('listdir', base), kept)
    self.assert_serves(calls[-1]['path'])
    # Exporting from the remote checkpoint into the same bucket.
    path = self.call('export', model_dir, self.bucket + '/exports')
    self.assertEqual(self.call('saved_values', path),
                     self.call('checkpoint_values', calls[-1]['checkpoint']))
    self.assert_no_staging_left()


class S3ExportTest(_ExportPaths):
  KIND = 's3'


class GcsExportTest(_ExportPaths):
  KIND = 'gcs'


del _ExportPaths  # only its subclasses run

if __name__ == '__main__':
  absltest.main()
