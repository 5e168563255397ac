"""Staging an export and publishing it as a numbered version directory.

The guarantee: a directory `<export_dir_base>/<version>` (all digits, what
model servers poll for) holds a complete SavedModel whenever a poller that
waits for `saved_model.pb` sees it, and nothing of a failed or killed export
is ever published.

* Local filesystems: everything is written into a hidden staging directory
  inside `export_dir_base` (same filesystem), which is then renamed to the
  version name in one `rename(2)`: the version appears complete or not at
  all, even if the process is killed. The staging directory is `flock`ed by
  its writer for its whole life, so a later export can tell a dead writer's
  leftovers (unlocked) from a live one's (locked) and removes only the first.
  Choosing the version number and renaming happen under an exclusive `flock`
  of `export_dir_base`, so concurrent exporters get distinct versions without
  waiting for the clock.
* Other filesystems (`gs://`, `s3://`, `hdfs://`, `ram://`), where renaming a
  directory is not atomic or not supported: the staging directory is written
  first, then its files are renamed one by one into the version directory,
  `saved_model.pb` (or `.pbtxt`) last. A poller that treats a version as ready
  once `saved_model.pb` exists never sees a partial export. Leftover staging
  directories are removed once older than `STALE_AFTER_SECONDS`.

Per-mode groups (`Staging.publish_group`): every mode is staged completely in
one staging directory, then, under the same lock, one version number is
chosen above every version of every mode directory and each mode is moved to
`<export_dir_base>/<mode dir>/<version>`, in the order TRAIN, EVAL, PREDICT.
A failed move moves the others back. An exporter killed between two moves
leaves a journal in its staging directory, and the next export in the same
base unpublishes that incomplete group before it publishes anything.
"""

import contextlib
import fcntl
import json
import os
import shutil
import socket
import time
import uuid
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import tensorflow as tf
from absl import logging

from multimode_export import errors
from multimode_export import filesystem

STAGING_PREFIX = '.multimode-export-staging-'
# An unlocked local staging directory younger than this may belong to a
# writer that has created it but not locked it yet.
_LOCAL_GRACE_SECONDS = 10.0
# Remote staging directories carry no lock; they are stale after this long.
STALE_AFTER_SECONDS = 24 * 3600.0
_STARTED_MARKER = '.started'
STARTED_MARKER = _STARTED_MARKER  # for callers that move staged files
# Written into the staging directory before a group is published: which
# version, which subdirectories. Lets a later export roll back the group of
# an exporter killed half-way through publishing (`remove_stale_staging`).
_GROUP_JOURNAL = '.publishing-group'
SAVED_MODEL_FILES = (tf.saved_model.SAVED_MODEL_FILENAME_PB,
                     tf.saved_model.SAVED_MODEL_FILENAME_PBTXT)


def _is_version(name: str) -> bool:
  return name.isdigit()


def existing_versions(export_dir_base: str) -> List[int]:
  """Version numbers of the published exports under `export_dir_base`."""
  if not tf.io.gfile.isdir(export_dir_base):
    return []
  return sorted(int(n.rstrip('/')) for n in tf.io.gfile.listdir(export_dir_base)
                if _is_version(n.rstrip('/')))


def next_version(export_dir_base: str) -> int:
  """The current Unix time, or one more than the newest version if larger.

  Versions stay timestamps in the common case and always increase, so a
  poller that serves the highest version serves the newest export.
  """
  versions = existing_versions(export_dir_base)
  return max(int(time.time()), versions[-1] + 1 if versions else 0)


def next_group_version(export_dir_base: str, names: Iterable[str]) -> int:
  """`next_version` over the version directories of every `<base>/<name>`."""
  newest = 0
  for name in names:
    versions = existing_versions(filesystem.join(export_dir_base, name))
    if versions:
      newest = max(newest, versions[-1] + 1)
  return max(int(time.time()), newest)


def check_export_dir_base(export_dir_base: str) -> None:
  """Raises ExportDirError if the base exists and is not a directory."""
  if tf.io.gfile.exists(export_dir_base) and not tf.io.gfile.isdir(
      export_dir_base):
    raise errors.ExportDirError(
        f'export_dir_base: expected a directory, got the file '
        f'{export_dir_base!r}', export_dir_base)


