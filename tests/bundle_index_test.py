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


if __name__ == '__main__':
  absltest.main()
