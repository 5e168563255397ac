"""S3 and GCS servers on 127.0.0.1, and TensorFlow processes that use them.

    server = StoreServer.start('s3')        # moto; 'gcs': gcp-storage-emulator
    bucket = server.create_bucket()         # a fresh bucket: 's3://b-1a2b...'
    with Worker(server.client_env()) as w:  # a process with TF + tensorflow-io
      w.call('export', model_dir, bucket + '/model/exports')
    server.stop()                           # by PID, always

Servers run in processes of their own (`python object_stores.py serve
KIND`), bound to a free 127.0.0.1 port chosen by the kernel; nothing else is
ever contacted (the AWS client's instance-metadata lookup is disabled, the
GCS plugin talks to the emulator without credentials).

TensorFlow runs in `Worker` processes, never in the test process: the
filesystems read their endpoint once per process, and a process that used
`s3://` aborts at exit (tensorflow-io 0.36.0's AWS client teardown: "pure
virtual method called"), so a worker ends with `os._exit`. A worker imports
`store_actions` and runs its functions on request, one JSON line each way.

When the server packages are missing the tests skip, except under CI
(`CI=true`), where they fail: CI installs them.
"""

import importlib.util
import json
import os
import select
import signal
import subprocess
import sys
import traceback
import unittest
import urllib.request
import uuid
from typing import Any, Dict, Optional

KINDS = ('s3', 'gcs')
SCHEMES = {'s3': 's3', 'gcs': 'gs'}
_SERVER_MODULES = {'s3': 'moto', 'gcs': 'gcp_storage_emulator'}
_START_TIMEOUT = 120.0
CALL_TIMEOUT = 600.0
_TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def require(kind: str) -> None:
  """Skips the calling test if `kind`'s server is not installed (fails in CI).

  Raises:
    unittest.SkipTest: not installed, outside CI.
    RuntimeError: not installed, under CI.
  """
  missing = [m for m in (_SERVER_MODULES[kind], 'tensorflow_io')
             if not _importable(m)]
  if not missing:
    return
  message = (f'{kind} object-store tests need {missing} (pip install '
             f"'moto[server]' gcp-storage-emulator tensorflow-io==0.36.0)")
  if os.environ.get('CI', '').lower() == 'true':
    raise RuntimeError(message)
  raise unittest.SkipTest(message)


def _importable(module: str) -> bool:
  return importlib.util.find_spec(module) is not None


def client_env(kind: str, endpoint: str) -> Dict[str, str]:
  """Environment variables that point tensorflow-io's filesystem at a server.

  Args:
    kind: 's3' or 'gcs'.
    endpoint: 'http://127.0.0.1:PORT' (the server, or a proxy before it).
  """
  if kind == 's3':
    return {
        'S3_ENDPOINT': endpoint,  # http:// means plain HTTP
        'S3_VERIFY_SSL': '0',
        'AWS_ACCESS_KEY_ID': 'testing',
        'AWS_SECRET_ACCESS_KEY': 'testing',
        'AWS_REGION': 'us-east-1',
        'AWS_EC2_METADATA_DISABLED': 'true',
    }
  return {
      # TF's built-in gs:// has no endpoint setting; tensorflow-io's has.
      'TF_USE_MODULAR_FILESYSTEM': '1',
      'CLOUD_STORAGE_EMULATOR_ENDPOINT': endpoint,
      # All five must be set, else the plugin crashes (tensorflow/io#2020);
      # an uncached reader crashes on a backward read (saving a checkpoint).
      'GCS_READ_CACHE_BLOCK_SIZE_MB': '16',
      'GCS_READ_CACHE_MAX_SIZE_MB': '64',
      'GCS_READ_CACHE_MAX_STALENESS': '0',
      'GCS_STAT_CACHE_MAX_AGE': '0',
      'GCS_STAT_CACHE_MAX_ENTRIES': '0',
  }


