"""Tests for multimode_export.eval_history on real event files."""

import glob
import os
import uuid

import tensorflow as tf

from multimode_export.integration import _eval_history as eval_history
from multimode_export.integration import _exporter as exporter_lib


def _write_evals(eval_dir, results):
  """Writes results as Estimator.evaluate does: one scalar Summary each."""
  with tf.Graph().as_default():
    writer = tf.compat.v1.summary.FileWriter(
        eval_dir, filename_suffix=f'.{uuid.uuid4().hex}')
    for step, metrics in results:
      summary = tf.compat.v1.Summary()
      for key, value in metrics.items():
        summary.value.add(tag=key, simple_value=value)
      summary.value.add(tag='checkpoint_path').tensor.string_val.append(b'x')
      writer.add_summary(summary, step)
    writer.close()


class EvalHistoryTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.model_dir = self.create_tempdir().full_path
    self.eval_dir = os.path.join(self.model_dir, 'eval')

  def _best(self, current=None, compare_fn=exporter_lib.loss_smaller):
    return eval_history.best_previous_result(
        self.model_dir, 'eval/*.tfevents.*', compare_fn, current)

  def test_reads_scalars_with_global_step(self):
    _write_evals(self.eval_dir, [(5, {'loss': 2.0, 'mae': 1.0}),
                                 (10, {'loss': 1.0, 'mae': 0.5})])
    events = eval_history.read_events(
        os.path.join(self.eval_dir, '*.tfevents.*'))
    self.assertEqual([e.step for e in events], [5, 10])
    self.assertEqual(events[1].metrics,
                     {'loss': 1.0, 'mae': 0.5, 'global_step': 10.0})

  def test_best_across_runs_and_files(self):
    _write_evals(self.eval_dir, [(5, {'loss': 2.0}), (10, {'loss': 0.5})])
    _write_evals(self.eval_dir, [(15, {'loss': 0.75})])  # a restarted run
    self.assertLen(glob.glob(os.path.join(self.eval_dir, '*')), 2)
    self.assertEqual(self._best()['loss'], 0.5)

  def test_leaves_out_the_current_evaluation_once(self):
    _write_evals(self.eval_dir, [(5, {'loss': 0.25})])
    current = {'loss': 0.25, 'global_step': 5}
    self.assertIsNone(self._best(current))
    # The same result recorded twice (an earlier run evaluated the same
    # checkpoint): one copy stays, so the model is not exported again.
    _write_evals(self.eval_dir, [(5, {'loss': 0.25})])
    self.assertEqual(self._best(current)['loss'], 0.25)
    # A different result at the same step is not the current one.
    self.assertEqual(self._best({'loss': 0.3, 'global_step': 5})['loss'],
                     0.25)

  def test_skips_events_compare_fn_cannot_judge(self):
    _write_evals(self.eval_dir, [(1, {'accuracy': 0.9}), (2, {'loss': 3.0}),
                                 (3, {'loss': 1.0})])
    self.assertEqual(self._best()['loss'], 1.0)

  def test_truncated_file_keeps_what_was_read(self):
    _write_evals(self.eval_dir, [(5, {'loss': 2.0}), (10, {'loss': 1.0})])
    path = glob.glob(os.path.join(self.eval_dir, '*'))[0]
    with open(path, 'rb') as f:
      data = f.read()
    with open(path, 'wb') as f:
      f.write(data[:-7])
    events = eval_history.read_events(path)
    self.assertEqual([e.step for e in events], [5])

  def test_no_event_files(self):
    self.assertIsNone(self._best())


if __name__ == '__main__':
  tf.test.main()
