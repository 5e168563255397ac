"""Real exporter processes: killed with SIGKILL, or racing each other.

The workers (tests/export_worker.py) export the model this test trains, into
a base shared with the test and with each other.
"""
# bazel-data: :export_worker //docs:publishing.md

import json
import os
import random
import signal
import subprocess
import sys
import time
from typing import Dict, List

from absl.testing import absltest

import multimode_export
from multimode_export.publishing import _staging as publish
from multimode_export.variables import _checkpoint as checkpoint
from testing import faults
from testing import models
from testing import receiver_fns
from testing import running
from tools import doc_generated

_HERE = os.path.dirname(os.path.abspath(__file__))
_TESTS = os.path.dirname(_HERE)
_WORKER = os.path.join(_HERE, 'export_worker.py')
_TIMEOUT = 120.0


def _versions(base: str) -> List[str]:
  return sorted(n for n in os.listdir(base) if n.isdigit())


def _staging(base: str) -> List[str]:
  return sorted(n for n in os.listdir(base)
                if n.startswith(publish.STAGING_PREFIX))


def _print_as_documented(test: absltest.TestCase, key: str, line: str) -> None:
  """Prints `line`; docs/publishing.md shows one like it (same shape)."""
  print('\n' + line)
  test.assertEqual(doc_generated.disagreement(
      'docs/publishing.md', f'tests/conformance/processes_test.py {key}', line,
      measured=True), '')


