"""The `variables` check of `verify`, its crc32c pass beside the loads.

The check reads `variables/variables.index` at once (the `saver` checks need
its dtypes and shapes), then checks every stored tensor's crc32c in one
bounded-memory pass over the data files (`variables/_bundle_check`).

On a local export that pass runs on a thread while `verify` loads and runs
the tag sets. The file reads release the GIL; so does google_crc32c for each
piece of 1 MiB or more in recent releases (checked with 1.9.0: its
`_crc32c.c` drops the GIL from 1 MiB on; two threads checksum 2 GiB in 1.4x
the time one takes for 1 GiB), and an older one only holds it for the few ms
of each 8 MiB piece, slowing the loads' Python parts (graph import), not
their restore ops. TensorFlow's restore ops and Session runs release the GIL
too, so on two cores the pass mostly hides behind the loads. Memory grows by
the pass's read buffer only. The result is recorded at the check's place in
the report (after `safety`, before every tag set's checks) once the pass
ends; the time a profile of `Recorder.run` shows for `variables` is then
what verify waited for the pass after the loads, not the pass itself
(`VariablesCheck.pass_seconds`, and the log, say how long the pass took).
"""

import threading
import time
from typing import Dict, Optional, Tuple, Union

from absl import logging

from multimode_export import _filesystem as filesystem
from multimode_export import errors
from multimode_export.checks import _report as report_lib
from multimode_export.checks import _wording as wording
from multimode_export.saved_model import _format
from multimode_export.variables import _bundle_check as bundle_check
from multimode_export.variables import _checkpoint as checkpoint

# Checkpoint key -> (dtype name, shape), as `variables/` stores them.
Variables = Dict[str, Tuple[str, tuple]]

_NO_VARIABLES = 'no variables/variables.index (a graph without variables)'


def overlaps(export_dir: str) -> bool:
  """Whether the crc32c pass of `export_dir` runs beside the loads.

  Only on the local filesystem. Remote files are read through TensorFlow's
  filesystem plugins (tensorflow-io for `s3://` and `gs://`), whose GCS
  reader crashes the process intermittently on reads of a few MiB
  (docs/object-stores.md): reading from a second thread while the restore
  ops read the same objects would only widen that exposure, and the two
  reads would share one network link, so little time would be saved. There
  the pass runs first, as the check's place in the report says.
  """
  return filesystem.is_local(export_dir)


class VariablesCheck:
  """The `variables` check of one SavedModel directory, begun when made.

  Making one reads the index; on a local export (see `overlaps`) it starts
  the crc32c pass on a daemon thread, elsewhere it runs the pass at once.
  `result` returns the check's detail (waiting for the pass) or raises
  `CheckFailed`. Use it as a context manager: leaving the block, normally or
  by an exception (KeyboardInterrupt included), stops the pass after the
  piece it is reading and waits for its thread, so that no thread outlives
  `verify`.

  Attributes:
    variables: checkpoint key -> (dtype name, shape) of `variables/`; None
      when the export has no variables or its index is unreadable.
    pass_seconds: how long the crc32c pass took (None until it ended).
  """

  def __init__(self, export_dir: str, *, overlap: Optional[bool] = None,
               buffer_bytes: int = bundle_check.DEFAULT_BUFFER_BYTES):
    """Reads the index of `export_dir/variables/` and begins the pass.

    Args:
      export_dir: the SavedModel directory, any filesystem.
      overlap: run the pass on a thread; by default `overlaps(export_dir)`.
      buffer_bytes: the pass's read size: the memory it uses.
    """
    self.variables: Optional[Variables] = None
    self.pass_seconds: Optional[float] = None
    self._prefix: Optional[str] = None
    self._buffer_bytes = buffer_bytes
    self._error: Optional[Exception] = None
    self._outcome: Union[None, bundle_check.BundleCheck, BaseException] = None
    self._stop = threading.Event()
    self._thread: Optional[threading.Thread] = None
    try:
      self._read_index(export_dir)
    except Exception as e:  # pylint: disable=broad-except
      # Reported by `result`, as a failed check: nothing is read further.
      self._error = e
      return
    if self._prefix is None:
      return
    if overlap is None:
      overlap = overlaps(export_dir)
    if overlap:
      self._thread = threading.Thread(
          target=self._run_on_thread, daemon=True,
          name='multimode_export.verify: crc32c of variables/')
      self._thread.start()
    else:
      self._run_pass()

  def _read_index(self, export_dir: str) -> None:
    if not _format.has_variables(export_dir):
      return
    prefix = _format.variables_prefix(export_dir)
    self.variables = checkpoint.variable_map(checkpoint.open_reader(prefix))
    self._prefix = prefix

  @property
  def running(self) -> bool:
    """Whether the pass's thread is still running."""
    return self._thread is not None and self._thread.is_alive()

  @property
  def may_pass(self) -> bool:
    """False when the check has already failed (the index is unreadable)."""
    return self._error is None

  def _run_pass(self) -> None:
    start = time.perf_counter()
    try:
      self._outcome = bundle_check.check(
          self._prefix, buffer_bytes=self._buffer_bytes, stop=self._stop)
    except Exception as e:  # pylint: disable=broad-except
      # Reported by `result`, as a failed check.
      self._outcome = e
    finally:
      self.pass_seconds = time.perf_counter() - start

  def _run_on_thread(self) -> None:
    try:
      self._run_pass()
    except BaseException as e:  # pylint: disable=broad-except
      # Whatever ends the thread reaches the main thread through `result`.
      self._outcome = e

  def result(self) -> str:
    """Waits for the crc32c pass; returns the check's detail.

    Returns:
      What was checked, e.g. '9 variables readable, crc32c of 9 stored
      tensors (52 bytes in 1 data file) checked'.

    Raises:
      CheckFailed: the index or a data file is unreadable, or a tensor's
        bytes do not match its crc32c (the message names it).
      BaseException: what else ended the pass's thread, unchanged.
    """
    if isinstance(self._error, errors.CheckpointReadError):
      raise report_lib.CheckFailed(
          'variables/ unreadable: '
          f'{report_lib.describe_error(self._error.__cause__)}'
      ) from self._error
    if self._error is not None:
      raise self._error
    if self._prefix is None:
      return _NO_VARIABLES
    if self._thread is not None:
      start = time.perf_counter()
      self._thread.join()
      logging.info('variables: the crc32c pass took %.2f s on a thread beside '
                   'the loads; verify waited %.2f s for it', self.pass_seconds,
                   time.perf_counter() - start)
    outcome = self._outcome
    if isinstance(outcome, bundle_check.BundleDataError):
      raise report_lib.CheckFailed(str(outcome)) from outcome
    if isinstance(outcome, Exception):
      # An unreadable shard, a variant tensor TF cannot read.
      raise report_lib.CheckFailed(
          f'variables/ unreadable: {report_lib.describe_error(outcome)}'
      ) from outcome
    if isinstance(outcome, BaseException):
      raise outcome
    return (f'{wording.count(len(self.variables), "variable")} readable, '
            f'crc32c of {wording.count(outcome.entries, "stored tensor")} '
            f'({outcome.bytes} bytes in '
            f'{wording.count(outcome.shards, "data file")}) checked')

  def close(self) -> None:
    """Stops the pass after the piece it is reading; waits for its thread."""
    self._stop.set()
    if self._thread is not None:
      self._thread.join()

  def __enter__(self) -> 'VariablesCheck':
    return self

  def __exit__(self, *exc) -> None:
    self.close()
