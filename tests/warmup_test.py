"""`warmup_requests=`: TF Serving warmup records in `assets.extra/`.

No TF Serving binary can be had here, so each record is replayed through the
exported serve graph (TF1 loader, the record's signature and inputs), and the
file is read with the real tensorflow-serving-api protos. Real canned
estimators and exports; nothing is mocked.
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

try:
  from tensorflow_serving.apis import prediction_log_pb2  # pylint: disable=g-import-not-at-top
except ImportError:
  if os.environ.get('CI') == 'true':
    raise  # .ci/run installs it: its absence is a CI failure, not a skip.
  prediction_log_pb2 = None

ModeKeys = tf.estimator.ModeKeys
_WARMUP = os.path.join('assets.extra', 'tf_serving_warmup_requests')


def _read(export_dir):
  return [prediction_log_pb2.PredictionLog.FromString(r) for r in
          tf.compat.v1.io.tf_record_iterator(os.path.join(export_dir, _WARMUP))]


def _request(log):
  return getattr(log, log.WhichOneof('log_type')).request


class WarmupTest(models.ClassRootMixin, tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.estimator, cls.spec, cls.features = models.train_canned_with_vocabulary(
        os.path.join(cls.root, 'model'))
    cls.receivers = receiver_fns.parsing_receiver_map(cls.spec, cls.features)

  def setUp(self):
    super().setUp()
    if prediction_log_pb2 is None:
      self.skipTest('tensorflow-serving-api is not installed')

  def _export(self, **kwargs):
    return multimode_export.export_all_saved_models(
        self.estimator, self.create_tempdir().full_path, self.receivers,
        raw_signatures=True, **kwargs)

  def _replay(self, export_dir):
    """Runs every record through its signature; returns key -> outputs."""
    logs = _read(export_dir)
    graph, session, meta = running.tf1_load(export_dir, ['serve'])
    out = {}
    with graph.as_default(), session:
      for log in logs:
        request = _request(log)
        key = request.model_spec.signature_name
        sig = meta.signature_def[key]
        if log.HasField('predict_log'):
          feeds = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        else:
          [input_key] = sig.inputs
          feeds = {input_key: np.array(
              [e.SerializeToString()
               for e in request.input.example_list.examples], object)}
        self.assertEqual(sorted(feeds), sorted(sig.inputs), key)
        out[key] = running.run_signature(session, meta, key, feeds)
    return out

  def test_synthetic_records_for_every_serving_signature_replay(self):
    path = self._export(warmup_requests=True)
    logs = _read(path)
    kinds = {_request(l).model_spec.signature_name: l.WhichOneof('log_type')
             for l in logs}
    self.assertEqual(kinds, {
        'classification': 'classify_log', 'predict': 'predict_log',
        'raw:predict': 'predict_log', 'regression': 'regress_log',
        'serving_default': 'classify_log'})
    self.assertEqual(sorted(self._replay(path)), sorted(kinds))
    report = multimode_export.verify(path)
    self.assertTrue(report.ok, str(report))
    [check] = [c for c in report.checks if c.name == 'warmup']
    self.assertIn('5 records replayed', check.detail)

  def test_given_examples_and_feature_dicts(self):
    rows = {k: v[:3] for k, v in self.features.items()}
    serialized = datasets.serialize_examples(rows)
    requests = [tf.train.Example.FromString(serialized[0]), serialized[1],
                {'x': rows['x'][2].tolist(), 'cat': 'c'}]
    path = self._export(warmup_requests=requests,
                        warmup_signatures=['predict', 'raw:predict'])
    logs = {_request(l).model_spec.signature_name: _request(l)
            for l in _read(path)}
    self.assertEqual(sorted(logs), ['predict', 'raw:predict'])
    self.assertEqual(list(tf.make_ndarray(logs['predict'].inputs['examples'])),
                     serialized)
    raw = logs['raw:predict'].inputs
    self.assertAllEqual(tf.make_ndarray(raw['x']), rows['x'])
    self.assertAllEqual(tf.make_ndarray(raw['cat']), rows['cat'])
    expected = list(self.estimator.predict(
        lambda: tf.data.Dataset.from_tensor_slices(rows).batch(3)))
    replayed = self._replay(path)
    for key in logs:
      self.assertAllClose(replayed[key]['probabilities'],
                          [p['probabilities'] for p in expected])

  def test_per_mode_serve_part_only_and_verified_before_publishing(self):
    paths = multimode_export.export_saved_models_per_mode(
        self.estimator, self.create_tempdir().full_path, self.receivers,
        warmup_requests=True, verify=True)
    for mode, path in paths.items():
      self.assertEqual(os.path.exists(os.path.join(path, _WARMUP)),
                       mode == ModeKeys.PREDICT, mode)
    self.assertLen(self._replay(paths[ModeKeys.PREDICT]), 4)

  def test_verify_fails_on_a_record_naming_a_missing_signature(self):
    path = self._export(warmup_requests=True)
    logs = _read(path)
    _request(logs[0]).model_spec.signature_name = 'gone'
    with tf.io.TFRecordWriter(os.path.join(path, _WARMUP)) as writer:
      for log in logs:
        writer.write(log.SerializeToString())
    report = multimode_export.verify(path)
    [check] = [c for c in report.checks if c.name == 'warmup']
    self.assertFalse(check.ok)
    self.assertIn("record 0: ValueError: signature 'gone' is not in the "
                  'serve graph', check.detail)


class WarmupBadInputTest(models.ClassRootMixin, tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.estimator, cls.spec, cls.features = models.train_canned_with_vocabulary(
        os.path.join(cls.root, 'model'), steps=2)
    cls.receivers = receiver_fns.parsing_receiver_map(cls.spec, cls.features)

  def _assert_refused(self, error, fragment, receivers=None, **kwargs):
    base = os.path.join(self.create_tempdir().full_path, 'base')
    with self.assertRaisesRegex(error, fragment):
      multimode_export.export_all_saved_models(
          self.estimator, base, receivers or self.receivers, **kwargs)
    self.assertIsNone(faults.snapshot(base))

  def test_empty_list(self):
    self._assert_refused(multimode_export.WarmupRequestsError,
                         'expected at least one request, got an empty list',
                         warmup_requests=[])

  def test_not_a_list(self):
    self._assert_refused(TypeError, 'warmup_requests: expected True or a list',
                         warmup_requests='examples')

  def test_item_of_the_wrong_type(self):
    self._assert_refused(TypeError, r'warmup_requests\[1\]: expected a '
                         'tf.train.Example, serialized example or feature '
                         'dict, got int', warmup_requests=[{'x': [0.0] * 3}, 7])

  def test_feature_the_graph_does_not_parse(self):
    self._assert_refused(multimode_export.WarmupRequestsError,
                         r"warmup_requests\[0\]: feature 'age' is not parsed",
                         warmup_requests=[{'age': 3}])

  def test_bytes_that_are_no_example(self):
    self._assert_refused(multimode_export.WarmupRequestsError,
                         r'warmup_requests\[0\]: bytes that are not a '
                         'serialized tf.Example', warmup_requests=[b'\xff'])

  def test_unknown_signature(self):
    self._assert_refused(multimode_export.WarmupRequestsError,
                         "warmup_signatures: 'nope' is not a serving "
                         'signature', warmup_requests=True,
                         warmup_signatures=['nope'])

  def test_no_predict_mode(self):
    receivers = {m: f for m, f in self.receivers.items()
                 if m != ModeKeys.PREDICT}
    self._assert_refused(multimode_export.WarmupRequestsError,
                         'expected a PREDICT receiver to warm up',
                         receivers=receivers, warmup_requests=True)

  def test_assets_extra_writes_the_same_file(self):
    source = os.path.join(self.create_tempdir().full_path, 'w')
    with open(source, 'wb') as f:
      f.write(b'')
    self._assert_refused(multimode_export.WarmupRequestsError,
                         "assets_extra already writes "
                         "'tf_serving_warmup_requests'", warmup_requests=True,
                         assets_extra={'tf_serving_warmup_requests': source})


if __name__ == '__main__':
  absltest.main()