class Staging:
  """A hidden directory in `export_dir_base` where one export is written.

  Use `open_staging`; call `publish` once the contents are complete, or
  `discard` to remove everything (the staging directory, and the base itself
  if this export created it and it is empty again).
  """

  def __init__(self, export_dir_base: str):
    self.export_dir_base = export_dir_base
    self.local = filesystem.is_local(export_dir_base)
    self._created_base = not tf.io.gfile.exists(export_dir_base)
    name = (f'{STAGING_PREFIX}{socket.gethostname()}-{os.getpid()}-'
            f'{uuid.uuid4().hex[:12]}')
    self.path = filesystem.join(export_dir_base, name)
    self._lock_fd: Optional[int] = None
    try:
      if self.local:
        os.makedirs(filesystem.local_path(export_dir_base), exist_ok=True)
        os.mkdir(filesystem.local_path(self.path))
        self._lock_fd = os.open(filesystem.local_path(self.path), os.O_RDONLY)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
      else:
        tf.io.gfile.makedirs(self.path)
        with tf.io.gfile.GFile(filesystem.join(self.path, _STARTED_MARKER),
                               'w') as f:
          f.write(repr(time.time()))
    except (OSError, tf.errors.OpError) as e:
      self.discard()
      raise errors.ExportDirError(
          f'export_dir_base {export_dir_base!r} is not writable: {e}',
          export_dir_base) from e

  def publish(self) -> str:
    """Makes the staged export visible as the next version; returns its path."""
    if self.local:
      final = self._publish_local()
    else:
      final = self._publish_by_files()
    self._release()
    logging.info('Export published at %s', final)
    return final

  def _publish_local(self) -> str:
    base = filesystem.local_path(self.export_dir_base)
    fd = os.open(base, os.O_RDONLY)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX)
      final = filesystem.join(self.export_dir_base,
                              str(next_version(self.export_dir_base)))
      os.rename(filesystem.local_path(self.path), filesystem.local_path(final))
      return final
    finally:
      os.close(fd)  # releases the lock

  def _publish_by_files(self) -> str:
    final = filesystem.join(self.export_dir_base,
                            str(next_version(self.export_dir_base)))
    marker = filesystem.join(self.path, _STARTED_MARKER)
    files = [f for f in _walk_files(self.path) if f != marker]
    last = [f for f in files if os.path.basename(f) in SAVED_MODEL_FILES]
    for src in [f for f in files if f not in last] + last:
      dst = filesystem.join(final, src[len(self.path):])
      tf.io.gfile.makedirs(os.path.dirname(dst))
      tf.io.gfile.rename(src, dst)
    tf.io.gfile.rmtree(self.path)
    return final

  def publish_group(self, names: Sequence[str],
                    reserved: Iterable[str]) -> Dict[str, str]:
    """Publishes each staged subdirectory as `<base>/<name>/<version>`.

    Every subdirectory gets the same version, larger than any version in
    any `<base>/<r>` for `r` in `reserved`. The subdirectories are complete
    before the first one is published, and are published in the order of
    `names`; if one fails, those already published are moved back and
    nothing stays published.

    Args:
      names: subdirectories of the staging directory, in publish order.
      reserved: every name whose versions the new version must exceed (a
        superset of `names`).

    Returns:
      name -> published directory.

    Raises:
      errors.PublishError: a rename failed (already rolled back).
    """
    base = self.export_dir_base
    fd = None
    if self.local:
      fd = os.open(filesystem.local_path(base), os.O_RDONLY)
      fcntl.flock(fd, fcntl.LOCK_EX)
    try:
      version = next_group_version(base, reserved)
      with tf.io.gfile.GFile(filesystem.join(self.path, _GROUP_JOURNAL),
                             'w') as f:
        f.write(json.dumps({'version': version, 'names': list(names)}))
      finals = {n: filesystem.join(base, n, str(version)) for n in names}
      moves = [(filesystem.join(self.path, n), finals[n]) for n in names]
      try:
        if self.local:
          _rename_dirs(moves)
        else:
          move_files(moves)
      except (OSError, tf.errors.OpError) as e:
        raise errors.PublishError(
            f'publishing version {version} of {list(names)} under {base!r} '
            f'failed, nothing published: {type(e).__name__}: {e}', base) from e
    finally:
      if fd is not None:
        os.close(fd)
    self.discard()  # only the journal is left in it
    logging.info('Export group published as version %d of %s under %s',
                 version, list(names), base)
    return finals

  def discard(self) -> None:
    """Removes the staging directory and, if this export created the base
    and it is empty again, the base."""
    try:
      if tf.io.gfile.exists(self.path):
        if self.local:
          shutil.rmtree(filesystem.local_path(self.path), ignore_errors=True)
        else:
          tf.io.gfile.rmtree(self.path)
      if self._created_base and tf.io.gfile.isdir(self.export_dir_base) and (
          not tf.io.gfile.listdir(self.export_dir_base)):
        # Only an empty base this export created; rmtree would race with a
        # concurrent exporter that just started staging in it.
        if self.local:
          os.rmdir(filesystem.local_path(self.export_dir_base))
        else:
          tf.io.gfile.rmtree(self.export_dir_base)
    except (OSError, tf.errors.OpError) as e:
      logging.warning('Could not remove staging data %s: %s', self.path, e)
    finally:
      self._release()

  def _release(self) -> None:
    if self._lock_fd is not None:
      os.close(self._lock_fd)
      self._lock_fd = None


def _walk_files(root: str) -> List[str]:
  out = []
  for dirpath, _, filenames in tf.io.gfile.walk(root):
    out.extend(filesystem.join(dirpath, f) for f in filenames)
  return out


