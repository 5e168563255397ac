"""`tf2/_variable_map`: every mode's variables onto the carrier's, by key.

Graphs built here with real savers: plain names, an EMA-style saver (serve's
`w` restored from `w/ExponentialMovingAverage`), partitioned variables, and
the refusals: a key the carrier does not restore, a reference variable.
"""

import tensorflow as tf
from absl.testing import absltest

from multimode_export import errors
from multimode_export.tf2 import _source
from multimode_export.tf2 import _variable_map

ModeKeys = tf.estimator.ModeKeys


def _meta_graph(build):
  """The MetaGraphDef (with saver) of a graph `build()` fills."""
  with tf.Graph().as_default():
    saver = build()
    return tf.compat.v1.train.export_meta_graph(saver_def=saver.saver_def)


def _train():
  w = tf.compat.v1.get_variable('w', [2], use_resource=True)
  shadow = tf.compat.v1.get_variable('w/ExponentialMovingAverage', [2],
                                     use_resource=True, trainable=False)
  p = tf.compat.v1.get_variable(
      'p', [4, 1], use_resource=True,
      partitioner=tf.compat.v1.fixed_size_partitioner(2))
  del w, shadow, p
  return tf.compat.v1.train.Saver()


def _source_of(*parts):
  return _source.Source('/export', tuple(
      _source.Part(mode, '/export', meta_graph) for mode, meta_graph in parts))


class PlanVariablesTest(absltest.TestCase):

  def test_same_keys_and_ema_shadows_map_onto_the_carrier(self):
    def serve():
      w = tf.compat.v1.get_variable('w', [2], use_resource=True)
      p = tf.compat.v1.get_variable(
          'p', [4, 1], use_resource=True,
          partitioner=tf.compat.v1.fixed_size_partitioner(2))
      return tf.compat.v1.train.Saver(
          {'w/ExponentialMovingAverage': w, 'p': list(p)})

    plan = _variable_map.plan_variables(_source_of(
        (ModeKeys.TRAIN, _meta_graph(_train)),
        (ModeKeys.PREDICT, _meta_graph(serve))))
    self.assertEqual(plan.shared[ModeKeys.PREDICT], {
        'w': 'w/ExponentialMovingAverage',
        'p/part_0': 'p/part_0', 'p/part_1': 'p/part_1'})
    self.assertEqual(plan.checkpoint_entries['w'], ('w', ''))
    self.assertEqual(plan.checkpoint_entries['p/part_1'],
                     ('p', '4 1 2,2:0,1'))

  def test_a_key_the_carrier_does_not_restore_is_refused(self):
    def serve():
      w = tf.compat.v1.get_variable('w', [2], use_resource=True)
      return tf.compat.v1.train.Saver({'renamed/w': w})

    with self.assertRaises(errors.ConversionError) as raised:
      _variable_map.plan_variables(_source_of(
          (ModeKeys.TRAIN, _meta_graph(_train)),
          (ModeKeys.PREDICT, _meta_graph(serve))))
    self.assertEqual(raised.exception.what, 'renamed/w')
    self.assertIn('does not restore', str(raised.exception))

  def test_a_reference_variable_is_refused(self):
    def train():
      tf.compat.v1.get_variable('v', [2], use_resource=False)
      return tf.compat.v1.train.Saver()

    with self.assertRaisesRegex(errors.ConversionError,
                                'reference variables'):
      _variable_map.plan_variables(_source_of(
          (ModeKeys.TRAIN, _meta_graph(train))))


if __name__ == '__main__':
  absltest.main()
