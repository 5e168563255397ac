"""VariablesCheck: the crc32c pass on a thread reports what it reports in line,
and never outlives its `with` block."""

import os
import threading

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from multimode_export.checks import _report as report_lib
from multimode_export.checks import _variables_check as variables_check
from testing import faults

_THREAD_NAME = 'multimode_export.verify: crc32c of variables/'


def _export_dir(root: str, values) -> str:
  """A directory with `variables/` holding `values` (a real bundle)."""
  os.makedirs(os.path.join(root, 'variables'))
  tf.raw_ops.SaveV2(prefix=os.path.join(root, 'variables', 'variables'),
                    tensor_names=list(values),
                    shape_and_slices=[''] * len(values),
                    tensors=[tf.constant(v) for v in values.values()])
  return root


def _pass_threads():
  return [t for t in threading.enumerate() if t.name == _THREAD_NAME]


class VariablesCheckTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    rng = np.random.RandomState(0)
    self.values = {'big': rng.rand(1 << 19).astype(np.float32),  # 2 MiB
                   'small': np.arange(3, dtype=np.int64),
                   'names': np.array([b'a', b'bc'])}
    self.export_dir = _export_dir(self.create_tempdir().full_path,
                                  self.values)

  def _check_outcome(self, overlap: bool, **kwargs):
    with variables_check.VariablesCheck(self.export_dir, overlap=overlap,
                                        **kwargs) as check:
      try:
        return True, check.result(), check.variables
      except report_lib.CheckFailed as e:
        return False, str(e), check.variables

  def test_intact_same_on_a_thread_as_in_line(self):
    on_thread = self._check_outcome(True)
    self.assertEqual(on_thread, self._check_outcome(False))
    ok, detail, variables = on_thread
    self.assertTrue(ok)
    # 2 MiB + 24 bytes of int64 + 9 of strings (2 varint lengths, their
    # 4-byte crc32c, 3 bytes of text).
    self.assertEqual(detail, '3 variables readable, crc32c of 3 stored '
                     'tensors (2097185 bytes in 1 data file) checked')
    self.assertEqual(variables['big'], ('float32', (1 << 19,)))
    self.assertEqual(_pass_threads(), [])

  @parameterized.named_parameters(('numeric', 'big'), ('string', 'names'))
  def test_corrupt_same_on_a_thread_as_in_line(self, key):
    faults.flip_variables_byte(self.export_dir, key)
    on_thread = self._check_outcome(True)
    self.assertEqual(on_thread, self._check_outcome(False))
    ok, detail, _ = on_thread
    self.assertFalse(ok)
    self.assertRegex(detail, f"^variable '{key}' unreadable: checksum "
                     'mismatch in ')

  def test_an_error_on_the_thread_reaches_result(self):
    [data] = tf.io.gfile.glob(
        os.path.join(self.export_dir, 'variables', 'variables.data-*'))
    os.remove(data)
    os.mkdir(data)
    ok, detail, _ = self._check_outcome(True)
    self.assertFalse(ok)
    self.assertStartsWith(detail, 'variables/ unreadable: IsADirectoryError: ')

  def test_unreadable_index_fails_at_once_without_a_thread(self):
    with open(os.path.join(self.export_dir, 'variables',
                           'variables.index'), 'wb') as f:
      f.write(b'not an index')
    with variables_check.VariablesCheck(self.export_dir) as check:
      self.assertFalse(check.may_pass)
      self.assertFalse(check.running)
      with self.assertRaisesRegex(report_lib.CheckFailed,
                                  '^variables/ unreadable: '):
        check.result()

  def test_no_variables(self):
    with variables_check.VariablesCheck(
        self.create_tempdir().full_path) as check:
      self.assertTrue(check.may_pass)
      self.assertIsNone(check.variables)
      self.assertEqual(check.result(),
                       'no variables/variables.index (a graph without '
                       'variables)')

  def test_keyboard_interrupt_stops_the_thread(self):
    # 16-byte pieces: the pass over 2 MiB takes far longer than the block.
    with self.assertRaises(KeyboardInterrupt):
      with variables_check.VariablesCheck(self.export_dir, overlap=True,
                                          buffer_bytes=16) as check:
        self.assertTrue(check.running)
        self.assertLen(_pass_threads(), 1)
        self.assertTrue(_pass_threads()[0].daemon)
        raise KeyboardInterrupt
    self.assertFalse(check.running)
    self.assertEqual(_pass_threads(), [])
    # Stopped before it read everything: not reported as a pass.
    with self.assertRaisesRegex(report_lib.CheckFailed, 'Stopped'):
      check.result()

  def test_overlaps_only_local_exports(self):
    self.assertTrue(variables_check.overlaps('/tmp/export'))
    self.assertTrue(variables_check.overlaps('file:///tmp/export'))
    for url in ('s3://bucket/export', 'gs://bucket/export', 'ram://export'):
      self.assertFalse(variables_check.overlaps(url), url)


if __name__ == '__main__':
  absltest.main()
