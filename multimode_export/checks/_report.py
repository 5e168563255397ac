"""What `verify` reports: one `CheckResult` per check, in a `VerifyReport`.

`Recorder` runs the checks of `_verification`, turning any exception a check
raises into a failed result with a one-line reason, and keeps the report's
order when a result is recorded later than its place (`Recorder.reserve`).
"""

import dataclasses
import re
from typing import Callable, List, Optional, Tuple, Union

import tensorflow as tf
from absl import logging

# A path longer than this is shown with its middle elided ('/a/b/.../y/z'),
# so that a long temp dir or URL never pushes the reason out of sight.
_PATH_LIMIT = 80
_PATH_KEEP = 36  # characters kept at each end of a shortened path
_PATH = re.compile(r"(?:[a-z][a-z0-9+.-]*://|/)[^\s'\"]+")


class CheckFailed(Exception):
  """A check found a problem; the message is the report's detail."""


@dataclasses.dataclass(frozen=True)
class CheckResult:
  """The outcome of one check.

  Attributes:
    name: the check, e.g. 'tf1_load' or 'tf2_signature:serving_default'.
    tags: the tag set of the MetaGraphDef checked; () for the whole export.
    ok: whether the check passed (a skipped check counts as passed).
    detail: what was checked and seen, or why it failed or was skipped.
    skipped: the check was not run (see `detail`).
  """
  name: str
  tags: Tuple[str, ...]
  ok: bool
  detail: str
  skipped: bool = False


@dataclasses.dataclass(frozen=True)
class VerifyReport:
  """The result of `verify`: every check run, in order.

  Attributes:
    export_dir: the SavedModel directory verified.
    checks: the checks, whole-export checks first, then per tag set.
  """
  export_dir: str
  checks: Tuple[CheckResult, ...]

  @property
  def ok(self) -> bool:
    """True when at least one check ran and every check passed."""
    return bool(self.checks) and all(c.ok for c in self.checks)

  @property
  def failures(self) -> Tuple[CheckResult, ...]:
    """The checks that failed."""
    return tuple(c for c in self.checks if not c.ok)

  @property
  def skipped(self) -> Tuple[CheckResult, ...]:
    """The checks that were not run (e.g. over `max_load_gib`)."""
    return tuple(c for c in self.checks if c.skipped)

  def __str__(self) -> str:
    failed = len(self.failures)
    if self.ok:
      head = f'PASSED: all {len(self.checks)} checks of {self.export_dir}'
    else:
      head = (f'FAILED: {failed} of {len(self.checks)} checks of '
              f'{self.export_dir}')
    tag_texts = [','.join(c.tags) or '*' for c in self.checks]
    tag_width = max([len(t) for t in tag_texts] + [4])
    name_width = max([len(c.name) for c in self.checks] + [5])
    lines = [head, f'  {"":4}  {"tags":{tag_width}}  {"check":{name_width}}  '
             'detail']
    for check, tags in zip(self.checks, tag_texts):
      status = 'skip' if check.skipped else 'ok' if check.ok else 'FAIL'
      lines.append(f'  {status:4}  {tags:{tag_width}}  {check.name:{name_width}}'
                   f'  {check.detail}')
    return '\n'.join(lines)


# Lines of a TF runtime error message that say where, not what.
_NOISE_PREFIXES = ('Graph execution error', 'Detected at node', 'Node:',
                   '[[', 'File ', 'defined at', 'Traceback')


def error_line(message: str) -> str:
  """The line of an error message that says what went wrong."""
  lines = [l.strip() for l in str(message).splitlines() if l.strip()]
  useful = [l for l in lines if not l.startswith(_NOISE_PREFIXES)]
  line = useful[0] if useful else (lines[0] if lines else '')
  node = next((l[len('Node:'):].strip() for l in lines
               if l.startswith('Node:')), None)
  return f'{line} (node {node})' if node and node not in line else line