class StoreServer:
  """A moto S3 server or a gcp-storage-emulator, in a process of its own."""

  def __init__(self, kind: str, process: subprocess.Popen, port: int):
    self.kind = kind
    self.scheme = SCHEMES[kind]
    self.process = process
    self.pid = process.pid
    self.port = port
    self.endpoint = f'http://127.0.0.1:{port}'

  @classmethod
  def start(cls, kind: str) -> 'StoreServer':
    """Starts a server on a free 127.0.0.1 port; waits until it listens.

    Raises:
      RuntimeError: it did not start (its stderr is in the message).
    """
    require(kind)
    process = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), 'serve', kind],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True)
    line = _read_line(process.stdout, _START_TIMEOUT)
    if not line.startswith('PORT '):
      _stop(process)
      raise RuntimeError(f'the {kind} server did not start: {line!r}; '
                         f'stderr: {process.stderr.read()[-2000:]}')
    # The server logs every request; nobody reads them: drop them.
    process.stderr.close()
    return cls(kind, process, int(line.split()[1]))

  def create_bucket(self, name: Optional[str] = None) -> str:
    """Creates a bucket; returns its URL ('s3://NAME', no trailing slash)."""
    name = name or f'b-{uuid.uuid4().hex[:16]}'
    if self.kind == 's3':
      request = urllib.request.Request(f'{self.endpoint}/{name}', method='PUT')
    else:
      request = urllib.request.Request(
          f'{self.endpoint}/storage/v1/b?project=test', method='POST',
          data=json.dumps({'name': name}).encode(),
          headers={'Content-Type': 'application/json'})
    with urllib.request.urlopen(request, timeout=60) as reply:
      reply.read()
    return f'{self.scheme}://{name}'

  def client_env(self, endpoint: Optional[str] = None) -> Dict[str, str]:
    return client_env(self.kind, endpoint or self.endpoint)

  def stop(self) -> None:
    _stop(self.process)


def _stop(process: subprocess.Popen) -> None:
  """Ends a process we started, by its PID: SIGTERM, then SIGKILL."""
  if process.poll() is None:
    os.kill(process.pid, signal.SIGTERM)
    try:
      process.wait(timeout=10)
    except subprocess.TimeoutExpired:
      os.kill(process.pid, signal.SIGKILL)
      process.wait()
  for stream in (process.stdin, process.stdout, process.stderr):
    if stream is not None and not stream.closed:
      stream.close()


def _read_line(stream, timeout: float) -> str:
  ready, _, _ = select.select([stream], [], [], timeout)
  if not ready:
    return f'<nothing within {timeout:.0f} s>'
  return stream.readline().rstrip('\n')


class WorkerError(Exception):
  """An action raised in the worker; `type_name` is the exception's class."""

  def __init__(self, type_name: str, message: str, trace: str):
    super().__init__(f'{type_name}: {message}\n{trace}')
    self.type_name = type_name
    self.message = message


