"""saved_model/_writer.py: reading back the variables/ it just wrote.

The read-back is the last check before `saved_model.pb` is written. A fault
is injected into it (the first or every read raises what an unreadable index
raises): a transient failure is read again and the export publishes; a lasting
one is a write failure (`PublishError`) that leaves the base as it was, not a
`CheckpointReadError` about the user's checkpoint.
"""

import os
from unittest import mock

import tensorflow as tf
from absl.testing import absltest

import multimode_export
from multimode_export import errors
from multimode_export.saved_model import _writer
from multimode_export.variables import _checkpoint as checkpoint_lib
from testing import assertions
from testing import faults
from testing import models
from testing import receiver_fns


class ReadBackTest(models.ClassRootMixin, tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.estimator = models.train_custom(os.path.join(cls.root, 'model'),
                                        steps=3)

  def _export_with_failing_reads(self, failures: int):
    base = os.path.join(self.create_tempdir().full_path, 'base')
    os.makedirs(base)
    before = faults.snapshot(base)
    real_read = checkpoint_lib.read
    calls = []

    def read(prefix):
      if prefix.endswith(os.path.join('variables', 'variables')):  # written
        calls.append(prefix)
        if len(calls) <= failures:
          raise errors.CheckpointReadError(prefix, 'block checksum mismatch')
      return real_read(prefix)

    with mock.patch.object(_writer.checkpoint_lib, 'read', read):
      with self.assertLogs('absl', level='WARNING') as logs:
        try:
          path = multimode_export.export_all_saved_models(
              self.estimator, base, receiver_fns.receiver_map())
        except errors.PublishError as e:
          return base, before, calls, logs.output, e
    return path, before, calls, logs.output, None

  def test_a_failed_read_back_is_read_again_and_the_export_publishes(self):
    path, _, calls, logs, error = self._export_with_failing_reads(1)
    self.assertIsNone(error)
    self.assertLen(calls, 2)
    self.assertTrue(any('reading it again' in m and 'block checksum mismatch'
                        in m for m in logs), logs)
    prefix = self.estimator.latest_checkpoint()
    expected = assertions.checkpoint_values(prefix)
    self.assertSameElements(assertions.saved_variables(path), expected)

  def test_a_lasting_read_back_failure_is_a_publish_error_leaving_no_trace(
      self):
    base, before, calls, _, error = self._export_with_failing_reads(2)
    self.assertIsInstance(error, errors.PublishError)
    self.assertNotIsInstance(error, errors.CheckpointReadError)
    self.assertIn('the variables/ just written cannot be read back', str(error))
    self.assertIn('block checksum mismatch', str(error))
    self.assertLen(calls, 2)
    self.assertEqual(faults.snapshot(base), before)


if __name__ == '__main__':
  absltest.main()
