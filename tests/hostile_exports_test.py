"""`verify DIR && deploy` on exports built to fool, hang or exhaust verify.

The seven kinds of issue 25 (tests/testing/hostile.py builds them), each
run as a caller would: `multimode-export verify ... DIR && touch ok` in a
shell, in a subprocess with its own TensorFlow. Each must end (within the
--timeout given, far below the subprocess's own limit) with a non-zero
status naming the problem, `ok` never written, and no canary written
outside the export. The scans (`inspect` too) stay linear in the export.
"""

import os
import shlex
import subprocess
import sys
import time

import tensorflow as tf
from absl.testing import absltest

import multimode_export
from multimode_export.checks import _safety as safety
from multimode_export.saved_model import _format
from testing import hostile

_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(
    multimode_export.__file__)))
_TIMEOUT = 8  # verify --timeout in these tests, seconds
# A run may take the CLI's start, the scan, a child's start and the budget
# of each check that hangs; beyond this the test fails as a hang.
_HANG = 240


class HostileExportsTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.root = self.create_tempdir().full_path
    self.export_dir = os.path.join(self.root, 'export')
    self.canary = os.path.join(self.root, 'canary')
    self.secret = os.path.join(self.root, 'secret.txt')
    with open(self.secret, 'w') as f:
      f.write('not yours')
    self.cwd = self.create_tempdir().full_path

  def verify_and_touch(self, *flags, command='verify'):
    """Runs `verify FLAGS DIR && touch ok`; returns (status, output)."""
    cli = ' '.join(shlex.quote(a) for a in [
        sys.executable, '-m', 'multimode_export', command, *flags,
        self.export_dir])
    start = time.monotonic()
    done = subprocess.run(
        ['sh', '-c', f'{cli} && touch ok'], cwd=self.cwd, timeout=_HANG,
        capture_output=True, text=True,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (_PACKAGE_ROOT, os.environ.get('PYTHONPATH')) if p)))
    self.elapsed = time.monotonic() - start
    return done.returncode, done.stdout + done.stderr

  def assert_refused(self, *fragments, flags=()):
    status, output = self.verify_and_touch(f'--timeout={_TIMEOUT}', *flags)
    self.assertNotEqual(status, 0, output)
    self.assertIn('FAILED', output)
    for fragment in fragments:
      self.assertIn(fragment, output)
    self.assertEqual(os.listdir(self.cwd), [], output)  # no `ok`, no file
    self.assertFalse(os.path.exists(self.canary), output)
    return output

  def test_graph_hidden_in_a_string(self):
    hostile.dataset_from_graph(self.export_dir, self.secret, self.canary)
    self.assert_refused(
        "DatasetFromGraph (runs a graph carried as data (a serialized "
        "GraphDef)) at node 'dataset_from_graph'",
        'not run: the safety check of [serve] failed')

  def test_two_meta_graphs_with_one_tag_set(self):
    hostile.serve_twice(self.export_dir, self.canary)
    output = self.assert_refused(
        "the tag list holds 'serve' more than once",
        "its tag set ['serve'] is also the tag set of MetaGraphDef #1",
        "its tag set ['serve'] is also the tag set of MetaGraphDef #0")
    self.assertNotIn('tf1_load     ok', output)

  def test_abort_main_op(self):
    hostile.abort_main_op(self.export_dir)
    self.assert_refused("Abort (ends the process) at node 'abort'",
                        '--allow_ops=Abort')
    # Allowed, it ends the loading process with status 0: still a failure.
    self.assert_refused(
        'tf1_load', 'the process running it exited with status 0 before a '
        'verdict', flags=['--allow_ops=Abort'])

  def test_select_chain_scans_in_linear_time(self):
    hostile.select_chain(self.export_dir, self.secret, levels=40)
    self.assert_refused("ReadFile (reads a file that is not an asset of the "
                        "export) at node 'read_chain'")
    status, output = self.verify_and_touch(command='inspect')
    self.assertEqual(status, 0, output)
    self.assertIn("safety: ReadFile at node 'read_chain'", output)
    self.assertEqual(sorted(os.listdir(self.cwd)), ['ok'])

  def test_string_constant_claiming_two_to_the_34(self):
    hostile.string_constant_claiming(self.export_dir, 2**34)
    claim = ("node 'claiming': a constant claiming string[17179869184] (at "
             'least 17179869184 bytes) but storing 1 value')
    self.assert_refused(claim)
    self.assertIn(claim, multimode_export.inspect(self.export_dir))

  def test_forged_variant_index_entry(self):
    hostile.variant_index_entry(self.export_dir, 2**25)
    claim = ("variables/variables.index entry 'w': claims variant[33554432] "
             '(at least 33554432 bytes) but stores 0 bytes')
    output = self.assert_refused(claim)
    self.assertIn('not run: the safety check of the export failed', output)
    self.assertIn(claim, multimode_export.inspect(self.export_dir))

  def test_endless_while_is_stopped_by_the_timeout(self):
    hostile.endless_while(self.export_dir)
    self.assert_refused(
        'tf1_signature:serving_default',
        f'no result within the {_TIMEOUT} s timeout (--timeout): the process '
        'running it was killed')

  def test_fifo_queue_dequeue(self):
    hostile.dequeue_nothing(self.export_dir)
    self.assert_refused('FIFOQueueV2 (can wait forever',
                        "QueueDequeueV2 (can wait forever")
    self.assert_refused(
        'tf1_signature:serving_default', 'no result within the',
        flags=['--allow_ops=FIFOQueueV2,QueueDequeueV2'])

  def test_fill_two_to_the_34(self):
    hostile.fill_huge(self.export_dir, 2**34)
    # Killed by the timeout or the memory cap, or a clean allocation error:
    # a failed signature check either way, never a hang.
    self.assert_refused('FAIL  serve  tf1_signature:serving_default',
                        flags=['--max_load_gib=0.25'])

  def test_huge_graph_is_scanned_then_bounded(self):
    hostile.many_no_ops(self.export_dir, 200000)
    saved_model = _format.read_saved_model(self.export_dir)
    start = time.monotonic()
    scans = safety.scan_saved_model(self.export_dir, saved_model)
    scan_seconds = time.monotonic() - start
    self.assertTrue(all(s.ok for s in scans), [s.describe() for s in scans])
    nodes = len(saved_model.meta_graphs[0].graph_def.node)
    self.assertGreater(nodes, 200000)
    self.assertStartsWith(scans[1].scanned, f'{nodes} nodes')
    # No timed assertion: how long the scan took is shown, the benchmark
    # (benchmarks/hostile_scan.py) measures it.
    print(f'scan of 200000 NoOps: {scan_seconds:.1f} s')
    # A load that outlasts the budget fails, naming it; one that fits passes.
    status, output = self.verify_and_touch('--timeout=0.5',
                                           '--norun_train_step')
    self.assertNotEqual(status, 0, output)
    self.assertIn('no result within the 0.5 s timeout', output)
    self.assertEqual(os.listdir(self.cwd), [])


if __name__ == '__main__':
  tf.test.main()
