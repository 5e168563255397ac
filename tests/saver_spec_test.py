"""Tests of saver_spec: what a MetaGraphDef's saver restores, on real graphs.

Every expectation is checked against what the same saver really writes to a
checkpoint in a Session, not against hand-written lists.
"""

import os

import numpy as np
import tensorflow as tf
from absl.testing import absltest
from absl.testing import parameterized
from tensorflow.core.protobuf import saver_pb2

from multimode_export.graph import _saver_spec as saver_spec


def _saved_and_exported(test, build, sharded=True, **saver_kwargs):
  """Builds a graph, saves it with its saver, exports its MetaGraphDef.

  Returns:
    (meta_graph_def, {key: (dtype name, shape)} of the written checkpoint,
     the graph's variables).
  """
  graph = tf.Graph()
  with graph.as_default():
    variables = build()
    saver = tf.compat.v1.train.Saver(sharded=sharded, **saver_kwargs)
    with tf.compat.v1.Session(graph=graph) as session:
      session.run(tf.compat.v1.global_variables_initializer())
      prefix = saver.save(session,
                          os.path.join(test.create_tempdir().full_path, 'c'),
                          write_meta_graph=False)
    meta_graph_def = saver.export_meta_graph()
  reader = tf.train.load_checkpoint(prefix)
  dtypes = reader.get_variable_to_dtype_map()
  written = {k: (dtypes[k].name, tuple(s))
             for k, s in reader.get_variable_to_shape_map().items()}
  return meta_graph_def, written, variables


def _dense(use_resource):
  def build():
    with tf.compat.v1.variable_scope('model', use_resource=use_resource):
      return [
          tf.compat.v1.get_variable('kernel', [3, 2]),
          tf.compat.v1.get_variable('bias', [2], dtype=tf.float64),
          tf.compat.v1.get_variable(
              'counts', [4], dtype=tf.int64,
              initializer=tf.compat.v1.zeros_initializer()),
          tf.compat.v1.get_variable(
              'names', [2], dtype=tf.string,
              initializer=tf.compat.v1.constant_initializer(['a', 'b'])),
          tf.compat.v1.train.get_or_create_global_step(),
      ]
  return build


class RequiredVariablesTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(
      ('resource_sharded', True, True), ('resource_single', True, False),
      ('ref_sharded', False, True), ('ref_single', False, False))
  def test_dense_variables(self, use_resource, sharded):
    meta, written, variables = _saved_and_exported(
        self, _dense(use_resource), sharded=sharded)
    self.assertEqual(
        {v.op.type for v in variables[:-1]},
        {'VarHandleOp'} if use_resource else {'VariableV2'})
    specs = saver_spec.required_variables(meta)
    self.assertEqual(sorted(specs), sorted(written))
    for key, spec in specs.items():
      self.assertEqual(spec.name, key)
      self.assertEqual((spec.dtype, spec.shape), written[key], key)
      self.assertEqual(spec.slices, ('',))
      self.assertFalse(spec.is_partitioned)

  @parameterized.named_parameters(('resource', True), ('ref', False))
  def test_partitioned_variable_slices(self, use_resource):
    def build():
      with tf.compat.v1.variable_scope('emb', use_resource=use_resource):
        table = tf.compat.v1.get_variable(
            'table', [7, 2],
            partitioner=tf.compat.v1.fixed_size_partitioner(3))
        plain = tf.compat.v1.get_variable('plain', [2])
      return list(table) + [plain]

    meta, written, variables = _saved_and_exported(self, build)
    specs = saver_spec.required_variables(meta)
    self.assertEqual(sorted(specs), sorted(written))
    self.assertEqual(sorted(specs), ['emb/plain', 'emb/table'])
    table = specs['emb/table']
    self.assertTrue(table.is_partitioned)
    self.assertEqual(table.shape, written['emb/table'][1])
    self.assertEqual(table.shape, (7, 2))
    self.assertEqual(table.slices, tuple(sorted(
        v._save_slice_info.spec for v in variables[:3])))  # pylint: disable=protected-access
    self.assertLen(table.slices, 3)
    self.assertFalse(specs['emb/plain'].is_partitioned)

  def test_custom_saver_var_list_subset_with_other_keys(self):
    holder = {}

    def build():
      variables = _dense(True)()
      holder['var_list'] = {'renamed/kernel': variables[0],
                            'global_step': variables[-1]}
      return variables

    # var_list is read inside the graph, after build() ran.
    graph = tf.Graph()
    with graph.as_default():
      build()
      saver = tf.compat.v1.train.Saver(holder['var_list'], sharded=True)
      with tf.compat.v1.Session(graph=graph) as session:
        session.run(tf.compat.v1.global_variables_initializer())
        prefix = saver.save(session, os.path.join(
            self.create_tempdir().full_path, 'c'), write_meta_graph=False)
      meta = saver.export_meta_graph()
    specs = saver_spec.required_variables(meta)
    written = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    self.assertEqual(sorted(specs), sorted(written))
    self.assertEqual(sorted(specs), ['global_step', 'renamed/kernel'])
    self.assertEqual(specs['renamed/kernel'].shape, (3, 2))
    self.assertEqual(specs['global_step'].dtype, 'int64')

  def test_v1_format_saver(self):
    # TF 2.x restores V1 checkpoints with RestoreV2 too, so the restore side
    # is readable; a V1 (SaveSlices) save side writes no constants. Whether a
    # Session is needed then depends on the checkpoint's format only.
    meta, written, _ = _saved_and_exported(
        self, _dense(True), sharded=False,
        write_version=saver_pb2.SaverDef.V1)
    specs = saver_spec.required_variables(meta)
    self.assertEqual({k: (s.dtype, s.shape) for k, s in specs.items()},
                     written)
    self.assertEqual(saver_spec.saved_constants(meta), {})

  def test_meta_graph_without_saver_is_unsupported(self):
    with tf.Graph().as_default():
      tf.compat.v1.get_variable('v', [2])
      meta = tf.compat.v1.train.export_meta_graph()
    with self.assertRaisesRegex(saver_spec.UnsupportedSaverError, 'no saver'):
      saver_spec.required_variables(meta)

  def test_union_keeps_the_first_maps_entries(self):
    first = {'a': saver_spec.VariableSpec('a', 'float32', (1,))}
    second = {'a': saver_spec.VariableSpec('a', 'float32', None),
              'b': saver_spec.VariableSpec('b', 'int64', ())}
    merged = saver_spec.union([first, second])
    self.assertIs(merged['a'], first['a'])
    self.assertIs(merged['b'], second['b'])


class SavedConstantsTest(tf.test.TestCase):

  def test_name_based_saver_has_none(self):
    meta, _, _ = _saved_and_exported(self, _dense(True))
    self.assertEqual(saver_spec.saved_constants(meta), {})

  def test_object_based_saver_writes_its_object_graph(self):
    from multimode_export import _tf_private  # pylint: disable=g-import-not-at-top
    directory = self.create_tempdir().full_path
    graph = tf.Graph()
    with graph.as_default():
      w = tf.compat.v1.get_variable('w', [3])
      step = tf.compat.v1.train.get_or_create_global_step()
      saver = _tf_private.saver_for_object_checkpoint(
          tf.train.Checkpoint(w=w, step=step))
      with tf.compat.v1.Session(graph=graph) as session:
        session.run(tf.compat.v1.global_variables_initializer())
        prefix = saver.save(session, os.path.join(directory, 'c'),
                            write_meta_graph=False)
      meta = saver.export_meta_graph()
    written = tf.train.load_checkpoint(prefix)
    constants = saver_spec.saved_constants(meta)
    restored = saver_spec.required_variables(meta)
    # Everything written is either restored or a constant, never both.
    self.assertEqual(sorted(set(constants) | set(restored)),
                     sorted(written.get_variable_to_shape_map()))
    self.assertEqual(list(constants), ['_CHECKPOINTABLE_OBJECT_GRAPH'])
    self.assertNotIn('_CHECKPOINTABLE_OBJECT_GRAPH', restored)
    self.assertEqual(
        np.asarray(constants['_CHECKPOINTABLE_OBJECT_GRAPH']).item(),
        written.get_tensor('_CHECKPOINTABLE_OBJECT_GRAPH'))


if __name__ == '__main__':
  absltest.main()