def shorten_paths(text: str) -> str:
  """`text` with every path longer than `_PATH_LIMIT` cut in the middle.

  Only paths are shortened: the reason around them is never cut.
  """
  def shorten(match):
    path = match.group(0)
    if len(path) <= _PATH_LIMIT:
      return path
    return f'{path[:_PATH_KEEP]}...{path[-_PATH_KEEP:]}'
  return _PATH.sub(shorten, text)


def describe_error(e: BaseException) -> str:
  """'TypeName: what went wrong', long paths shortened in the middle."""
  if isinstance(e, CheckFailed):
    text = str(e)
  else:
    message = e.message if isinstance(e, tf.errors.OpError) else str(e)
    line = error_line(message)
    text = f'{type(e).__name__}: {line}' if line else type(e).__name__
  return shorten_paths(text)


class Place:
  """A place in the report, kept by `Recorder.reserve` for a later result."""


class Recorder:
  """Runs checks, turning any exception into a failed CheckResult.

  A check whose result is known only later (the `variables` check, whose
  crc32c pass runs on a thread while tag sets load) keeps its place in the
  report with `reserve`; `run`, `fail` or `skip` with `place=` fills it, or
  `drop` removes it when the check is not run after all.
  """

  def __init__(self):
    self._entries: List[Union[CheckResult, Place]] = []

  @property
  def results(self) -> Tuple[CheckResult, ...]:
    """The checks recorded, in report order.

    Raises:
      RuntimeError: a reserved place was neither filled nor dropped.
    """
    if any(isinstance(e, Place) for e in self._entries):
      raise RuntimeError('a reserved place of the report was never filled')
    return tuple(self._entries)

  def reserve(self) -> Place:
    """Keeps the next place of the report for a result recorded later."""
    place = Place()
    self._entries.append(place)
    return place

  def drop(self, place: Place) -> None:
    """Gives up a reserved place: the report has no check there."""
    del self._entries[self._index(place)]

  def run(self, name: str, tags: Tuple[str, ...], check: Callable[[], str],
          *, place: Optional[Place] = None) -> bool:
    """Runs `check` and records its result.

    Args:
      name: the check's name.
      tags: the tag set checked; () for the whole export.
      check: returns the detail of a passed check; any exception it raises
        fails the check, described in one line.
      place: where to record the result (from `reserve`); by default, after
        every check recorded so far.

    Returns:
      Whether the check passed.
    """
    try:
      detail = check()
      ok = True
    except Exception as e:  # pylint: disable=broad-except
      # A verifier reports whatever goes wrong; it must not stop at the first
      # unexpected error type.
      detail = describe_error(e)
      ok = False
      logging.debug('check %s %s failed', name, tags, exc_info=True)
    logging.info('%s [%s] %s: %s', 'ok' if ok else 'FAIL', ','.join(tags),
                 name, detail)
    self._record(CheckResult(name, tags, ok, detail), place)
    return ok

  def fail(self, name: str, tags: Tuple[str, ...], detail: str, *,
           place: Optional[Place] = None) -> None:
    """Records a failed check (at `place`, if given)."""
    logging.info('FAIL [%s] %s: %s', ','.join(tags), name, detail)
    self._record(CheckResult(name, tags, False, detail), place)

  def skip(self, name: str, tags: Tuple[str, ...], detail: str, *,
           place: Optional[Place] = None) -> None:
    """Records a check not run, and why (at `place`, if given)."""
    logging.info('skip [%s] %s: %s', ','.join(tags), name, detail)
    self._record(CheckResult(name, tags, True, detail, skipped=True), place)

  def add(self, result: CheckResult) -> None:
    """Records a result another process ran (see `_sandbox`)."""
    logging.info('%s [%s] %s: %s', 'ok' if result.ok else 'FAIL',
                 ','.join(result.tags), result.name, result.detail)
    self._record(result, None)

  def _record(self, result: CheckResult, place: Optional[Place]) -> None:
    if place is None:
      self._entries.append(result)
    else:
      self._entries[self._index(place)] = result

  def _index(self, place: Place) -> int:
    for i, entry in enumerate(self._entries):
      if entry is place:
        return i
    raise ValueError('place: expected a place reserved and not yet filled '
                     'or dropped')