class Worker:
  """A Python process with TensorFlow and tensorflow-io, run by JSON calls.

  Each `call(name, *args, **kwargs)` runs `store_actions.<name>` in the worker
  and returns its (JSON) result, or raises WorkerError. Closing it ends the
  process with `os._exit(0)`.
  """

  def __init__(self, env: Dict[str, str], log_path: Optional[str] = None,
               wait: bool = True):
    full_env = dict(os.environ, **env)
    full_env['PYTHONPATH'] = os.pathsep.join(
        [_TESTS_DIR] + [p for p in [os.environ.get('PYTHONPATH')] if p])
    full_env.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    self._log = open(log_path or os.devnull, 'ab')  # pylint: disable=consider-using-with
    self.process = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), 'worker'],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
        env=full_env, text=True, start_new_session=True)
    self.pid = self.process.pid
    self.timeout = CALL_TIMEOUT
    self._log_path = log_path
    if wait:
      self.wait_ready()

  def wait_ready(self) -> None:
    """Waits until the worker has imported TensorFlow (`wait=False`)."""
    ready = _read_line(self.process.stdout, _START_TIMEOUT)
    if ready != 'ready':
      self.close()
      raise RuntimeError(f'the worker did not start: {ready!r} (log: '
                         f'{self._log_path})')

  def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
    """Runs `store_actions.<name>(*args, **kwargs)`; returns its result."""
    self.send(name, *args, **kwargs)
    return self.receive(name)

  def send(self, name: str, *args: Any, **kwargs: Any) -> None:
    """Starts a call without waiting for it (see `receive`)."""
    self.process.stdin.write(json.dumps([name, args, kwargs]) + '\n')
    self.process.stdin.flush()

  def receive(self, name: str = 'the call') -> Any:
    """Waits for the result of the call `send` started."""
    line = _read_line(self.process.stdout, self.timeout)
    try:
      reply = json.loads(line)
    except ValueError:
      raise RuntimeError(f'worker {self.pid} died or hung in {name}: '
                         f'{line!r} (exit {self.process.poll()})') from None
    if 'error' in reply:
      raise WorkerError(*reply['error'])
    return reply['result']

  def close(self) -> None:
    if self.process.poll() is None and not self.process.stdin.closed:
      try:
        self.process.stdin.close()  # the worker exits on end of input
        self.process.wait(timeout=30)
      except (OSError, subprocess.TimeoutExpired):
        pass
    _stop(self.process)
    self._log.close()

  def __enter__(self) -> 'Worker':
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def _serve(kind: str) -> None:
  """Runs a server on a free 127.0.0.1 port; prints 'PORT n'; until SIGTERM."""
  signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM, signal.SIGINT])
  if kind == 's3':
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer  # pylint: disable=g-import-not-at-top
    server = ThreadedMotoServer('127.0.0.1', 0, verbose=False)
    server.start()
    port = server.get_host_and_port()[1]
  else:
    server = _start_gcs_emulator()
    port = server._api._httpd.server_address[1]  # pylint: disable=protected-access
  print('PORT', port, flush=True)
  signal.sigwait([signal.SIGTERM, signal.SIGINT])
  os._exit(0)  # pylint: disable=protected-access


def _start_gcs_emulator():
  """gcp-storage-emulator, in memory, accepting empty uploads.

  The emulator fails on an upload with no body (TensorFlow's `dir/` marker
  objects: `len(None)` in its upload handlers, then the client retries for
  minutes); its upload handlers get an empty body instead.
  """
  # pylint: disable=g-import-not-at-top
  from gcp_storage_emulator import server as gcs_server
  from gcp_storage_emulator.handlers import objects
  uploads = (objects.xml_upload, objects.insert, objects.upload_partial)

  def with_empty_body(handler):
    def wrapped(request, response, storage, *args, **kwargs):
      if request.data is None:
        request._data = b''  # pylint: disable=protected-access
      return handler(request, response, storage, *args, **kwargs)
    return wrapped

  for _, methods in gcs_server.HANDLERS:
    for method, handler in list(methods.items()):
      if handler in uploads:
        methods[method] = with_empty_body(handler)
  server = gcs_server.create_server('127.0.0.1', 0, in_memory=True)
  server.start()
  return server


def _work() -> None:
  """Runs `store_actions` functions for JSON lines on stdin until EOF."""
  replies = os.fdopen(os.dup(1), 'w')
  os.dup2(2, 1)  # anything else printed goes to the log
  import tensorflow_io  # pylint: disable=g-import-not-at-top,unused-import
  from testing import store_actions  # pylint: disable=g-import-not-at-top
  print('ready', file=replies, flush=True)
  for line in sys.stdin:
    name, args, kwargs = json.loads(line)
    try:
      reply = {'result': getattr(store_actions, name)(*args, **kwargs)}
    except Exception as e:  # pylint: disable=broad-except
      reply = {'error': [type(e).__name__, str(e), traceback.format_exc()]}
    print(json.dumps(reply), file=replies, flush=True)
  sys.stdout.flush()
  sys.stderr.flush()
  # Not `sys.exit`: tensorflow-io's AWS client aborts the interpreter's exit.
  os._exit(0)  # pylint: disable=protected-access


if __name__ == '__main__':
  if sys.argv[1] == 'serve':
    _serve(sys.argv[2])
  else:
    _work()
