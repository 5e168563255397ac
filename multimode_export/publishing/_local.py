"""Publishing on a local filesystem: one `rename(2)` under the base lock.

The staging directory lives inside `export_dir_base` (same filesystem) and
is `flock`ed by its writer for its whole life, so a later export can tell a
dead writer's leftovers (unlocked) from a live one's (locked). It is created
and locked under the base lock; the version is chosen and the directory
renamed to it under the same lock: the version appears complete or not at
all, even if the process is killed, and concurrent exporters get distinct
versions without waiting for the clock.
"""

import contextlib
import os
import shutil
from typing import Callable, List, Optional, Sequence, Tuple

import tensorflow as tf
from absl import logging

from multimode_export import _filesystem as filesystem
from multimode_export.publishing import _durable
from multimode_export.publishing import _lock
from multimode_export.publishing import _versions

# Retries when a concurrent exporter removes the base we are about to lock.
_MAX_ATTEMPTS = 100


def create_staging(export_dir_base: str, path: str) -> int:
  """Creates the staging directory `path` and returns the fd holding its lock."""
  base = filesystem.local_path(export_dir_base)
  for _ in range(_MAX_ATTEMPTS):
    os.makedirs(base, exist_ok=True)
    try:
      base_fd = _lock.lock_dir(base)
    except FileNotFoundError:
      continue  # a failed concurrent export removed the base it created
    try:
      os.mkdir(filesystem.local_path(path))
      fd = _lock.try_lock(filesystem.local_path(path))
      assert fd is not None, 'a new directory cannot be locked by another'
      return fd
    finally:
      os.close(base_fd)
  raise FileNotFoundError(f'{base!r} keeps disappearing')


def publish_version(path: str, export_dir_base: str,
                    durable: bool = False) -> str:
  """Renames the staging directory to the next version; returns its path.

  With `durable`, the base is synced after the rename; if that fails, the
  rename is undone and the error raised: a version the call did not return
  is not left published.
  """
  with _lock.base_lock(export_dir_base):
    final = _versions.version_dir(
        export_dir_base, _versions.next_version([export_dir_base]))
    staged, target = filesystem.local_path(path), filesystem.local_path(final)
    try:
      os.rename(staged, target)
    except OSError:
      # A rename reported as failed may still have happened (NFS retries
      # it); under the base lock, `target` can only be ours.
      if not (os.path.isdir(target) and not os.path.lexists(staged)):
        raise
    if durable:
      try:
        _durable.sync_dir(filesystem.local_path(export_dir_base))
      except OSError:
        os.rename(target, staged)
        raise
    return final


def move_dirs(moves: Sequence[Tuple[str, str]], durable: bool = False
              ) -> None:
  """Renames directories in order; on failure renames them back and removes
  the parent directories it created.

  With `durable`, each rename is synced (both directories, and the entries
  of the parents it created) before the next one: after a crash, the moves
  that survive are a prefix of `moves`.
  """
  done, created = [], []
  try:
    for src, dst in moves:
      src, dst = filesystem.local_path(src), filesystem.local_path(dst)
      parent = os.path.dirname(dst)
      new_dirs = filesystem.missing_dirs(parent)
      created.extend(new_dirs)
      os.makedirs(parent, exist_ok=True)
      try:
        os.rename(src, dst)
      except OSError:
        # Reported as failed yet done (NFS): rolled back with the others.
        if not os.path.lexists(dst) or os.path.lexists(src):
          raise
      done.append((src, dst))
      if durable:
        _durable.sync_dirs([parent, os.path.dirname(src)] + [
            os.path.dirname(d) for d in new_dirs])
  except BaseException:  # also KeyboardInterrupt: never leave half a group
    for src, dst in reversed(done):
      os.rename(dst, src)
    for path in created:  # innermost first
      with contextlib.suppress(OSError):
        os.rmdir(path)
    raise


def remove(path: str, created: Sequence[str]) -> None:
  """Removes a staging directory and the now-empty directories in `created`."""
  if os.path.lexists(filesystem.local_path(path)):
    shutil.rmtree(filesystem.local_path(path))
  for directory in created:
    if os.path.isdir(directory) and not os.listdir(directory):
      # rmdir, not rmtree: a concurrent exporter may just have started
      # staging in it.
      os.rmdir(directory)


def remove_stale(export_dir_base: str, prefix: str,
                 roll_back: Callable[[str, str], None]) -> List[str]:
  """Removes the unlocked (dead writers') staging directories; returns them."""
  try:
    with _lock.base_lock(export_dir_base):
      base = filesystem.local_path(export_dir_base)
      names = sorted(n for n in os.listdir(base) if n.startswith(prefix))
      return [removed for name in names for removed in _remove_if_unlocked(
          export_dir_base, filesystem.join(export_dir_base, name), roll_back)]
  except OSError as e:
    logging.warning('Not removing stale staging data in %s: %s',
                    export_dir_base, e)
    return []


def _remove_if_unlocked(export_dir_base: str, path: str,
                        roll_back: Callable[[str, str], None]) -> List[str]:
  try:
    # Writers create and lock their staging directory while holding the
    # base lock, which we hold: an unlocked one has no live writer.
    fd: Optional[int] = _lock.try_lock(filesystem.local_path(path))
  except OSError:
    return []
  if fd is None:
    return []  # a live exporter holds it
  try:
    logging.info('Removing staging directory of a dead export: %s', path)
    roll_back(export_dir_base, path)
    shutil.rmtree(filesystem.local_path(path))
    return [path]
  except (OSError, tf.errors.OpError) as e:
    logging.warning('Could not remove %s: %s', path, e)
    return []
  finally:
    os.close(fd)
