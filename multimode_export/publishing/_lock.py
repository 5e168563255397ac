"""The base-directory lock every local publishing step takes.

Creating a staging directory, removing dead ones, choosing a version number
and renaming into place, publishing a per-mode group and replacing a fixed
`export_dir` all happen under an exclusive `flock` of the directory they
publish into, so concurrent exporters on one machine (or one NFS with
working locks) never pick the same version or remove a live staging
directory. Remote filesystems have no such lock (see `_remote`).
"""

import contextlib
import fcntl
import os
from typing import Iterator, Optional

from multimode_export import _filesystem as filesystem


def lock_dir(path: str) -> int:
  """Returns an fd of the local directory `path` holding its exclusive flock.

  Raises:
    FileNotFoundError: `path` was removed (or replaced) while we waited, so
      the lock would protect nothing.
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


@contextlib.contextmanager
def base_lock(export_dir_base: str) -> Iterator[Optional[int]]:
  """Holds the lock of `export_dir_base` (local) for the body; remote: none.

  Yields:
    The locked directory's fd, or None on a remote filesystem.
  """
  if not filesystem.is_local(export_dir_base):
    yield None
    return
  fd = lock_dir(filesystem.local_path(export_dir_base))
  try:
    yield fd
  finally:
    os.close(fd)


def try_lock(path: str) -> Optional[int]:
  """An fd of `path` holding its flock if no one else holds it, else None.

  Raises:
    OSError: `path` cannot be opened.
  """
  fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    os.close(fd)
    return None
  except BaseException:
    os.close(fd)
    raise
  return fd
