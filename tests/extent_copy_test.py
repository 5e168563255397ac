"""extent_copy and bundle_index's writer: subsets of real checkpoints.

Checkpoints are written by TensorFlow's own SaveV2 / MergeV2Checkpoints ops
(partitioned variables, strings, empty tensors, two data shards); the subsets
written here are read back by TensorFlow's checkpoint reader and restored by
a Saver.
"""

import os
import tracemalloc

from absl import flags
from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from multimode_export.graph import _saver_spec as saver_spec
from multimode_export.variables import _bundle_index as bundle_index
from multimode_export.variables import _extent_copy as extent_copy

# Under pytest absl's flags are never parsed; create_tempdir() needs them.
if not flags.FLAGS.is_parsed():
  flags.FLAGS.mark_as_parsed()

_RNG = np.random.RandomState(0)
_WHOLE = {
    'dense/kernel': _RNG.rand(5, 4).astype(np.float32),
    'dense/kernel/Adam': _RNG.rand(5, 4).astype(np.float32),
    'ids': np.array([3, -1, 7], np.int64),
    'flag': np.array(True),
    'empty': np.zeros([0, 5], np.float32),
    'vocab': np.array([b'hello', b'', b'x' * 300, b'\x00\xff']),
    'big': _RNG.rand(1 << 18).astype(np.float32),  # 1 MiB
}
_EMB = _RNG.rand(10, 3).astype(np.float32)
_EMB_SLICES = (('10 3 0,4:0,3', slice(0, 4)), ('10 3 4,3:0,3', slice(4, 7)),
               ('10 3 7,3:0,3', slice(7, 10)))
# A key with bytes the slice key encoding escapes.
_ODD_NAME = 'odd\xff/name'


def _save_v2(prefix, tensors):
  """tensors: [(name, slice spec, value)]."""
  tf.raw_ops.SaveV2(prefix=prefix, tensor_names=[t[0] for t in tensors],
                    shape_and_slices=[t[1] for t in tensors],
                    tensors=[tf.constant(t[2]) for t in tensors])


def _write_checkpoint(directory):
  """A two-shard checkpoint: whole tensors in one, partitioned ones in both."""
  parts = [os.path.join(directory, f'part{i}') for i in range(2)]
  names = sorted(_WHOLE)
  _save_v2(parts[0], [(n, '', _WHOLE[n]) for n in names[::2]] +
           [('emb', spec, _EMB[rows]) for spec, rows in _EMB_SLICES[:2]])
  _save_v2(parts[1], [(n, '', _WHOLE[n]) for n in names[1::2]] +
           [('emb', spec, _EMB[rows]) for spec, rows in _EMB_SLICES[2:]] +
           [(_ODD_NAME, '10 3 0,5:0,3', _EMB[:5]),
            (_ODD_NAME, '10 3 5,5:0,3', _EMB[5:])])
  prefix = os.path.join(directory, 'model.ckpt-1')
  tf.raw_ops.MergeV2Checkpoints(checkpoint_prefixes=parts,
                                destination_prefix=prefix)
  return prefix


def _spec(name):
  if name == 'emb':
    return saver_spec.VariableSpec(
        name, 'float32', (10, 3), tuple(s for s, _ in _EMB_SLICES))
  if name == _ODD_NAME:
    return saver_spec.VariableSpec(name, 'float32', (10, 3),
                                   ('10 3 0,5:0,3', '10 3 5,5:0,3'))
  value = _WHOLE[name]
  return saver_spec.VariableSpec(name, value.dtype.name, value.shape)


_NEEDED = ('big', 'dense/kernel', 'emb', 'empty', 'flag', 'ids', 'vocab',
           _ODD_NAME)


class IndexWriterTest(absltest.TestCase):

  def test_crc32c_known_value(self):
    self.assertEqual(bundle_index.crc32c(b'123456789'), 0xe3069283)

  def test_tensorflow_reads_a_rewritten_index_of_many_blocks(self):
    directory = self.create_tempdir().full_path
    prefix = os.path.join(directory, 'many')
    # Keys with long shared prefixes: two data blocks, many restarts.
    values = {f'layer_{i:04d}/some/long/variable/name': np.float32(i)
              for i in range(7000)}
    _save_v2(prefix, [(k, '', v) for k, v in sorted(values.items())])
    header, entries = bundle_index.read(prefix + '.index')
    written = bundle_index.serialize(header, entries)
    self.assertGreater(len(written), 256 << 10)
    self.assertEqual(bundle_index.parse(written), (header, entries))
    with open(prefix + '.index', 'wb') as f:
      f.write(written)
    reader = tf.train.load_checkpoint(prefix)
    self.assertLen(reader.get_variable_to_shape_map(), 7000)
    for key in ('layer_0000/some/long/variable/name',
                'layer_1777/some/long/variable/name',
                'layer_6999/some/long/variable/name'):
      self.assertEqual(reader.get_tensor(key), values[key])

  def test_slice_names(self):
    directory = self.create_tempdir().full_path
    _, entries = bundle_index.read(_write_checkpoint(directory) + '.index')
    names = sorted(bundle_index.slice_name(k) for k in entries
                   if bundle_index.slice_name(k) is not None)
    self.assertEqual(names, sorted(['emb'] * 3 + [_ODD_NAME] * 2))
    self.assertIsNone(bundle_index.slice_name(b'emb'))


class ExtentCopyTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.prefix = _write_checkpoint(self.create_tempdir().full_path)
    _, self.source_entries = bundle_index.read(self.prefix + '.index')

  def _target(self, filesystem):
    if filesystem == 'ram':
      return f'ram://{self.id()}/{filesystem}/variables/variables'
    directory = os.path.join(self.create_tempdir().full_path, 'variables')
    os.makedirs(directory)
    return os.path.join(directory, 'variables')

  @parameterized.named_parameters(('local', 'local'), ('ram', 'ram'))
  def test_subset_equals_the_checkpoints_entries(self, filesystem):
    needed = {n: _spec(n) for n in _NEEDED}
    subset = extent_copy.plan(self.prefix + '.index', needed)
    target = self._target(filesystem)
    extent_copy.write_subset(self.prefix, subset, target)

    reader = tf.compat.v1.train.NewCheckpointReader(target)
    self.assertEqual(sorted(reader.get_variable_to_shape_map()),
                     sorted(_NEEDED))
    for name in _NEEDED:
      expected = _EMB if name in ('emb', _ODD_NAME) else _WHOLE[name]
      value = reader.get_tensor(name)
      self.assertEqual(tf.as_dtype(value.dtype), tf.as_dtype(expected.dtype),
                       name)
      np.testing.assert_array_equal(value, expected, err_msg=name)
    header, entries = bundle_index.read(target + '.index')
    self.assertEqual(header.num_shards, 1)
    self.assertNotIn(b'dense/kernel/Adam', entries)
    self.assertLen(entries, len(_NEEDED) + 5)  # + emb's 3, odd's 2 slices
    for key, entry in entries.items():
      source = self.source_entries[key]
      for field in ('dtype', 'shape', 'slices', 'size', 'crc32c'):
        self.assertEqual(getattr(entry, field), getattr(source, field),
                         f'{key!r}: {field}')
    self.assertEqual(subset.bytes, sum(e.size for e in entries.values()))
    if filesystem == 'local':
      self.assertEqual(
          os.path.getsize(target + '.data-00000-of-00001'), subset.bytes)

  def test_saver_restores_the_partitioned_variable(self):
    target = self._target('local')
    extent_copy.write_subset(
        self.prefix, extent_copy.plan(self.prefix + '.index',
                                      {'emb': _spec('emb')}), target)
    with tf.Graph().as_default():
      emb = tf.compat.v1.get_variable(
          'emb', shape=[10, 3], partitioner=tf.compat.v1.fixed_size_partitioner(3))
      saver = tf.compat.v1.train.Saver()
      with tf.compat.v1.Session() as session:
        saver.restore(session, target)
        np.testing.assert_array_equal(session.run(emb.as_tensor()), _EMB)

  def test_contiguous_extents_are_copied_in_one_run_per_stretch(self):
    subset = extent_copy.plan(self.prefix + '.index',
                              {n: _spec(n) for n in _WHOLE})
    whole = [e for k, e in self.source_entries.items()
             if k.decode('utf-8', 'replace') in _WHOLE]
    self.assertLessEqual(len(subset.runs), 2)  # one per shard
    self.assertEqual(subset.bytes, sum(e.size for e in whole))

  def test_buffer_bounds_memory_on_other_filesystems(self):
    subset = extent_copy.plan(self.prefix + '.index', {'big': _spec('big')})
    target = self._target('ram')
    tracemalloc.start()
    try:
      extent_copy.write_subset(self.prefix, subset, target,
                               buffer_bytes=64 << 10)
      _, peak = tracemalloc.get_traced_memory()
    finally:
      tracemalloc.stop()
    self.assertGreater(subset.bytes, 8 * (64 << 10))
    self.assertLess(peak, 4 * (64 << 10))
    np.testing.assert_array_equal(
        tf.compat.v1.train.NewCheckpointReader(target).get_tensor('big'),
        _WHOLE['big'])

  @parameterized.named_parameters(
      ('whole_read_as_slices', 'dense/kernel', ('5 4 0,2:0,4', '5 4 2,3:0,4')),
      ('slices_read_whole', 'emb', ('',)),
      ('other_slicing', 'emb', ('10 3 0,5:0,3', '10 3 5,5:0,3')))
  def test_slicing_it_cannot_copy(self, name, slices):
    spec = saver_spec.VariableSpec(name, 'float32', None, slices)
    with self.assertRaisesRegex(extent_copy.UnsupportedSubsetError,
                                f"'{name}' is read as slices"):
      extent_copy.plan(self.prefix + '.index', {name: spec})

  def test_one_slice_covering_the_whole_variable(self):
    # A partitioner that made one partition: SaveV2 stores it whole.
    spec = saver_spec.VariableSpec('dense/kernel', 'float32', (5, 4),
                                   ('5 4 0,5:0,4',))
    target = self._target('local')
    extent_copy.write_subset(
        self.prefix, extent_copy.plan(self.prefix + '.index',
                                      {'dense/kernel': spec}), target)
    value = tf.raw_ops.RestoreV2(prefix=target, tensor_names=['dense/kernel'],
                                 shape_and_slices=['5 4 0,5:0,4'],
                                 dtypes=[tf.float32])[0]
    np.testing.assert_array_equal(value, _WHOLE['dense/kernel'])

  def test_missing_key(self):
    with self.assertRaisesRegex(extent_copy.UnsupportedSubsetError,
                                "'nope' has no entry"):
      extent_copy.plan(self.prefix + '.index',
                       {'nope': saver_spec.VariableSpec('nope', 'float32', ())})

  def test_short_shard_fails_and_names_it(self):
    subset = extent_copy.plan(self.prefix + '.index', {'big': _spec('big')})
    shard = f'{self.prefix}.data-{subset.runs[0].shard_id:05d}-of-00002'
    with open(shard, 'r+b') as f:
      f.truncate(subset.runs[0].offset + 10)
    for filesystem in ('local', 'ram'):
      with self.assertRaisesRegex(OSError, 'short|early'):
        extent_copy.write_subset(self.prefix, subset, self._target(filesystem))


if __name__ == '__main__':
  absltest.main()
