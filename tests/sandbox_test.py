"""checks/_sandbox: tag sets load and run in a child, and its end is a check.

The child is real (a process with its own TensorFlow); the faults are
injected from outside: a SIGSEGV sent while a signature runs (as a crash in
a kernel would end it), a memory cap below what TensorFlow needs.
"""

import os
import signal
import threading
import time

import tensorflow as tf

from multimode_export.checks import _report as report_lib
from multimode_export.checks import _runs as runs
from multimode_export.checks import _sandbox as sandbox
from multimode_export.saved_model import _format
from testing import crafted
from testing import hostile


def _graph(export_dir: str) -> runs.Graph:
  meta_graph_def = _format.read_saved_model(export_dir).meta_graphs[0]
  return runs.prepare(export_dir, meta_graph_def, report_lib.Recorder())


class LoadRunnerTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.export_dir = os.path.join(self.create_tempdir().full_path, 'export')

  def test_clean_tag_set_reports_every_check(self):
    crafted._build(self.export_dir, lambda x, v: {'y': x * v[0]})  # pylint: disable=protected-access
    recorder = report_lib.Recorder()
    with sandbox.LoadRunner(self.export_dir, True, 120, None) as runner:
      runner.run(_graph(self.export_dir), 0, recorder)
      child = runner._process  # pylint: disable=protected-access
    self.assertEqual([(c.name, c.ok) for c in recorder.results],
                     [('tf1_load', True),
                      ('tf1_signature:serving_default', True),
                      ('tf2_load', True),
                      ('tf2_signature:serving_default', True)])
    self.assertIsNotNone(child.returncode)  # ended with the runner

  def test_a_crash_in_the_child_is_a_failed_check(self):
    hostile.endless_while(self.export_dir)
    recorder = report_lib.Recorder()
    with sandbox.LoadRunner(self.export_dir, True, 120, None) as runner:
      thread = threading.Thread(
          target=runner.run, args=(_graph(self.export_dir), 0, recorder))
      thread.start()
      deadline = time.monotonic() + 120
      # The signature starts once tf1_load is recorded: then crash the child.
      while not any(isinstance(e, report_lib.CheckResult) and
                    e.name == 'tf1_load' for e in recorder._entries):  # pylint: disable=protected-access
        self.assertLess(time.monotonic(), deadline)
        time.sleep(0.05)
      time.sleep(0.5)
      os.kill(runner._process.pid, signal.SIGSEGV)  # pylint: disable=protected-access
      thread.join(60)
    failed = [c for c in recorder.results if not c.ok]
    self.assertLen(failed, 1)
    self.assertEqual(failed[0].name, 'tf1_signature:serving_default')
    self.assertEqual(failed[0].tags, ('serve',))
    self.assertStartsWith(failed[0].detail,
                          'the process running it killed by SIGSEGV before '
                          'a verdict')

  def test_memory_cap_stops_the_child(self):
    crafted._build(self.export_dir, lambda x, v: {'y': x * v[0]})  # pylint: disable=protected-access
    recorder = report_lib.Recorder()
    # Below what importing TensorFlow takes: the child is stopped starting.
    with sandbox.LoadRunner(self.export_dir, True, 120, 64 << 20) as runner:
      runner.run(_graph(self.export_dir), 0, recorder)
    [failed] = recorder.results
    self.assertEqual((failed.name, failed.tags, failed.ok),
                     ('loads', ('serve',), False))
    self.assertRegex(failed.detail, r'^the process running it used [\d.]+ '
                     r'GiB, over the 0.06 GiB memory cap: killed$')


if __name__ == '__main__':
  tf.test.main()
