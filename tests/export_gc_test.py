"""Tests for publishing/_gc.py (garbage collection) on local disk and ram://."""

import uuid

from absl.testing import parameterized
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.protobuf import saved_model_pb2

from multimode_export.publishing import _gc as export_gc
from multimode_export.publishing import _staging as publish
from multimode_export.saved_model import _format

OWN = export_gc.tag_sets([['train'], ['eval'], ['serve']])


def _write_saved_model(path, tag_lists, as_text=False):
  saved_model = saved_model_pb2.SavedModel(saved_model_schema_version=1)
  for tags in tag_lists:
    saved_model.meta_graphs.add().meta_info_def.tags.extend(tags)
  tf.io.gfile.makedirs(path + '/variables')
  with tf.io.gfile.GFile(path + '/variables/variables.index', 'w') as f:
    f.write('index')
  if as_text:
    with tf.io.gfile.GFile(path + '/saved_model.pbtxt', 'w') as f:
      f.write(text_format.MessageToString(saved_model))
  else:
    with tf.io.gfile.GFile(path + '/saved_model.pb', 'wb') as f:
      f.write(saved_model.SerializeToString())


def _names(base):
  return sorted(n.rstrip('/') for n in tf.io.gfile.listdir(base))


class ExportGcTest(parameterized.TestCase):

  def _base(self, fs):
    if fs == 'local':
      return self.create_tempdir().full_path + '/export/e'
    return f'ram://export-gc-test-{uuid.uuid4().hex}/export/e'

  @parameterized.named_parameters(('local', 'local'), ('ram', 'ram'))
  def test_keeps_newest_own_and_never_touches_foreign(self, fs):
    base = self._base(fs)
    for version in (100, 200, 300):
      _write_saved_model(f'{base}/{version}', [['serve'], ['train'], ['eval']])
    _write_saved_model(f'{base}/250', [['eval'], ['serve'], ['train']],
                       as_text=True)
    _write_saved_model(f'{base}/50', [['serve']])  # a stock export
    _write_saved_model(f'{base}/60', [['train'], ['eval']])  # other modes
    tf.io.gfile.makedirs(f'{base}/70/variables')  # still being published
    _write_saved_model(f'{base}/notes', [['train'], ['eval'], ['serve']])
    _write_saved_model(f'{base}/{publish.STAGING_PREFIX}host-1-abc',
                       [['train'], ['eval'], ['serve']])
    with tf.io.gfile.GFile(f'{base}/80', 'w') as f:  # a file, not a dir
      f.write('x')

    result = export_gc.collect(base, OWN, keep=2)

    self.assertEqual(result.kept, (f'{base}/250', f'{base}/300'))
    self.assertEqual(result.deleted, (f'{base}/100', f'{base}/200'))
    self.assertEqual(_names(base), sorted([
        '250', '300', '50', '60', '70', '80', 'notes',
        f'{publish.STAGING_PREFIX}host-1-abc']))
    self.assertEqual(_format.read_tag_sets(f'{base}/300'), OWN)

  @parameterized.named_parameters(('local', 'local'), ('ram', 'ram'))
  def test_orders_versions_numerically(self, fs):
    base = self._base(fs)
    for version in (9, 10, 1000000000):
      _write_saved_model(f'{base}/{version}', [['train'], ['eval'], ['serve']])
    result = export_gc.collect(base, OWN, keep=1)
    self.assertEqual(result.kept, (f'{base}/1000000000',))
    self.assertEqual(_names(base), ['1000000000'])

  def test_keep_more_than_exist_deletes_nothing(self):
    base = self._base('local')
    _write_saved_model(f'{base}/1', [['train'], ['eval'], ['serve']])
    result = export_gc.collect(base, OWN, keep=5)
    self.assertEqual(result.deleted, ())
    self.assertEqual(_names(base), ['1'])

  def test_missing_base(self):
    result = export_gc.collect(self._base('local'), OWN, keep=1)
    self.assertEqual(result, export_gc.GcResult((), ()))

  def test_corrupt_saved_model_is_not_recognized(self):
    base = self._base('local')
    _write_saved_model(f'{base}/1', [['train'], ['eval'], ['serve']])
    _write_saved_model(f'{base}/2', [['train'], ['eval'], ['serve']])
    with tf.io.gfile.GFile(f'{base}/1/saved_model.pb', 'wb') as f:
      f.write(b'\xff\xff\xff not a proto')
    self.assertIsNone(_format.read_tag_sets(f'{base}/1'))
    export_gc.collect(base, OWN, keep=1)
    self.assertEqual(_names(base), ['1', '2'])


if __name__ == '__main__':
  tf.test.main()
