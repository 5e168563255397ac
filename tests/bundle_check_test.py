"""bundle_check: every entry's crc32c, checked in one pass over real bundles."""

import os
import tracemalloc

from absl import flags
from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from multimode_export.variables import _bundle_check as bundle_check
from multimode_export.variables import _bundle_index as bundle_index

# Under pytest absl's flags are never parsed; create_tempdir() needs them.
if not flags.FLAGS.is_parsed():
  flags.FLAGS.mark_as_parsed()

_RNG = np.random.RandomState(1)
_VALUES = {
    'a': _RNG.rand(7, 3).astype(np.float32),
    'big': _RNG.rand(1 << 18).astype(np.float64),  # 2 MiB
    'flag': np.array([True, False]),
    'n': np.int64(5),
    'empty': np.zeros([0], np.float32),
    'strings': np.array([b'', b'abc', b'\xff' * 200, b'z' * 70000]),
    'no_strings': np.array([], dtype=object).astype(bytes),
    'scalar_string': np.array(b'object graph'),
}


def _save(prefix, tensors):
  tf.raw_ops.SaveV2(prefix=prefix, tensor_names=[t[0] for t in tensors],
                    shape_and_slices=[t[1] for t in tensors],
                    tensors=[tf.constant(t[2]) for t in tensors])


class BundleCheckTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    directory = self.create_tempdir().full_path
    parts = [os.path.join(directory, f'part{i}') for i in range(2)]
    names = sorted(_VALUES)
    _save(parts[0], [(n, '', _VALUES[n]) for n in names[::2]])
    strings = np.array([b'p', b'qq', b'rrr', b'ssss'])
    _save(parts[1], [(n, '', _VALUES[n]) for n in names[1::2]] +
          [('sliced', '4 0,2', strings[:2]), ('sliced', '4 2,2', strings[2:])])
    self.prefix = os.path.join(directory, 'variables')
    tf.raw_ops.MergeV2Checkpoints(checkpoint_prefixes=parts,
                                  destination_prefix=self.prefix)
    self.header, self.entries = bundle_index.read(self.prefix + '.index')

  def _shard(self, key):
    entry = self.entries[key]
    return (f'{self.prefix}.data-{entry.shard_id:05d}-of-'
            f'{self.header.num_shards:05d}'), entry

  @parameterized.named_parameters(('one_read', 8 << 20), ('tiny_reads', 7))
  def test_intact_bundle(self, buffer_bytes):
    result = bundle_check.check(self.prefix, buffer_bytes=buffer_bytes)
    with_data = [e for e in self.entries.values() if e.size]
    self.assertEqual(result.entries, len(with_data))
    self.assertEqual(result.bytes, sum(e.size for e in with_data))
    self.assertEqual(result.shards, 2)

  @parameterized.named_parameters(
      ('float', b'a', 5), ('bool', b'flag', 1), ('string_length', b'strings', 1),
      ('string_bytes', b'strings', -3), ('scalar_string', b'scalar_string', -1))
  def test_one_flipped_byte_is_found_and_named(self, key, where):
    path, entry = self._shard(key)
    with open(path, 'r+b') as f:
      f.seek(entry.offset + (where % entry.size))
      byte = f.read(1)
      f.seek(-1, os.SEEK_CUR)
      f.write(bytes([byte[0] ^ 0x01]))
    with self.assertRaisesRegex(bundle_check.BundleDataError,
                                f"variable '{key.decode()}' unreadable: "
                                'checksum mismatch'):
      bundle_check.check(self.prefix)

  def test_flipped_byte_in_a_slice(self):
    key = next(k for k in self.entries if bundle_index.slice_name(k))
    path, entry = self._shard(key)
    with open(path, 'r+b') as f:
      f.seek(entry.offset + entry.size - 1)
      f.write(b'#')
    with self.assertRaisesRegex(bundle_check.BundleDataError,
                                r"'sliced \(a slice\)' unreadable: checksum"):
      bundle_check.check(self.prefix)

  def test_truncated_shard(self):
    path, entry = self._shard(b'big')
    with open(path, 'r+b') as f:
      f.truncate(entry.offset + 100)
    with self.assertRaisesRegex(bundle_check.BundleDataError,
                                "'big' unreadable: .* ends at byte"):
      bundle_check.check(self.prefix)

  def test_memory_bounded_by_the_buffer(self):
    tracemalloc.start()
    try:
      bundle_check.check(self.prefix, buffer_bytes=64 << 10)
      _, peak = tracemalloc.get_traced_memory()
    finally:
      tracemalloc.stop()
    self.assertGreater(self.entries[b'big'].size, 16 * (64 << 10))
    self.assertLess(peak, 4 * (64 << 10))

  def test_other_filesystem(self):
    target = f'ram://{self.id()}/variables'
    for name in tf.io.gfile.glob(self.prefix + '*'):
      tf.io.gfile.copy(name, target + name[len(self.prefix):])
    self.assertEqual(bundle_check.check(target, buffer_bytes=1000),
                     bundle_check.check(self.prefix))


if __name__ == '__main__':
  absltest.main()