class ProcessesTest(models.ClassRootMixin, absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.model_dir = os.path.join(cls.root, 'model')
    cls.estimator = models.train_custom(cls.model_dir, steps=3)

  def _start(self, base: str, *flags: str) -> subprocess.Popen:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2',
               PYTHONPATH=os.pathsep.join(
                   [os.path.dirname(_TESTS), _TESTS,
                    os.environ.get('PYTHONPATH', '')]))
    log = open(os.path.join(self.create_tempdir().full_path, 'stderr'), 'w')
    self.addCleanup(log.close)
    proc = subprocess.Popen(
        [sys.executable, _WORKER, self.model_dir, base, *flags],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
        env=env)
    self.addCleanup(self._stop, proc)
    return proc

  def _stop(self, proc: subprocess.Popen) -> None:
    if proc.poll() is None:
      proc.kill()
    proc.wait()
    for pipe in (proc.stdin, proc.stdout):
      if pipe:
        pipe.close()

  def _wait_ready(self, proc: subprocess.Popen) -> None:
    self.assertEqual(proc.stdout.readline(), 'ready\n')

  def _wait_blocked(self, base: str, proc: subprocess.Popen) -> str:
    """Waits until `proc` has staged variables/ and blocks on its FIFO."""
    deadline = time.monotonic() + _TIMEOUT
    while time.monotonic() < deadline:
      for name in _staging(base):
        if f'-{proc.pid}-' in name and os.path.isdir(
            os.path.join(base, name, 'assets.extra')):
          return name
      self.assertIsNone(proc.poll(), 'the worker died')
      time.sleep(0.05)
    self.fail(f'worker {proc.pid} never blocked')

  def _export(self, base: str) -> str:
    return multimode_export.export_all_saved_models(
        self.estimator, base, receiver_fns.receiver_map())

  def test_sigkill_mid_export_then_next_export_cleans_up(self):
    tmp = self.create_tempdir().full_path
    base = os.path.join(tmp, 'export')
    first = self._export(base)
    first_snapshot = faults.snapshot(first)
    fifos = {}
    for role in ('dead', 'live'):
      fifos[role] = os.path.join(tmp, f'{role}.fifo')
      os.mkfifo(fifos[role])
    dead = self._start(base, '--fifo', fifos['dead'])
    live = self._start(base, '--fifo', fifos['live'])
    self._wait_ready(dead)
    self._wait_ready(live)
    dead_staging = self._wait_blocked(base, dead)
    live_staging = self._wait_blocked(base, live)
    self.assertTrue(os.path.exists(
        os.path.join(base, dead_staging, 'variables', 'variables.index')))

    dead.send_signal(signal.SIGKILL)
    self.assertEqual(dead.wait(), -signal.SIGKILL)
    self.assertEqual(_versions(base), [os.path.basename(first)])

    second = self._export(base)
    self.assertEqual(_staging(base), [live_staging])  # dead one removed
    self.assertTrue(os.path.exists(
        os.path.join(base, live_staging, 'variables', 'variables.index')))

    # Opening the FIFO for writing unblocks the live exporter's copy (TF
    # copies as many bytes as stat() reports: none).
    os.close(os.open(fifos['live'], os.O_WRONLY))
    result = json.loads(live.stdout.readline())
    self.assertEqual(live.wait(), 0)
    self.assertCountEqual(os.listdir(base), [
        os.path.basename(p) for p in (first, second, result['path'])])
    self.assertTrue(os.path.exists(
        os.path.join(result['path'], 'assets.extra', 'slow.txt')))
    for path in (second, result['path']):
      self.assertEqual(running.load_every_tag_set(path),
                       [['eval'], ['serve'], ['train']])
    self.assertEqual(faults.snapshot(first), first_snapshot)

  def test_killed_at_random_moments_never_leaves_a_partial_version(self):
    base = os.path.join(self.create_tempdir().full_path, 'export')
    rng = random.Random(0)
    # Two exporters loop over exports into the same base; each is killed at
    # a random moment, most likely mid-export.
    procs = [self._start(base, '--loop') for _ in range(2)]
    for proc in procs:
      self._wait_ready(proc)
    killed_with_staging = 0
    for proc in procs:
      time.sleep(rng.uniform(0.1, 0.5))
      proc.send_signal(signal.SIGKILL)
      self.assertEqual(proc.wait(), -signal.SIGKILL)
      killed_with_staging += any(f'-{proc.pid}-' in n for n in _staging(base))
    for version in _versions(base):
      path = os.path.join(base, version)
      self.assertTrue(os.path.exists(os.path.join(path, 'saved_model.pb')))
      info = checkpoint.read(os.path.join(path, 'variables', 'variables'))
      self.assertIn('w', info.variables)
    self.assertNotEmpty(_versions(base))
    last = self._export(base)
    self.assertEmpty(_staging(base))
    self.assertEqual(running.load_every_tag_set(last),
                     [['eval'], ['serve'], ['train']])
    _print_as_documented(self, 'killed', (
        f'killed 2 looping exporters; {killed_with_staging} left a '
        f'staging directory; {len(_versions(base))} complete versions'))

  def test_eight_processes_export_at_the_same_moment(self):
    base = os.path.join(self.create_tempdir().full_path, 'export')
    worker = self._start(base, '--barrier', '--fork', '8')
    self._wait_ready(worker)
    released = time.time()
    worker.stdin.write('go\n')  # no sleeping anywhere after this
    worker.stdin.flush()
    results: List[Dict] = [json.loads(worker.stdout.readline())
                           for _ in range(8)]
    all_done = time.time()
    self.assertEqual(worker.wait(), 0)
    self.assertLen({r['pid'] for r in results}, 8)
    paths = sorted(r['path'] for r in results)
    self.assertLen(set(paths), 8)
    self.assertEqual(sorted(os.listdir(base)),
                     sorted(os.path.basename(p) for p in paths))
    for path in paths:
      self.assertEqual(running.load_every_tag_set(path),
                       [['eval'], ['serve'], ['train']])
    seconds = {int(r['start']) for r in results}
    durations = sorted(r['end'] - r['start'] for r in results)
    _print_as_documented(self, 'eight', (
        f'8 exporters: started within '
        f'{max(r["start"] for r in results) - released:.3f} s of the '
        f'release, in {len(seconds)} distinct second(s); all done '
        f'{all_done - released:.2f} s after it; per export '
        f'{durations[0]:.3f}-{durations[-1]:.3f} s; versions '
        f'{[int(os.path.basename(p)) for p in paths]}'))

if __name__ == '__main__':
  absltest.main()
