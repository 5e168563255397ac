"""bundle_index: parsing real checkpoint indexes and finding damaged shards."""

import os

from absl.testing import absltest
import numpy as np
import tensorflow as tf

from multimode_export import errors
from multimode_export.variables import _bundle_index as bundle_index
from multimode_export.variables import _checkpoint as checkpoint


def _save(prefix: str, tensors) -> None:
  names = sorted(tensors)
  tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names,
                    shape_and_slices=[''] * len(names),
                    tensors=[tf.constant(tensors[n]) for n in names])


class BundleIndexTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = self.create_tempdir().full_path
    # Two bundles merged into one: a checkpoint with two data shards.
    parts = [os.path.join(self.dir, f'part{i}') for i in range(2)]
    _save(parts[0], {'a': np.arange(10, dtype=np.float32),
                     'b': np.ones([4, 5], np.int64)})
    _save(parts[1], {'c': np.array([b'x', b'yz']),
                     'd': np.zeros([3], np.float64)})
    self.prefix = os.path.join(self.dir, 'model.ckpt-1')
    tf.raw_ops.MergeV2Checkpoints(checkpoint_prefixes=parts,
                                  destination_prefix=self.prefix)
    self.shards = [f'{self.prefix}.data-0000{i}-of-00002' for i in range(2)]

  def test_crc32c_known_value(self):
    self.assertEqual(bundle_index.crc32c(b'123456789'), 0xe3069283)

  def test_entries_match_tensorflows_reader(self):
    header, entries = bundle_index.read(self.prefix + '.index')
    self.assertEqual(header.num_shards, 2)
    reader = tf.compat.v1.train.NewCheckpointReader(self.prefix)
    shapes = reader.get_variable_to_shape_map()
    self.assertEqual(sorted(k.decode() for k in entries), sorted(shapes))
    for key, entry in entries.items():
      self.assertEqual([d.size for d in entry.shape.dim], shapes[key.decode()])
    extents = bundle_index.shard_extents(entries)
    self.assertEqual(extents, {i: os.path.getsize(s)
                               for i, s in enumerate(self.shards)})

  def test_checkpoint_read_lists_both_shards(self):
    info = checkpoint.read(self.prefix)
    self.assertEqual(info.files, (self.prefix + '.index', *self.shards))

  def test_missing_second_shard(self):
    os.remove(self.shards[1])
    with self.assertRaisesRegex(errors.CheckpointReadError,
                                'missing: .*data-00001-of-00002'):
      checkpoint.read(self.prefix)

  def test_truncated_shard(self):
    with open(self.shards[0], 'r+b') as f:
      f.truncate(os.path.getsize(self.shards[0]) - 1)
    with self.assertRaisesRegex(errors.CheckpointReadError,
                                'data-00000-of-00002.* is truncated'):
      checkpoint.read(self.prefix)

  def test_longer_shard_is_accepted(self):
    with open(self.shards[1], 'ab') as f:
      f.write(b'trailing bytes no entry points at')
    self.assertLen(checkpoint.read(self.prefix).files, 3)

  def test_damaged_index_bytes(self):
    with open(self.prefix + '.index', 'rb') as f:
      data = f.read()
    with self.assertRaisesRegex(bundle_index.IndexFormatError, 'magic'):
      bundle_index.parse(data[:-1])
    with self.assertRaisesRegex(bundle_index.IndexFormatError, 'shorter'):
      bundle_index.parse(data[:20])
    flipped = bytearray(data)
    flipped[5] ^= 0x01  # inside the first data block
    with self.assertRaisesRegex(bundle_index.IndexFormatError, 'checksum'):
      bundle_index.parse(bytes(flipped))


class RemoteReadTest(absltest.TestCase):
  """`checkpoint.read` of a checkpoint on a non-local filesystem (ram://),
  where TensorFlow's reader opens a local copy of the index read once."""

  def setUp(self):
    super().setUp()
    self.prefix = f'ram://bundle-index-test/{self.id()}/model.ckpt-1'
    tf.io.gfile.makedirs(self.prefix.rsplit('/', 1)[0])
    _save(self.prefix, {'a': np.arange(10, dtype=np.float32),
                        'b': np.array([b'x', b'yz'])})
    self.addCleanup(tf.io.gfile.rmtree, self.prefix.rsplit('/', 1)[0])

  def test_matches_tensorflows_reader_of_the_remote_files(self):
    info = checkpoint.read(self.prefix)
    reader = tf.compat.v1.train.NewCheckpointReader(self.prefix)
    shapes = reader.get_variable_to_shape_map()
    dtypes = reader.get_variable_to_dtype_map()
    self.assertEqual(info.variables, {k: (dtypes[k].name, tuple(shapes[k]))
                                      for k in shapes})
    self.assertEqual(info.files, (self.prefix + '.index',
                                  self.prefix + '.data-00000-of-00001'))
    with tf.io.gfile.GFile(self.prefix + '.index', 'rb') as f:
      self.assertEqual(info.index, f.read())

  def _replace_index(self, data: bytes) -> None:
    tf.io.gfile.remove(self.prefix + '.index')  # ram:// does not truncate
    with tf.io.gfile.GFile(self.prefix + '.index', 'wb') as f:
      f.write(data)

  def test_a_corrupt_index_names_the_remote_prefix(self):
    with tf.io.gfile.GFile(self.prefix + '.index', 'rb') as f:
      data = f.read()
    flipped = bytearray(data)
    flipped[5] ^= 0x01  # inside the first data block: our parser finds it
    # The footer's magic cut: TensorFlow's reader of the copy refuses it.
    for damaged, expected in ((bytes(flipped), 'checksum'),
                              (data[:-1], 'sstable')):
      with self.subTest(expected):
        self._replace_index(damaged)
        with self.assertRaisesRegex(errors.CheckpointReadError,
                                    expected) as raised:
          checkpoint.read(self.prefix)
        self.assertIn(self.prefix, str(raised.exception))
        self.assertNotIn('multimode_export_index_', str(raised.exception))

if __name__ == '__main__':
  absltest.main()
