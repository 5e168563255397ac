"""Loads and runs tag sets in a child process, under a time and memory budget.

Whatever a tag set does when loaded or run (loop forever, wait on a queue,
allocate 64 GiB, crash in a kernel, end the process with status 0), it does
in a child process (`_child`), one for all the tag sets of an export. Each
check the child runs gets `timeout` seconds; the child's resident memory is
polled and capped. A check that does not report in time, a child over the
cap, or a child that dies or exits gives a failed check naming the check
(`tf1_signature:<key>`) and tag set, the child is killed, and the next tag
set gets a new child. Nothing of the export runs in the calling process.

An export on `ram://` (a filesystem inside this process, which a child
cannot see) is loaded in this process, without those bounds.
"""

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from typing import Optional, Tuple

# The child process runs `_child` (see _BOOTSTRAP); importing it here makes it
# a dependency, so that Bazel's sandbox and the wheel ship it with this module.
from multimode_export.checks import _child  # pylint: disable=unused-import
from multimode_export.checks import _report as report_lib
from multimode_export.checks import _runs as runs

_POLL_SECONDS = 0.05
_STARTUP_SECONDS = 300.0  # importing TensorFlow, on a loaded machine
_PLUGINS = ('tensorflow_io',)  # filesystem plugins a child must import too
_LOADS = 'loads'  # the check failed when no check was running
# The child imports this copy of the package: its root goes first on the
# path unless already on it (an installed package's site-packages is).
_BOOTSTRAP = (
    'import sys; root = sys.argv.pop(1); '
    'sys.path.insert(0, root) if root not in sys.path else None; '
    'from multimode_export.checks import _child; '
    'sys.exit(_child.main(sys.argv))')


class _Stopped(Exception):
  """The child is over budget or gone; the message says how."""


class InProcessRunner:
  """Runs tag sets in this process (for `ram://`, which no child sees)."""

  def __init__(self, run_train_step: bool):
    self._run_train_step = run_train_step

  def __enter__(self):
    return self

  def __exit__(self, *exc_info):
    return False

  def run(self, graph: runs.Graph, index: int,
          recorder: report_lib.Recorder) -> None:
    del index
    runs.verify_tf1(graph, self._run_train_step, recorder)
    runs.verify_tf2(graph, recorder)


def _describe_exit(status: int) -> str:
  if status < 0:
    try:
      return f'killed by {signal.Signals(-status).name}'
    except ValueError:
      return f'killed by signal {-status}'
  return f'exited with status {status}'


def _rss_bytes(pid: int) -> Optional[int]:
  try:
    with open(f'/proc/{pid}/status', 'rb') as f:
      for line in f:
        if line.startswith(b'VmRSS:'):
          return int(line.split()[1]) * 1024
  except (OSError, ValueError, IndexError):
    pass
  return None


class LoadRunner:
  """Runs tag sets in a child process; one per export, restarted when killed.

  Use as a context manager: leaving it ends the child.
  """

  def __init__(self, export_dir: str, run_train_step: bool, timeout: float,
               memory_cap: Optional[int]):
    self._config = {
        'export_dir': export_dir, 'run_train_step': run_train_step,
        'import': [m for m in _PLUGINS if m in sys.modules]}
    self._timeout = timeout
    self._memory_cap = memory_cap
    self._process: Optional[subprocess.Popen] = None
    self._read_fd = -1
    self._buffer = b''
    self._ready = False
    self._stderr = None

  def __enter__(self):
    # Started now, so that it imports TensorFlow while the caller scans.
    self._spawn()
    return self

  def __exit__(self, *exc_info):
    self._stop()
    return False

  def _spawn(self) -> None:
    read_fd, write_fd = os.pipe()
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    self._stderr = tempfile.TemporaryFile()
    self._process = subprocess.Popen(
        [sys.executable, '-c', _BOOTSTRAP, package_root,
         json.dumps(self._config), str(write_fd)],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
        stderr=self._stderr, pass_fds=(write_fd,), start_new_session=True)
    os.close(write_fd)
    self._read_fd, self._buffer, self._ready = read_fd, b'', False

  def _stop(self) -> None:
    if self._process is None:
      return
    if self._process.poll() is None:
      os.killpg(self._process.pid, signal.SIGKILL)
    self._process.wait()
    try:
      self._process.stdin.close()
    except OSError:
      pass  # a child that died with unread input: nothing to flush to
    os.close(self._read_fd)
    self._stderr.close()
    self._process = None

  def _last_error_line(self) -> str:
    self._stderr.seek(0, os.SEEK_END)
    self._stderr.seek(max(0, self._stderr.tell() - 4096))
    lines = [l.strip() for l in self._stderr.read().decode(
        'utf-8', 'replace').splitlines() if l.strip()]
    return f': {lines[-1][:200]}' if lines else ''

  def _next_event(self, deadline: float) -> dict:
    """The child's next event; raises _Stopped past the deadline or cap."""
    while b'\n' not in self._buffer:
      now = time.monotonic()
      if now >= deadline:
        raise _Stopped(f'no result within the {self._timeout:g} s timeout '
                       '(--timeout): the process running it was killed')
      rss = _rss_bytes(self._process.pid)
      if self._memory_cap and rss and rss > self._memory_cap:
        raise _Stopped(
            f'the process running it used {rss / (1 << 30):.2f} GiB, over '
            f'the {self._memory_cap / (1 << 30):.2f} GiB memory cap: killed')
      ready, _, _ = select.select([self._read_fd], [], [],
                                  min(_POLL_SECONDS, deadline - now))
      if ready:
        data = os.read(self._read_fd, 1 << 16)
        if not data:
          status = self._process.wait()
          raise _Stopped(f'the process running it {_describe_exit(status)} '
                         f'before a verdict{self._last_error_line()}')
        self._buffer += data
    line, self._buffer = self._buffer.split(b'\n', 1)
    return json.loads(line)

  def _expect(self, event: str, seconds: float) -> None:
    try:
      got = self._next_event(time.monotonic() + seconds)
    except _Stopped:
      self._stop()
      raise
    if got.get('event') != event:
      self._stop()
      raise _Stopped(f'the process running it sent {got!r}, not {event!r}')

  def run(self, graph: runs.Graph, index: int,
          recorder: report_lib.Recorder) -> None:
    """Runs the load and signature checks of one tag set; records each."""
    current: Tuple[str, Tuple[str, ...]] = (_LOADS, graph.tags)
    try:
      if self._process is None:
        self._spawn()
      if not self._ready:
        self._expect('ready', _STARTUP_SECONDS)
        self._ready = True
      self._process.stdin.write(json.dumps({'index': index}).encode() + b'\n')
      self._process.stdin.flush()
      deadline = time.monotonic() + self._timeout
      while True:
        event = self._next_event(deadline)
        kind = event.pop('event')
        if kind == 'done':
          return
        if kind == 'start':
          current = (event['name'], tuple(event['tags']))
          deadline = time.monotonic() + self._timeout
        elif kind == 'result':
          event['tags'] = tuple(event['tags'])
          recorder.add(report_lib.CheckResult(**event))
          current = (_LOADS, graph.tags)
    except _Stopped as e:
      self._stop()
      recorder.fail(current[0], current[1], str(e))
    except OSError as e:  # writing to a child that is gone
      status = self._process.wait() if self._process else None
      self._stop()
      recorder.fail(current[0], current[1], (
          f'the process running it {_describe_exit(status)} before a '
          'verdict' if status is not None else f'{type(e).__name__}: {e}'))
