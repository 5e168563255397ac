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
  Creating and locking a staging directory, removing dead ones, and choosing
  the version number and renaming all happen under an exclusive `flock` of
  `export_dir_base` itself, so a staging directory is never seen unlocked
  while its writer lives, and concurrent exporters get distinct versions
  without waiting for the clock.
* Other filesystems (`gs://`, `s3://`, `hdfs://`, `ram://`), where renaming a
  directory is not atomic or not supported: the staging directory is written
  first, then its files are renamed one by one into the version directory,
  `saved_model.pb` (or `.pbtxt`) last. A poller that treats a version as ready
  once `saved_model.pb` exists never sees a partial export. The first file
  moved claims the version (renamed without overwriting; a concurrent
  exporter that claimed it first makes this one take the next number). If a
  move fails, the files already moved are deleted again. Leftover staging
  directories are removed once older than `STALE_AFTER_SECONDS`; their age
  is read from their name, so even one whose creation was cut short goes.

Per-mode groups (`Staging.publish_group`): every mode is staged completely in
one staging directory, then, under the same lock, one version number is
chosen above every version of every mode directory and each mode is moved to
`<export_dir_base>/<mode dir>/<version>`, in the order TRAIN, EVAL, PREDICT.
A failed move moves the others back. An exporter killed between two moves
leaves a journal in its staging directory, and the next export in the same
base unpublishes that incomplete group before it publishes anything.

