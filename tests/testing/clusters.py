"""Real multi-process TensorFlow clusters on 127.0.0.1, for tests.

    cluster = clusters.Cluster({'chief': 1, 'worker': 1, 'ps': 2}, script,
                               args, log_dir)
    try:
      cluster.start('chief'); ...
      cluster.wait(['chief-0', ...], deadline)
    finally:
      cluster.kill_all()

Each task is a separate process running `script` with its role in
`TF_CONFIG`, in a process group of its own, so that `kill_all` ends it and
anything it started, by PID. Ports are picked free on 127.0.0.1 by the
kernel.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Dict, List, Mapping, Optional, Sequence

_TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_ports(n: int) -> List[int]:
  """`n` distinct TCP ports free on 127.0.0.1 (bound, then released)."""
  sockets = []
  try:
    for _ in range(n):
      s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
      s.bind(('127.0.0.1', 0))
      sockets.append(s)
    return [s.getsockname()[1] for s in sockets]
  finally:
    for s in sockets:
      s.close()


class Cluster:
  """The processes of one job; `kill_all` ends each one's process group.

  Attributes:
    cluster: the `TF_CONFIG` cluster: job -> ['127.0.0.1:PORT', ...].
    procs: task name ('chief-0') -> its process.
  """

  def __init__(self, jobs: Mapping[str, int], script: str,
               args: Sequence[str], log_dir: str,
               env: Optional[Mapping[str, str]] = None):
    ports = iter(free_ports(sum(jobs.values())))
    self.cluster = {job: [f'127.0.0.1:{next(ports)}' for _ in range(n)]
                    for job, n in jobs.items()}
    self.script = script
    self.args = list(args)
    self.log_dir = log_dir
    self.env = dict(env or {})  # for every task, e.g. an S3 endpoint
    self.procs: Dict[str, subprocess.Popen] = {}

  def start(self, task_type: str, index: int = 0,
            extra_args: Sequence[str] = ()) -> None:
    """Starts one task of the job (the evaluator need not be in `cluster`)."""
    name = f'{task_type}-{index}'
    env = dict(os.environ, **self.env)
    env.update(
        TF_CONFIG=json.dumps({'cluster': self.cluster,
                              'task': {'type': task_type, 'index': index}}),
        PYTHONPATH=os.pathsep.join([os.path.dirname(_TESTS_DIR), _TESTS_DIR,
                                    env.get('PYTHONPATH', '')]),
        TF_CPP_MIN_LOG_LEVEL='2', CUDA_VISIBLE_DEVICES='')
    with open(self.log_path(name), 'w') as log:
      self.procs[name] = subprocess.Popen(
          [sys.executable, self.script] + self.args + list(extra_args),
          env=env, stdout=log, stderr=subprocess.STDOUT,
          stdin=subprocess.DEVNULL, start_new_session=True)

  def wait(self, names: List[str], deadline: float) -> None:
    """Waits until every task in `names` has exited.

    Raises:
      TimeoutError: one is still running at `deadline`.
      RuntimeError: a task (any, not only those waited for) exited with an
        error.
    """
    for name in names:
      proc = self.procs[name]
      while proc.poll() is None:
        if time.time() > deadline:
          raise TimeoutError(f'{name} still running at the deadline')
        self.check_no_failure()
        time.sleep(0.2)
    self.check_no_failure()

  def check_no_failure(self) -> None:
    for other, p in self.procs.items():
      if p.poll() not in (None, 0):
        raise RuntimeError(f'{other} exited with {p.returncode}')

  def kill_all(self) -> None:
    """Kills every task still running (its whole process group), reaps all."""
    for proc in self.procs.values():
      if proc.poll() is None:
        try:
          os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
          pass
      proc.wait()

  def log_path(self, name: str) -> str:
    return os.path.join(self.log_dir, f'{name}.log')

  def log_tail(self, name: str, lines: int = 40) -> str:
    with open(self.log_path(name)) as f:
      return ''.join(f.readlines()[-lines:])

  def log_tails(self) -> str:
    return '\n'.join(f'--- {n}\n{self.log_tail(n)}' for n in self.procs)