def _rename_dirs(moves: Sequence[Tuple[str, str]]) -> None:
  """Renames local directories in order; on failure renames them back."""
  done = []
  try:
    for src, dst in moves:
      parent = os.path.dirname(filesystem.local_path(dst))
      created = not os.path.isdir(parent)
      os.makedirs(parent, exist_ok=True)
      os.rename(filesystem.local_path(src), filesystem.local_path(dst))
      done.append((src, dst, parent if created else None))
  except BaseException:  # also KeyboardInterrupt: never leave half a group
    for src, dst, created in reversed(done):
      os.rename(filesystem.local_path(dst), filesystem.local_path(src))
      if created:
        with contextlib.suppress(OSError):
          os.rmdir(created)
    raise


def move_files(moves: Sequence[Tuple[str, str]],
               skip: Iterable[str] = ()) -> None:
  """Moves every file of each (source dir, new dir) pair, file by file.

  For filesystems without atomic directory rename. Every SavedModel proto is
  moved after every other file of every pair, in the order of `moves`, so a
  reader that waits for `saved_model.pb` never sees a partial directory. On
  failure the moved files are moved back and the new dirs removed.
  """
  skip = set(skip)
  files, protos = [], []
  for src_dir, dst_dir in moves:
    for src in _walk_files(src_dir):
      if src in skip:
        continue
      pair = (src, filesystem.join(dst_dir, src[len(src_dir):]))
      (protos if os.path.basename(src) in SAVED_MODEL_FILES else
       files).append(pair)
  done = []
  try:
    for src, dst in files + protos:
      tf.io.gfile.makedirs(os.path.dirname(dst))
      tf.io.gfile.rename(src, dst)
      done.append((src, dst))
  except (OSError, tf.errors.OpError):
    for src, dst in reversed(done):
      tf.io.gfile.rename(dst, src)
    for _, dst_dir in moves:
      with contextlib.suppress(OSError, tf.errors.OpError):
        tf.io.gfile.rmtree(dst_dir)
    raise


@contextlib.contextmanager
def open_staging(export_dir_base: str) -> Iterator[Staging]:
  """Yields a Staging; discards it if the body raises or does not publish."""
  staging = Staging(export_dir_base)
  try:
    yield staging
  finally:
    if tf.io.gfile.exists(staging.path):
      staging.discard()


def remove_stale_staging(export_dir_base: str) -> List[str]:
  """Removes staging directories left by dead exporters; returns their paths.

  Never touches a live exporter's staging directory or a published export,
  except the members of a per-mode group whose exporter died half-way
  through publishing it (see `_roll_back_group`).
  """
  if not tf.io.gfile.isdir(export_dir_base):
    return []
  removed = []
  for name in tf.io.gfile.listdir(export_dir_base):
    name = name.rstrip('/')
    if not name.startswith(STAGING_PREFIX):
      continue
    path = filesystem.join(export_dir_base, name)
    stale = (_local_is_stale(path) if filesystem.is_local(path)
             else _remote_is_stale(path))
    if stale:
      logging.info('Removing staging directory of a dead export: %s', path)
      _roll_back_group(export_dir_base, path)
      if filesystem.is_local(path):
        shutil.rmtree(filesystem.local_path(path), ignore_errors=True)
      else:
        tf.io.gfile.rmtree(path)
      removed.append(path)
  return removed


def _roll_back_group(export_dir_base: str, staging_path: str) -> None:
  """Unpublishes the group of an exporter killed while publishing it.

  The rule: a group is complete once no SavedModel proto is left in its
  staging directory (protos move last). A complete group stays published; of
  an incomplete one, every member already published is removed, its
  `saved_model.pb` first (local: renamed back into the staging directory in
  one step).
  """
  try:
    with tf.io.gfile.GFile(filesystem.join(staging_path, _GROUP_JOURNAL)) as f:
      journal = json.loads(f.read())
    version, names = int(journal['version']), list(journal['names'])
  except (tf.errors.OpError, ValueError, KeyError, TypeError):
    return  # no group was being published
  local = filesystem.is_local(staging_path)
  if not any(os.path.basename(f) in SAVED_MODEL_FILES
             for f in _walk_files(staging_path)):
    return
  for name in names:
    published = filesystem.join(export_dir_base, name, str(version))
    if not tf.io.gfile.exists(published):
      continue
    logging.warning('Unpublishing %s: its exporter died before publishing '
                    'the rest of its group %s', published, names)
    if local and not tf.io.gfile.exists(filesystem.join(staging_path, name)):
      os.rename(filesystem.local_path(published),
                filesystem.local_path(filesystem.join(staging_path, name)))
      continue
    for proto in SAVED_MODEL_FILES:
      with contextlib.suppress(tf.errors.NotFoundError):
        tf.io.gfile.remove(filesystem.join(published, proto))
    tf.io.gfile.rmtree(published)


def _local_is_stale(path: str) -> bool:
  try:
    fd = os.open(filesystem.local_path(path), os.O_RDONLY)
  except OSError:
    return False
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      return False  # a live exporter holds it
    return time.time() - os.fstat(fd).st_ctime > _LOCAL_GRACE_SECONDS
  finally:
    os.close(fd)


def _remote_is_stale(path: str) -> bool:
  try:
    with tf.io.gfile.GFile(filesystem.join(path, _STARTED_MARKER)) as f:
      started = float(f.read())
  except (tf.errors.OpError, ValueError):
    return False
  return time.time() - started > STALE_AFTER_SECONDS