Failures before publishing remove the staging directory and any directory
the export created (the base itself and missing parents, if still empty), so
`export_dir_base` is left as it was.
"""

import contextlib
import fcntl
import json
import os
import shutil
import socket
import time
import uuid
from typing import (Dict, Iterable, Iterator, List, Optional, Sequence,
                    Tuple)

import tensorflow as tf
from absl import logging

from multimode_export import errors
from multimode_export import _filesystem as filesystem

STAGING_PREFIX = '.multimode-export-staging-'
# Remote staging directories carry no lock; they are stale after this long.
STALE_AFTER_SECONDS = 24 * 3600.0
# Retries when a concurrent exporter removes the base we are about to lock,
# or claims the version we picked on a remote filesystem.
_MAX_ATTEMPTS = 100
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


def _missing_dirs(path: str) -> List[str]:
  """`path` and those of its ancestors that do not exist, innermost first."""
  missing = []
  if filesystem.is_local(path):
    path = os.path.abspath(filesystem.local_path(path))
    while not os.path.lexists(path):
      missing.append(path)
      path = os.path.dirname(path)
    return missing
  root = path[:path.index('://') + 3]
  rest = path[len(root):].rstrip('/')
  while rest and not tf.io.gfile.exists(root + rest):
    missing.append(root + rest)
    rest = rest.rsplit('/', 1)[0] if '/' in rest else ''
  return missing


def _lock_dir(path: str) -> int:
  """Returns an fd of the local directory `path` holding its exclusive flock.

  Raises:
    FileNotFoundError: `path` was removed (or replaced) while we waited.
  """
  fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX)
    held = os.fstat(fd)
    if held.st_nlink == 0 or not os.path.samestat(held, os.stat(path)):
      raise FileNotFoundError(f'{path!r} was removed while being locked')
  except BaseException:
    os.close(fd)
    raise
  return fd


class Staging:
  """A hidden directory in `export_dir_base` where one export is written.

  Use `open_staging`; call `publish` once the contents are complete, or
  `discard` to remove everything (the staging directory, and the base and its
  parents if this export created them and they are empty again).
  """

  def __init__(self, export_dir_base: str):
    self.export_dir_base = export_dir_base
    self.local = filesystem.is_local(export_dir_base)
    # The creation time ends the name: remote staging directories have no
    # lock and often no reliable mtime.
    name = (f'{STAGING_PREFIX}{socket.gethostname()}-{os.getpid()}-'
            f'{uuid.uuid4().hex[:12]}-{int(time.time())}')
    self.path = filesystem.join(export_dir_base, name)
    self.published = False
    self._lock_fd: Optional[int] = None
    self._created: List[str] = []
    try:
      self._created = _missing_dirs(export_dir_base)
      if self.local:
        self._create_local()
      else:
        tf.io.gfile.makedirs(self.path)
    except (OSError, tf.errors.OpError) as e:
      self.discard()
      raise errors.ExportDirError(
          f'export_dir_base {export_dir_base!r} is not writable: '
          f'{type(e).__name__}: {e}', export_dir_base) from e

  def _create_local(self) -> None:
    base = filesystem.local_path(self.export_dir_base)
    for _ in range(_MAX_ATTEMPTS):
      os.makedirs(base, exist_ok=True)
      try:
        base_fd = _lock_dir(base)
      except FileNotFoundError:
        continue  # a failed concurrent export removed the base it created
      try:
        os.mkdir(filesystem.local_path(self.path))
        self._lock_fd = os.open(filesystem.local_path(self.path),
                                os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      finally:
        os.close(base_fd)
      return
    raise FileNotFoundError(f'{base!r} keeps disappearing')

  def publish(self) -> str:
    """Makes the staged export visible as the next version; returns its path."""
    if self.local:
      final = self._publish_local()
    else:
      final = self._publish_by_files()
    self.published = True
    self._release()
    logging.info('Export published at %s', final)
    return final

  def _publish_local(self) -> str:
    base_fd = _lock_dir(filesystem.local_path(self.export_dir_base))
    try:
      final = filesystem.join(self.export_dir_base,
                              str(next_version(self.export_dir_base)))
      staged, target = (filesystem.local_path(self.path),
                        filesystem.local_path(final))
      try:
        os.rename(staged, target)
      except OSError:
        # A rename reported as failed may still have happened (NFS retries
        # it); under the base lock, `target` can only be ours.
        if os.path.isdir(target) and not os.path.lexists(staged):
          return final
        raise
      return final
    finally:
      os.close(base_fd)

  def _publish_by_files(self) -> str:
    files = sorted(_walk_files(self.path))
    if not files:
      raise errors.PublishError(f'nothing staged in {self.path!r}',
                                self.export_dir_base)
    last = [f for f in files if os.path.basename(f) in SAVED_MODEL_FILES]
    order = [f for f in files if f not in last] + last
    final = self._claim_version(order[0])
    try:
      for src in order[1:]:
        self._move(src, final)
    except BaseException:
      _remove_quietly(final)  # claimed by us: only our files are in it
      raise
    try:
      tf.io.gfile.rmtree(self.path)
    except tf.errors.OpError as e:
      # Published already; the leftover is removed once stale.
      logging.warning('Could not remove the staging directory %s: %s',
                      self.path, e)
    return final

  def _move(self, src: str, final: str) -> str:
    dst = filesystem.join(final, src[len(self.path):])
    tf.io.gfile.makedirs(os.path.dirname(dst))
    tf.io.gfile.rename(src, dst, overwrite=False)
    return dst

  def _claim_version(self, first: str) -> str:
    """Moves `first` into a new version directory, which makes it ours."""
    for _ in range(_MAX_ATTEMPTS):
      final = filesystem.join(self.export_dir_base,
                              str(next_version(self.export_dir_base)))
      existed = tf.io.gfile.exists(final)
      try:
        self._move(first, final)
        return final
      except tf.errors.AlreadyExistsError:
        continue  # a concurrent exporter claimed this version first
      except tf.errors.OpError:
        dst = filesystem.join(final, first[len(self.path):])
        if tf.io.gfile.exists(dst) and not tf.io.gfile.exists(first):
          return final  # the rename happened although it reported an error
        if not existed:
          _remove_quietly(final, only_if_no_files=True)
        raise
    raise errors.PublishError(
        f'could not claim a new version under {self.export_dir_base!r} after '
        f'{_MAX_ATTEMPTS} attempts', self.export_dir_base)

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
    fd = _lock_dir(filesystem.local_path(base)) if self.local else None
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
    self.published = True
    self.discard()  # only the journal is left in it
    logging.info('Export group published as version %d of %s under %s',
                 version, list(names), base)
    return finals

  def discard(self) -> None:
    """Removes the staging directory and the directories this export created
    (the base and its parents), if they are empty again."""
    try:
      if self.local:
        if os.path.lexists(filesystem.local_path(self.path)):
          shutil.rmtree(filesystem.local_path(self.path))
        for path in self._created:
          if os.path.isdir(path) and not os.listdir(path):
            # rmdir, not rmtree: a concurrent exporter may just have started
            # staging in it.
            os.rmdir(path)
      else:
        if tf.io.gfile.exists(self.path):
          tf.io.gfile.rmtree(self.path)
        for path in self._created:
          if tf.io.gfile.isdir(path) and not tf.io.gfile.listdir(path):
            tf.io.gfile.rmtree(path)
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
  """Renames local directories in order; on failure renames them back and
  removes the parent directories it created."""
  done, created = [], []
  try:
    for src, dst in moves:
      src, dst = filesystem.local_path(src), filesystem.local_path(dst)
      parent = os.path.dirname(dst)
      created.extend(_missing_dirs(parent))
      os.makedirs(parent, exist_ok=True)
      try:
        os.rename(src, dst)
      except OSError:
        # A rename reported as failed may still have happened (NFS retries
        # it): then it is done, and rolled back with the others if need be.
        if not os.path.lexists(dst) or os.path.lexists(src):
          raise
      done.append((src, dst))
  except BaseException:  # also KeyboardInterrupt: never leave half a group
    for src, dst in reversed(done):
      os.rename(dst, src)
    for path in created:  # innermost first
      with contextlib.suppress(OSError):
        os.rmdir(path)
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
  created = [d for _, dst_dir in moves for d in _missing_dirs(dst_dir)]
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
    for path in created:  # innermost first; e.g. a new mode directory
      with contextlib.suppress(OSError, tf.errors.OpError):
        if tf.io.gfile.isdir(path) and not tf.io.gfile.listdir(path):
          tf.io.gfile.rmtree(path)
    raise


def _remove_quietly(path: str, only_if_no_files: bool = False) -> None:
  try:
    if not tf.io.gfile.exists(path):
      return
    if only_if_no_files and _walk_files(path):
      return
    tf.io.gfile.rmtree(path)
  except tf.errors.OpError as e:
    logging.warning('Could not remove %s: %s', path, e)


@contextlib.contextmanager
def open_staging(export_dir_base: str) -> Iterator[Staging]:
  """Yields a Staging; discards it if the body raises or does not publish."""
  staging = Staging(export_dir_base)
  try:
    yield staging
  finally:
    if not staging.published:
      staging.discard()


def remove_stale_staging(export_dir_base: str) -> List[str]:
  """Removes staging directories left by dead exporters; returns their paths.

  Never touches a live exporter's staging directory or a published export,
  except the members of a per-mode group whose exporter died half-way
  through publishing it (see `_roll_back_group`). Best effort: a directory
  that cannot be removed is logged and skipped.
  """
  if not tf.io.gfile.isdir(export_dir_base):
    return []
  if filesystem.is_local(export_dir_base):
    return _remove_stale_local(export_dir_base)
  removed = []
  for name in tf.io.gfile.listdir(export_dir_base):
    name = name.rstrip('/')
    path = filesystem.join(export_dir_base, name)
    if name.startswith(STAGING_PREFIX) and _remote_is_stale(name):
      logging.info('Removing staging directory of a dead export: %s', path)
      try:
        _roll_back_group(export_dir_base, path)
        tf.io.gfile.rmtree(path)
        removed.append(path)
      except tf.errors.OpError as e:
        logging.warning('Could not remove %s: %s', path, e)
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


def _remove_stale_local(export_dir_base: str) -> List[str]:
  base = filesystem.local_path(export_dir_base)
  try:
    base_fd = _lock_dir(base)
  except OSError as e:
    logging.warning('Not removing stale staging data in %s: %s', base, e)
    return []
  removed = []
  try:
    for name in os.listdir(base):
      if not name.startswith(STAGING_PREFIX):
        continue
      path = filesystem.join(export_dir_base, name)
      try:
        fd = os.open(filesystem.local_path(path), os.O_RDONLY | os.O_DIRECTORY)
      except OSError:
        continue
      try:
        # Writers create and lock their staging directory while holding the
        # base lock, which we hold: an unlocked one has no live writer.
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        logging.info('Removing staging directory of a dead export: %s', path)
        _roll_back_group(export_dir_base, path)
        shutil.rmtree(filesystem.local_path(path))
        removed.append(path)
      except BlockingIOError:
        pass  # a live exporter holds it
      except (OSError, tf.errors.OpError) as e:
        logging.warning('Could not remove %s: %s', path, e)
      finally:
        os.close(fd)
  finally:
    os.close(base_fd)
  return removed


def _remote_is_stale(name: str) -> bool:
  started = name.rsplit('-', 1)[-1]
  if not started.isdigit():
    return False
  return time.time() - int(started) > STALE_AFTER_SECONDS
