"""fingerprint.pb: TensorFlow's own values, on every layout and filesystem."""

import logging
import os
import tempfile
import uuid
from unittest import mock

import tensorflow as tf
from absl.testing import parameterized
from tensorflow.core.protobuf import fingerprint_pb2

import multimode_export
from multimode_export import _filesystem as filesystem
from multimode_export import _tf_private
from testing import models
from testing import receiver_fns

ModeKeys = tf.estimator.ModeKeys


def _expected_fingerprint(export_dir: str):
  """What TF computes, as `tf.saved_model.save` does, for the same files."""
  with tempfile.TemporaryDirectory() as copy:
    os.makedirs(os.path.join(copy, 'variables'))
    names = ['saved_model.pb', 'variables/variables.index']
    for name in names:
      tf.io.gfile.copy(filesystem.join(export_dir, name),
                       os.path.join(copy, name))
    with open(os.path.join(copy, 'saved_model.pb'), 'rb') as f:
      data = f.read()
    proto = fingerprint_pb2.FingerprintDef.FromString(
        _tf_private.fingerprint_def(copy, data))
  return tf.saved_model.experimental.Fingerprint.from_proto(proto)


class _Messages(logging.Handler):

  def __init__(self):
    super().__init__(logging.DEBUG)
    self.messages = []

  def emit(self, record):
    self.messages.append(record.getMessage())


class FingerprintTest(models.ClassRootMixin, parameterized.TestCase,
                      tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.estimator = models.train_custom(os.path.join(cls.root, 'model'))

  def _exports(self, layout, base):
    receivers = receiver_fns.receiver_map()
    if layout == 'shared':
      return [multimode_export.export_all_saved_models(
          self.estimator, base, receivers)]
    if layout == 'export_dir':
      return [multimode_export.export_all_saved_models(
          self.estimator, None, receivers, export_dir=base + '/fixed')]
    return list(multimode_export.export_saved_models_per_mode(
        self.estimator, base, receivers).values())

  @parameterized.product(layout=['shared', 'per_mode', 'export_dir'],
                         filesystem_root=['local', 'ram'])
  def test_fingerprint_is_tensorflows(self, layout, filesystem_root):
    if filesystem_root == 'ram':
      base = f'ram://fingerprint-{uuid.uuid4().hex}'
    else:
      base = self.create_tempdir().full_path
    exports = self._exports(layout, base)
    self.assertLen(exports, 3 if layout == 'per_mode' else 1)
    for export_dir in exports:
      self.assertEqual(tf.saved_model.experimental.read_fingerprint(export_dir),
                       _expected_fingerprint(export_dir), export_dir)

  def test_fingerprint_is_written_before_saved_model_pb(self):
    opened = []
    real_gfile = tf.io.gfile.GFile

    def recording(name, mode='r'):
      if 'w' in mode:
        opened.append(os.path.basename(filesystem.as_str(name)))
      return real_gfile(name, mode)

    with mock.patch.object(tf.io.gfile, 'GFile', recording):
      self._exports('shared', self.create_tempdir().full_path)
    self.assertIn('fingerprint.pb', opened)
    self.assertEqual(opened[-1], 'saved_model.pb')

  def test_loading_finds_the_fingerprint(self):
    [export_dir] = self._exports('shared', self.create_tempdir().full_path)
    handler = _Messages()
    logger = tf.get_logger()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
      tf.saved_model.load(export_dir, tags=['serve'])
    finally:
      logger.setLevel(level)
      logger.removeHandler(handler)
    self.assertFalse([m for m in handler.messages if 'Fingerprint' in m],
                     handler.messages)


if __name__ == '__main__':
  tf.test.main()
