"""rekey: new keys over a real checkpoint's extents, read back by TensorFlow.

Source checkpoints are written here by TensorFlow itself: a TF1 sharded Saver
with a partitioned variable (its slices' starts need one-, two- and
three-byte OrderedCode numbers), a string variable, and a bundle of two data
shards merged by MergeV2Checkpoints. Every rekeyed bundle is read with
TensorFlow's checkpoint reader and compared byte for byte with the source.
"""

import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf
from absl.testing import absltest
from absl.testing import parameterized

from multimode_export.variables import _bundle_index as bundle_index
from multimode_export.variables import _checkpoint as checkpoint
from multimode_export.variables import _rekey as rekey

_ROWS = 20000  # partition starts 0, 6667, 13334: 1-, 2- and 3-byte codes


def _save_v2(prefix, tensors, slices=None):
  names = sorted(tensors)
  slices = slices or {}
  tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names,
                    shape_and_slices=[slices.get(n, '') for n in names],
                    tensors=[tf.constant(tensors[n]) for n in names])


def _tf1_checkpoint(directory):
  """A TF1 checkpoint: 3-way partitioned `emb`, `w`, a string `vocab`.

  Returns:
    (prefix, {partition variable name: its Saver slice spec}).
  """
  graph = tf.Graph()
  with graph.as_default():
    emb = tf.compat.v1.get_variable(
        'emb', [_ROWS, 2], initializer=tf.compat.v1.random_uniform_initializer(),
        partitioner=tf.compat.v1.fixed_size_partitioner(3))
    tf.compat.v1.get_variable(
        'w', initializer=np.arange(6, dtype=np.float32).reshape(2, 3))
    tf.compat.v1.get_variable(
        'vocab', initializer=tf.constant([b'a', b'', b'\x00\xff' * 40]))
    saver = tf.compat.v1.train.Saver(sharded=True)
    with tf.compat.v1.Session() as session:
      session.run(tf.compat.v1.global_variables_initializer())
      prefix = saver.save(session, os.path.join(directory, 'model.ckpt'))
    specs = {v.op.name: v._save_slice_info.spec for v in emb}  # pylint: disable=protected-access
  return prefix, specs


def _new_bundle(prefix):
  """What TensorFlow writes before the values: one small string tensor."""
  _save_v2(prefix, {'_CHECKPOINTABLE_OBJECT_GRAPH': np.array(b'graph\x01')})


class SliceKeyTest(parameterized.TestCase):

  def test_keys_of_a_saver_written_partitioned_variable(self):
    prefix, specs = _tf1_checkpoint(self.create_tempdir().full_path)
    _, entries = bundle_index.read(prefix + '.index')
    full = entries[b'emb']
    self.assertLen(full.slices, 3)
    self.assertLen(specs, 3)
    for stored in full.slices:
      self.assertIn(bundle_index.slice_key('emb', stored), entries)

  @parameterized.named_parameters(
      ('whole_dimension', '9000 3 100,8000:-', [8000, 3]),
      ('three_byte_start', '70000 2 65000,5000:0,2', [5000, 2]),
      ('name_needing_escapes', '4 1 0,2:-', [2, 1]))
  def test_keys_of_save_v2_slices(self, spec, shape):
    name = 'a\x00b/\u00e9' if 'escapes' in self.id() else 'v'
    prefix = os.path.join(self.create_tempdir().full_path, 'ckpt')
    _save_v2(prefix, {name: np.ones(shape, np.float32)}, {name: spec})
    _, entries = bundle_index.read(prefix + '.index')
    (stored,) = entries[name.encode('utf-8')].slices
    key = bundle_index.slice_key(name, stored)
    self.assertIn(key, entries)
    self.assertEqual(bundle_index.slice_name(key), name)


class ExtendTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = self.create_tempdir().full_path
    os.makedirs(os.path.join(self.dir, 'source'))
    self.source, self.specs = _tf1_checkpoint(
        os.path.join(self.dir, 'source'))
    self.target_dir = os.path.join(self.dir, 'target')
    os.makedirs(self.target_dir)
    self.prefix = os.path.join(self.target_dir, 'variables')
    _new_bundle(self.prefix)

  def _sources(self):
    sources = {f'variables/{i}/.ATTRIBUTES/VARIABLE_VALUE':
               rekey.SourceEntry('emb', self.specs[f'emb/part_{i}'])
               for i in range(3)}
    sources['variables/3/.ATTRIBUTES/VARIABLE_VALUE'] = rekey.SourceEntry('w')
    sources['vocab'] = ('vocab', '')  # a plain pair works too
    sources['w_again'] = rekey.SourceEntry('w')  # two keys, one extent
    return sources

  def assert_holds_sources(self, prefix, sources):
    source_reader = tf.train.load_checkpoint(self.source)
    reader = tf.train.load_checkpoint(prefix)
    self.assertCountEqual(reader.get_variable_to_shape_map(),
                          list(sources) + ['_CHECKPOINTABLE_OBJECT_GRAPH'])
    self.assertEqual(reader.get_tensor('_CHECKPOINTABLE_OBJECT_GRAPH'),
                     b'graph\x01')
    for new_key, (key, spec) in sources.items():
      expected = source_reader.get_tensor(key)
      if spec:
        _, bounds = bundle_index.spec_bounds(spec)
        expected = expected[tuple(slice(s, s + n) for s, n in bounds)]
      value = reader.get_tensor(new_key)
      self.assertEqual(value.dtype, expected.dtype, new_key)
      self.assertEqual(value.shape, expected.shape, new_key)
      self.assertEqual(value.tobytes() if value.dtype != object else
                       list(value), expected.tobytes()
                       if expected.dtype != object else list(expected),
                       new_key)
    # RestoreV2, as tf.saved_model.load runs it, also checks each crc32c.
    with tf.device('/cpu:0'):
      keys = sorted(sources)
      restored = tf.raw_ops.RestoreV2(
          prefix=prefix, tensor_names=keys, shape_and_slices=[''] * len(keys),
          dtypes=[reader.get_variable_to_dtype_map()[k] for k in keys])
    self.assertLen(restored, len(keys))

  def test_keys_point_at_linked_source_shards(self):
    sources = self._sources()
    result = rekey.extend_with_extents(self.prefix, self.source, sources)
    self.assertEqual(result.keys, len(sources))
    self.assertIn(result.method, ('hardlink', 'reflink'))
    self.assert_holds_sources(self.prefix, sources)
    header, entries = bundle_index.read(self.prefix + '.index')
    self.assertEqual(header.num_shards, 2)
    _, source_entries = bundle_index.read(self.source + '.index')
    emb_0 = entries[b'variables/0/.ATTRIBUTES/VARIABLE_VALUE']
    stored = source_entries[bundle_index.slice_key(
        'emb', source_entries[b'emb'].slices[0])]
    for field in ('shard_id', 'offset', 'size', 'crc32c', 'dtype', 'shape'):
      self.assertEqual(getattr(emb_0, field), getattr(stored, field), field)
    data = self.prefix + '.data-00000-of-00002'
    if result.method == 'hardlink':
      self.assertEqual(os.stat(data).st_ino,
                       os.stat(self.source + '.data-00000-of-00001').st_ino)
    # The package's own reader agrees: every shard there, none truncated.
    info = checkpoint.read(self.prefix)
    self.assertLen(info.files, 3)
    self.assertEqual(sorted(os.listdir(self.target_dir)), [
        'variables.data-00000-of-00002', 'variables.data-00001-of-00002',
        'variables.index'])

  def test_source_with_two_shards_and_copies(self):
    parts = [os.path.join(self.dir, f'part{i}') for i in range(2)]
    _save_v2(parts[0], {'a': np.arange(5, dtype=np.int64)})
    _save_v2(parts[1], {'b': np.array([b'xy', b'z'])})
    self.source = os.path.join(self.dir, 'merged')
    tf.raw_ops.MergeV2Checkpoints(checkpoint_prefixes=parts,
                                  destination_prefix=self.source)
    sources = {'new/a': rekey.SourceEntry('a'), 'new/b': rekey.SourceEntry('b')}
    result = rekey.extend_with_extents(self.prefix, self.source, sources,
                                       allow_links=False)
    self.assertEqual(result.method, 'copy')
    header, _ = bundle_index.read(self.prefix + '.index')
    self.assertEqual(header.num_shards, 3)
    for i in range(2):
      data = self.prefix + f'.data-0000{i}-of-00003'
      self.assertEqual(os.stat(data).st_nlink, 1)
    self.assert_holds_sources(self.prefix, sources)

  def test_other_filesystem_copies(self):
    target = f'ram://rekey_test/{self.id()}/variables'
    self.addCleanup(tf.io.gfile.rmtree, f'ram://rekey_test/{self.id()}')
    _new_bundle(target)
    sources = self._sources()
    result = rekey.extend_with_extents(target, self.source, sources)
    self.assertEqual(result.method, 'copy')
    local = tempfile.mkdtemp(dir=self.dir)
    for name in tf.io.gfile.listdir(os.path.dirname(target)):
      tf.io.gfile.copy(f'{os.path.dirname(target)}/{name}',
                       os.path.join(local, name))
    self.assert_holds_sources(os.path.join(local, 'variables'), sources)

  def test_bad_sources_change_nothing(self):
    before = {n: open(os.path.join(self.target_dir, n), 'rb').read()  # pylint: disable=consider-using-with
              for n in os.listdir(self.target_dir)}
    cases = (
        ({'k': rekey.SourceEntry('missing')}, "no key 'missing'"),
        ({'k': rekey.SourceEntry('emb')},
         "the whole tensor of 'emb' is not stored as such.*3 slices"),
        ({'k': rekey.SourceEntry('emb', f'{_ROWS} 2 0,100:0,2')},
         "slice .* of 'emb' is not stored as such"),
        ({'k': rekey.SourceEntry('emb', '7 2 0,7:0,2')},
         'shape \\[7, 2\\]; the checkpoint stores \\[20000, 2\\]'),
        ({'k': rekey.SourceEntry('w', '2 3 0,1:0,3')},
         'stores it whole, not as slices'),
        ({'_CHECKPOINTABLE_OBJECT_GRAPH': rekey.SourceEntry('w')},
         'already holds'),
    )
    for sources, pattern in cases:
      with self.assertRaisesRegex(rekey.RekeyError, pattern):
        rekey.extend_with_extents(self.prefix, self.source, sources)
      self.assertEqual(
          {n: open(os.path.join(self.target_dir, n), 'rb').read()  # pylint: disable=consider-using-with
           for n in os.listdir(self.target_dir)}, before)

  def test_a_whole_variable_saved_as_its_only_slice(self):
    source = os.path.join(self.dir, 'whole')
    _save_v2(source, {'v': np.ones([4, 2], np.float32)}, {'v': '4 2 0,4:0,2'})
    sources = {'k': rekey.SourceEntry('v', '4 2 0,4:0,2')}
    rekey.extend_with_extents(self.prefix, source, sources)
    self.source = source
    self.assert_holds_sources(self.prefix, sources)

  def test_nothing_to_add(self):
    result = rekey.extend_with_extents(self.prefix, self.source, {})
    self.assertEqual(result.method, 'none')
    self.assertEqual(os.listdir(self.target_dir).count('variables.index'), 1)
    shutil.rmtree(self.target_dir)


if __name__ == '__main__':
  absltest.main()
