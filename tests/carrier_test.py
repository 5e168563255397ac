"""The builder, the variables carrier, and whose saver writes `variables/`.

Point 1: the carrier is what `choose_variables_carrier` says, and it is the
carrier's saver that decides `variables/` (change the preference, change
the result). Point 2: a Scaffold saver this package cannot fully read from
the graph (a subclass, a wrapper) is called as the stock export calls it.
"""

import itertools
import os
from unittest import mock

import tensorflow as tf
from absl.testing import parameterized
from tensorflow.core.protobuf import trackable_object_graph_pb2

import multimode_export
from multimode_export import _options as options_lib
from multimode_export import _plan as plan_lib
from multimode_export import mixin
from multimode_export.graph import _builder as builder_lib
from multimode_export.graph import _modes as modes_lib
from testing import assertions
from testing import datasets
from testing import models
from testing import receiver_fns
from testing import running

ModeKeys = tf.estimator.ModeKeys
ALL = (ModeKeys.TRAIN, ModeKeys.EVAL, ModeKeys.PREDICT)
SUBSETS = [s for n in (1, 2, 3) for s in itertools.combinations(ALL, n)]
_OBJECT_GRAPH = '_CHECKPOINTABLE_OBJECT_GRAPH'


def _object_graph_children(value: bytes):
  graph = trackable_object_graph_pb2.TrackableObjectGraph()
  graph.ParseFromString(value)
  return sorted(c.local_name for c in graph.nodes[0].children)


class _RecordingSaver(tf.compat.v1.train.Saver):
  """A user's Saver subclass: records its calls, then does the usual."""

  calls = []

  def restore(self, sess, save_path):
    type(self).calls.append(('restore', save_path))
    return super().restore(sess, save_path)

  def save(self, sess, save_path, *args, **kwargs):
    type(self).calls.append(('save', save_path))
    return super().save(sess, save_path, *args, **kwargs)


def _subclass_saver_model_fn(features, labels, mode, params):
  spec = models.linear_model_fn(features, labels, mode, params)
  return spec._replace(scaffold=tf.compat.v1.train.Scaffold(
      saver=_RecordingSaver(sharded=True)))


_WRAPPED_SAVERS = []  # what the model_fn made, per test


def _wrapped_saver_model_fn(features, labels, mode, params):
  spec = models.linear_model_fn(features, labels, mode, params)
  saver = tf.compat.v1.train.Saver(sharded=True)
  wrapped = mock.Mock(wraps=saver, saver_def=saver.saver_def)
  _WRAPPED_SAVERS.append(wrapped)
  return spec._replace(scaffold=tf.compat.v1.train.Scaffold(saver=wrapped))


