"""Making a published export survive a machine crash: `fsync` on local disks.

A `rename(2)` makes a version appear complete or not at all to other
processes, but not across a power cut or a kernel crash: ext4 and XFS may
commit the rename to their journal before the data blocks of the files it
publishes, and a rename not followed by a sync of its directory may be
undone. So, on a local filesystem, publishing is:

1. `sync_tree`: every file of the staged tree, then every directory of it,
   is `fsync`ed (and the entries of the directories the export created: the
   base and its missing parents), before the publishing rename;
2. the rename;
3. `sync_dirs`: the directory that received the new name, before the call
   returns.

A file that is a hard link to a checkpoint file shares its inode: syncing
it makes the user's checkpoint data durable too (once per inode, however many
names it has in the tree). Files are synced by a few threads at once: their
writeback overlaps (12 fresh files: half the time of one thread,
docs/benchmarks/durability.md).

Other filesystems need none of this: an object store (`gs://`, `s3://`)
stores an object durably before its upload completes, and `ram://` lives in
the process's memory. `applies` says which paths are synced.
"""

import concurrent.futures
import errno
import os
import stat
from typing import Iterable, List, Set, Tuple

from multimode_export import _filesystem as filesystem

# Threads syncing files at once: enough for the writeback of several files
# to overlap and their journal commits to be shared.
_THREADS = 4


def applies(path: str) -> bool:
  """Whether an export at `path` is made durable here (local paths only)."""
  return filesystem.is_local(path)


def sync_file(path: str) -> None:
  """`fsync`s the file at `path` (its data and size).

  Raises:
    OSError: the file cannot be opened, or the sync failed (its data may not
      be on disk).
  """
  fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def sync_dir(path: str) -> None:
  """`fsync`s the directory at `path`: its entries (names created, renamed
  into it or removed) become durable.

  Raises:
    OSError: the directory cannot be opened, or the sync failed. A
      filesystem that cannot sync directories at all (EINVAL) is not an
      error: there is nothing more to do on it.
  """
  fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
  try:
    os.fsync(fd)
  except OSError as e:
    if e.errno != errno.EINVAL:
      raise
  finally:
    os.close(fd)


def sync_dirs(paths: Iterable[str]) -> None:
  """`sync_dir` for each distinct directory of `paths` (local, or file://)."""
  for path in dict.fromkeys(filesystem.local_path(p) for p in paths):
    sync_dir(path)


def _tree(root: str) -> Tuple[List[str], List[str]]:
  """The files below `root` (one name per inode) and its directories,
  deepest first."""
  files, directories, seen = [], [], set()  # type: List[str], List[str], Set
  def fail(error: OSError) -> None:
    raise error
  for directory, _, names in os.walk(root, onerror=fail):
    directories.append(directory)
    for name in names:
      path = os.path.join(directory, name)
      info = os.lstat(path)
      if stat.S_ISLNK(info.st_mode):
        continue  # its entry is synced with its directory
      if (info.st_dev, info.st_ino) not in seen:
        seen.add((info.st_dev, info.st_ino))
        files.append(path)
  return files, directories[::-1]


def sync_tree(root: str, created: Iterable[str] = ()) -> None:
  """Makes the tree at `root` durable before it is published.

  Args:
    root: a local directory (or file:// URL).
    created: directories an export created on the way to `root` (the base
      and missing parents): their entries in their parents are synced too.

  Raises:
    OSError: a file or directory could not be synced.
  """
  files, directories = _tree(filesystem.local_path(root))
  if files:
    with concurrent.futures.ThreadPoolExecutor(
        min(_THREADS, len(files))) as pool:
      # list(): the first failure is raised here, after every sync ended.
      list(pool.map(sync_file, files))
  sync_dirs(directories)
  parents = [filesystem.parent(filesystem.local_path(c)) for c in created]
  sync_dirs(p for p in parents if p is not None)
