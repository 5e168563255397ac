"""`raw_signatures=True`: raw-tensor signatures beside the tf.Example ones.

Real canned estimators, real exports, TF1 and TF2 loaders; nothing is mocked.
"""

import os

import numpy as np
import tensorflow as tf
from absl.testing import absltest

import multimode_export
from testing import datasets
from testing import faults
from testing import models
from testing import receiver_fns
from testing import running

ModeKeys = tf.estimator.ModeKeys
# Rows whose `cat` is in the vocabulary, then one out of it ('d').
_ROWS = slice(0, 8)


def _expected(estimator, features):
  rows = {k: v[_ROWS] for k, v in features.items()}
  return rows, list(estimator.predict(
      lambda: tf.data.Dataset.from_tensor_slices(rows).batch(8)))


class RawSignaturesTest(models.ClassRootMixin, tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.estimator, cls.spec, cls.features = models.train_canned_with_vocabulary(
        os.path.join(cls.root, 'model'))
    cls.rows, cls.predictions = _expected(cls.estimator, cls.features)
    cls.receivers = receiver_fns.parsing_receiver_map(cls.spec, cls.features)

  def _export(self, **kwargs):
    return multimode_export.export_all_saved_models(
        self.estimator, self.create_tempdir().full_path, self.receivers,
        raw_signatures=True, **kwargs)

  def _check_serve(self, export_dir):
    """raw:predict on the parsed rows == predict on tf.Examples == predict()."""
    graph, session, meta = running.tf1_load(export_dir, ['serve'])
    with graph.as_default(), session:
      raw_sig = meta.signature_def['raw:predict']
      self.assertEqual(sorted(raw_sig.inputs), ['cat', 'x'])
      self.assertEqual(raw_sig.inputs['cat'].dtype, tf.string.as_datatype_enum)
      self.assertEqual(raw_sig.inputs['cat'].tensor_shape.dim[1].size, 1)
      raw = running.run_signature(session, meta, 'raw:predict', self.rows)
      examples = np.array(datasets.serialize_examples(self.rows), object)
      parsed = running.run_signature(session, meta, 'predict',
                                     {'examples': examples})
    self.assertEqual(sorted(raw), sorted(parsed))
    for key in raw:
      self.assertAllEqual(raw[key], parsed[key], msg=key)
    self.assertAllClose(raw['probabilities'],
                        [p['probabilities'] for p in self.predictions])
    self.assertAllEqual(raw['class_ids'],
                        [p['class_ids'] for p in self.predictions])

  def test_shared_layout_serve_graph_gets_raw_predict(self):
    path = self._export()
    self._check_serve(path)
    [serve] = [m for m in running.read_meta_graphs(path)
               if list(m.meta_info_def.tags) == ['serve']]
    # The stock signatures stay; classify and regress take one string input:
    # no raw twin.
    self.assertEqual(sorted(serve.signature_def),
                     ['classification', 'predict', 'raw:predict',
                      'regression', 'serving_default'])
    for meta in running.read_meta_graphs(path):
      if list(meta.meta_info_def.tags) != ['serve']:
        self.assertFalse([k for k in meta.signature_def
                          if k.startswith('raw:')])

  def test_tf2_loader_runs_the_raw_signature(self):
    path = self._export()
    loaded = tf.saved_model.load(path, tags=['serve'])
    out = loaded.signatures['raw:predict'](
        x=tf.constant(self.rows['x']),
        cat=tf.constant(self.rows['cat'].astype(bytes)))
    self.assertAllClose(out['probabilities'],
                        [p['probabilities'] for p in self.predictions])

  def test_per_mode_layout_mixin_and_exporter(self):
    paths = multimode_export.export_saved_models_per_mode(
        self.estimator, self.create_tempdir().full_path, self.receivers,
        raw_signatures=True)
    self._check_serve(paths[ModeKeys.PREDICT])
    mixin = models.MixinEstimator(
        model_fn=self.estimator.model_fn, model_dir=self.estimator.model_dir,
        config=self.estimator.config)
    self._check_serve(mixin.export_all_saved_models(
        self.create_tempdir().full_path, self.receivers, raw_signatures=True))
    exporter = multimode_export.MultiModeExporter(
        'raw', self.receivers, raw_signatures=True, layout='per_mode')
    base = self.create_tempdir().full_path
    exporter.export(self.estimator, base,
                    tf.train.latest_checkpoint(self.estimator.model_dir), {},
                    False)
    [version] = tf.io.gfile.listdir(os.path.join(base, 'serve'))
    self._check_serve(os.path.join(base, 'serve', version))

  def test_verify_runs_and_inspect_shows_the_raw_signature(self):
    path = self._export()
    report = multimode_export.verify(path)
    self.assertTrue(report.ok, str(report))
    names = [c.name for c in report.checks]
    self.assertIn('tf1_signature:raw:predict', names)
    self.assertIn('raw_matches:raw:predict', names)
    self.assertIn("'raw:predict'", str(multimode_export.inspect(path)))

  def test_raw_receiver_gets_no_extra_signature(self):
    estimator = models.train_custom(os.path.join(self.root, 'custom'))
    plain = multimode_export.export_all_saved_models(
        estimator, self.create_tempdir().full_path,
        receiver_fns.receiver_map())
    raw = multimode_export.export_all_saved_models(
        estimator, self.create_tempdir().full_path,
        receiver_fns.receiver_map(), raw_signatures=True)
    self.assertEqual(
        {tuple(m.meta_info_def.tags): sorted(m.signature_def)
         for m in running.read_meta_graphs(plain)},
        {tuple(m.meta_info_def.tags): sorted(m.signature_def)
         for m in running.read_meta_graphs(raw)})

  def test_sparse_feature_is_fed_as_its_components(self):
    estimator = models.train_custom(os.path.join(self.root, 'sparse'))

    def receiver():
      serialized = tf.compat.v1.placeholder(tf.string, [None])
      parsed = tf.io.parse_example(serialized, {
          'x': tf.io.FixedLenFeature([datasets.FEATURE_DIM], tf.float32),
          'tag': tf.io.VarLenFeature(tf.int64)})
      return tf.estimator.export.ServingInputReceiver(
          parsed, {'examples': serialized})

    path = multimode_export.export_all_saved_models(
        estimator, self.create_tempdir().full_path,
        {ModeKeys.PREDICT: receiver}, raw_signatures=True)
    [meta] = running.read_meta_graphs(path)
    self.assertEqual(sorted(meta.signature_def['raw:serving_default'].inputs),
                     ['tag/dense_shape', 'tag/indices', 'tag/values', 'x'])
    self.assertTrue(multimode_export.verify(path).ok)


class RawSignaturesBadInputTest(models.ClassRootMixin, tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.estimator = models.train_custom(os.path.join(cls.root, 'model'))

  def _assert_refused(self, receiver, error, fragment, **kwargs):
    base = os.path.join(self.create_tempdir().full_path, 'base')
    with self.assertRaisesRegex(error, fragment):
      multimode_export.export_all_saved_models(
          self.estimator, base, {ModeKeys.PREDICT: receiver}, **kwargs)
    self.assertIsNone(faults.snapshot(base))

  def _parsing_receiver(self, alternative=False):
    def receiver():
      serialized = tf.compat.v1.placeholder(tf.string, [None])
      parsed = tf.io.parse_example(serialized, {
          'x': tf.io.FixedLenFeature([datasets.FEATURE_DIM], tf.float32)})
      alternatives = {'raw': {'x': parsed['x']}} if alternative else None
      return tf.estimator.export.ServingInputReceiver(
          parsed, {'examples': serialized}, alternatives)
    return receiver

  def test_not_a_bool(self):
    self._assert_refused(self._parsing_receiver(), TypeError,
                         "raw_signatures: expected True or False, got 'yes'",
                         raw_signatures='yes')

  def test_alternative_named_raw_already(self):
    self._assert_refused(self._parsing_receiver(alternative=True),
                         multimode_export.RawSignatureError,
                         "already has a receiver_tensors_alternatives entry "
                         "named 'raw'", raw_signatures=True)

  def test_no_predict_output(self):
    estimator = tf.estimator.Estimator(
        _regression_only_model_fn, model_dir=self.estimator.model_dir)
    base = os.path.join(self.create_tempdir().full_path, 'base')
    with self.assertRaisesRegex(multimode_export.RawSignatureError,
                                'no export output of the serve graph can '
                                r"take raw inputs \(outputs \['regression'"):
      multimode_export.export_all_saved_models(
          estimator, base, {ModeKeys.PREDICT: self._parsing_receiver()},
          raw_signatures=True)
    self.assertIsNone(faults.snapshot(base))


def _regression_only_model_fn(features, labels, mode):
  spec = models.linear_model_fn(features, labels, mode, {})
  return spec._replace(export_outputs={
      'regression': spec.export_outputs['regression'],
      'serving_default': spec.export_outputs['regression']})


if __name__ == '__main__':
  absltest.main()