class CarrierTest(models.ClassRootMixin, parameterized.TestCase,
                  tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.custom = models.train_custom(os.path.join(cls.root, 'custom'))
    cls.object_based = tf.estimator.Estimator(
        models.checkpoint_saver_model_fn, os.path.join(cls.root, 'object'))
    cls.object_based.train(datasets.input_fn(), steps=2)

  @parameterized.parameters(*SUBSETS)
  def test_carrier_is_the_preference_logic(self, *subset):
    plan = plan_lib.plan_export(self.custom, self.create_tempdir().full_path,
                                receiver_fns.receiver_map(subset),
                                options_lib.ExportOptions())
    self.assertEqual(plan.carrier, modes_lib.choose_variables_carrier(subset))
    self.assertEqual([g.mode for g in plan.graphs],
                     [m for m in modes_lib.MODE_ORDER if m in subset])

  def test_the_carriers_saver_decides_variables(self):
    # TRAIN's tf.train.Checkpoint saver tracks the optimizer, PREDICT's does
    # not: the object graph in variables/ tells whose saver wrote it.
    receivers = receiver_fns.receiver_map((ModeKeys.TRAIN, ModeKeys.PREDICT))
    children = {}
    for first in (ModeKeys.TRAIN, ModeKeys.PREDICT):
      preference = (first,) + tuple(m for m in ALL if m != first)
      with mock.patch.object(modes_lib, 'CARRIER_PREFERENCE', preference):
        plan = plan_lib.plan_export(
            self.object_based, self.create_tempdir().full_path, receivers,
            options_lib.ExportOptions())
        path = multimode_export.export_all_saved_models(
            self.object_based, self.create_tempdir().full_path, receivers)
      self.assertEqual(plan.carrier, first)
      [carrier] = [g for g in plan.graphs if g.mode == first]
      written = assertions.saved_variables(path)[_OBJECT_GRAPH]
      self.assertEqual(written, carrier.constants[_OBJECT_GRAPH])
      children[first] = _object_graph_children(written)
      running.run_all_tf1(path, {'x': datasets.make_data()[0],
                                 'label': datasets.make_data()[1]})
    self.assertIn('optimizer', children[ModeKeys.TRAIN])
    self.assertNotIn('optimizer', children[ModeKeys.PREDICT])

  def test_one_builder_adds_every_mode_through_add_meta_graph_for_mode(self):
    seen = []
    original = builder_lib.MetaGraphBuilder._add_meta_graph_for_mode

    def spy(builder, mode, *args):
      seen.append((id(builder), mode))
      return original(builder, mode, *args)

    with mock.patch.object(builder_lib.MetaGraphBuilder,
                           '_add_meta_graph_for_mode', spy):
      plan_lib.plan_export(self.custom, self.create_tempdir().full_path,
                           receiver_fns.receiver_map(),
                           options_lib.ExportOptions())
    self.assertEqual([m for _, m in seen], list(ALL))
    self.assertLen({b for b, _ in seen}, 1)
    # The mixin does not shadow Estimator's own member of that name.
    self.assertNotIn('_add_meta_graph_for_mode', vars(mixin.MultiModeExportMixin))


class CustomSaverTest(models.ClassRootMixin, tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.model_dir = os.path.join(cls.root, 'model')
    models.train_custom(cls.model_dir)

  def test_saver_subclass_is_called_like_stock(self):
    _RecordingSaver.calls = []
    estimator = tf.estimator.Estimator(_subclass_saver_model_fn, params={},
                                       model_dir=self.model_dir)
    path = multimode_export.export_all_saved_models(
        estimator, self.create_tempdir().full_path,
        receiver_fns.receiver_map())
    kinds = [kind for kind, _ in _RecordingSaver.calls]
    self.assertEqual(kinds.count('save'), 1, _RecordingSaver.calls)
    # Restored from the checkpoint before saving (the carrier), as stock.
    first_restore = kinds.index('restore')
    self.assertLess(first_restore, kinds.index('save'))
    self.assertEqual(_RecordingSaver.calls[first_restore][1],
                     estimator.latest_checkpoint())
    self.assertEqual(assertions.comparable_variables(path).keys(),
                     assertions.checkpoint_values(
                         estimator.latest_checkpoint()).keys())
    running.run_all_tf1(path, {'x': datasets.make_data()[0],
                               'label': datasets.make_data()[1]})

  def test_wrapped_saver_is_restored_saved_and_exports_its_meta_graph(self):
    del _WRAPPED_SAVERS[:]
    estimator = tf.estimator.Estimator(_wrapped_saver_model_fn, params={},
                                       model_dir=self.model_dir)
    path = multimode_export.export_all_saved_models(
        estimator, self.create_tempdir().full_path,
        receiver_fns.receiver_map((ModeKeys.PREDICT,)))
    [saver] = _WRAPPED_SAVERS
    saver.restore.assert_any_call(mock.ANY, estimator.latest_checkpoint())
    saver.save.assert_called_once()
    self.assertTrue(saver.save.call_args[0][1].endswith('variables/variables'))
    saver.export_meta_graph.assert_called_once()
    running.run_all_tf1(path, {'x': datasets.make_data()[0]})


if __name__ == '__main__':
  tf.test.main()
