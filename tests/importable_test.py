"""Every MetaGraphDef of an export imports into a fresh graph, or no export.

`tf.estimator.experimental.LinearSDCA` puts a hash table's SaveableObject in
the `saveable_objects` collection; the stock export writes it by its
checkpoint name, which is no node, and the `train` tag set fails to load.
"""

import collections
import os

import numpy as np
import tensorflow as tf

import multimode_export
from multimode_export import errors
from multimode_export.graph import _importable as importable
from testing import assertions
from testing import models
from testing import receiver_fns

ModeKeys = tf.estimator.ModeKeys
_Named = collections.namedtuple('_Named', ['name'])


def _sdca_receivers():
  features = {'x': tf.constant([[1.0]]), 'id': tf.constant(['a'])}
  supervised = tf.estimator.experimental.build_raw_supervised_input_receiver_fn(
      features, tf.constant([[0]]))
  serving = tf.estimator.export.build_raw_serving_input_receiver_fn(
      {'x': tf.constant([[1.0]])})
  return {ModeKeys.TRAIN: supervised, ModeKeys.EVAL: supervised,
          ModeKeys.PREDICT: serving}


def _train_sdca(model_dir: str) -> tf.estimator.LinearClassifier:
  estimator = tf.estimator.LinearClassifier(
      [tf.feature_column.numeric_column('x')], model_dir=model_dir,
      optimizer=tf.estimator.experimental.LinearSDCA(
          example_id_column='id', symmetric_l2_regularization=0.1))

  def input_fn():
    features = {'x': tf.constant([[1.0], [2.0], [3.0]]),
                'id': tf.constant(['a', 'b', 'c'])}
    return tf.data.Dataset.from_tensors(
        (features, tf.constant([[0], [1], [1]]))).repeat()
  estimator.train(input_fn, steps=3)
  return estimator


def _foreign_collection_model_fn(features, labels, mode, params):
  spec = models.linear_model_fn(features, labels, mode, params)
  # Something with a `name` that is no node: export_meta_graph writes it to
  # a node-list collection, import_meta_graph cannot resolve it.
  tf.compat.v1.add_to_collection('my_handles', _Named('no_such_node'))
  return spec


class ImportableTest(models.ClassRootMixin, tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.sdca = _train_sdca(os.path.join(cls.root, 'sdca'))

  def test_sdca_train_graph_loads(self):
    export = multimode_export.export_all_saved_models(
        self.sdca, self.create_tempdir().full_path, _sdca_receivers(),
        verify=False)
    for tags in (['train'], ['eval'], ['serve']):
      with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        meta = tf.compat.v1.saved_model.loader.load(session, tags, export)
        self.assertEqual(list(meta.meta_info_def.tags), tags)
    # The table the SDCA hook keeps is still saved and restored.
    self.assertTrue(any('ShardedMutableHashTable' in name for name in
                        assertions.saved_variables(export)))

  def test_repair_drops_only_entries_that_name_no_node(self):
    meta = tf.compat.v1.MetaGraphDef()
    meta.graph_def.node.add(name='table', op='NoOp')
    meta.collection_def['saveable_objects'].node_list.value.extend(
        ['table', 'table-keys-not-a-node'])
    self.assertEqual(importable.drop_unnamed_saveables(meta),
                     ['table-keys-not-a-node'])
    self.assertEqual(
        list(meta.collection_def['saveable_objects'].node_list.value),
        ['table'])

  def test_a_graph_that_does_not_import_is_refused(self):
    estimator = tf.estimator.Estimator(
        _foreign_collection_model_fn, params={},
        model_dir=os.path.join(self.root, 'foreign'))
    estimator.train(lambda: tf.data.Dataset.from_tensors(
        ({'x': np.zeros([1, 3], np.float32)}, np.zeros([1, 1], np.float32))),
                    steps=1)
    base = self.create_tempdir().full_path
    with self.assertRaisesRegex(errors.UnloadableGraphError,
                                r"mode 'train'.*node 'no_such_node'") as e:
      multimode_export.export_all_saved_models(estimator, base,
                                               receiver_fns.receiver_map())
    self.assertEqual((e.exception.mode, e.exception.node),
                     ('train', 'no_such_node'))
    self.assertEqual(os.listdir(base), [])


if __name__ == '__main__':
  tf.test.main()
