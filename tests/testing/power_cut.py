"""What a power cut may leave of a traced run: a persistence model.

The approach of ALICE (Pillai et al., OSDI 2014) and of LazyFS: the system
calls of a real run (`syscall_trace`) are turned into logical operations on
a tree of inodes below one root directory, and for every point of the run
where the power could go, the states the disk may hold after the reboot are
rebuilt and checked.

The model (pessimistic, as POSIX allows):
* file data written but not `fsync`ed (that inode, after the write) is lost:
  the file comes back empty, as ext4 and XFS with delayed allocation leave
  it;
* a name operation (create, mkdir, link, unlink, rename, exchange) is
  durable once the directory it adds a name to (for a rename: the
  destination directory) is `fsync`ed after it; one not yet durable may or
  may not have happened: the states tried keep every durable operation plus
  each prefix of the others (journaling filesystems persist name operations
  in order), from none of them to all.
`sync`/`syncfs` make everything durable. A state is a mapping from paths
below the root to file contents (None: lost or unknown).
"""

import copy
import dataclasses
import os
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from testing import syscall_trace

# The contents of a file whose every write was synced but that no longer
# exists at the end of the run (its bytes are not in the trace).
COMPLETE_UNKNOWN = b'\0<complete; deleted before the end of the run>\0'

_O_CREAT, _O_TRUNC = 'O_CREAT', 'O_TRUNC'
_AT_REMOVEDIR, _RENAME_EXCHANGE = 'AT_REMOVEDIR', 'RENAME_EXCHANGE'


@dataclasses.dataclass(frozen=True)
class Op:
  """One logical operation.

  Attributes:
    kind: 'link' (a new name: create, mkdir, link), 'unlink', 'rename',
      'exchange', 'data' (a change of a file's bytes), 'sync' (fsync of
      `ino`), 'sync_all', or 'marker' (a line the traced program printed).
    start, end: trace lines where its call started and returned.
    ino: the inode it acts on (the one named, moved, written or synced).
    dirs: (directory inode, name) pairs: the name added (link), removed
      (unlink), or (source, destination) of a rename / exchange.
    other: the inode at the destination of an exchange.
    text: a marker's text.
  """
  kind: str
  start: int
  end: int
  ino: int = -1
  dirs: Tuple[Tuple[int, str], ...] = ()
  other: int = -1
  text: str = ''

  @property
  def is_name(self) -> bool:
    return self.kind in ('link', 'unlink', 'rename', 'exchange')

  @property
  def durable_by(self) -> Tuple[int, ...]:
    """The directories whose sync makes this name operation durable."""
    if self.kind == 'rename':
      return (self.dirs[1][0],)
    return tuple(d for d, _ in self.dirs)


class Tree:
  """Inodes and directory entries below a root, built from a real directory
  and then from a trace of what a program did in it."""

  def __init__(self, root: str):
    self.root = os.path.abspath(root)
    self.is_dir: Dict[int, bool] = {}
    self.entries: Dict[int, Dict[str, int]] = {}
    self.initial: Dict[int, bytes] = {}  # contents before the trace
    self.ops: List[Op] = []
    self._real: Dict[Tuple[int, int], int] = {}
    self.root_ino = self._scan(self.root)
    self.initial_entries = copy.deepcopy(self.entries)

  def _new(self, is_dir: bool) -> int:
    ino = len(self.is_dir)
    self.is_dir[ino] = is_dir
    if is_dir:
      self.entries[ino] = {}
    return ino

  def _scan(self, path: str) -> int:
    info = os.lstat(path)
    key = (info.st_dev, info.st_ino)
    if key in self._real:
      return self._real[key]
    is_dir = os.path.isdir(path) and not os.path.islink(path)
    ino = self._real[key] = self._new(is_dir)
    if is_dir:
      for name in sorted(os.listdir(path)):
        self.entries[ino][name] = self._scan(os.path.join(path, name))
    else:
      with open(path, 'rb') as f:
        self.initial[ino] = f.read()
    return ino

  def lookup(self, path: Optional[str]) -> Optional[Tuple[int, str, int]]:
    """(parent inode, name, inode or -1) of a path below the root, or None;
    the root itself is (-1, '', its inode)."""
    if not path or not (path + '/').startswith(self.root + '/'):
      return None
    parts = [p for p in path[len(self.root):].split('/') if p]
    if not parts:
      return -1, '', self.root_ino  # the root itself
    directory = self.root_ino
    for part in parts[:-1]:
      directory = self.entries.get(directory, {}).get(part, -1)
      if directory < 0 or not self.is_dir[directory]:
        return None
    return directory, parts[-1], self.entries[directory].get(parts[-1], -1)

  def ino(self, path: Optional[str]) -> int:
    found = self.lookup(path)
    return found[2] if found else -1

  def _add(self, op: Op) -> None:
    if any(directory < 0 for directory, _ in op.dirs):
      return  # the root's own name: outside the tree
    self.ops.append(op)
    apply(self.entries, op)

  def read_trace(self, calls: Sequence[syscall_trace.Call],
                 marker_prefix: str = 'MMX-') -> None:
    """Appends the operations of `calls` below the root."""
    for call in calls:
      if call.ok:
        self._read_call(call, marker_prefix)

  def _read_call(self, c: syscall_trace.Call, marker_prefix: str) -> None:
    span = dict(start=c.start, end=c.end)
    name = c.name
    if name in ('open', 'openat', 'creat'):
      flags = c.args[2 if name == 'openat' else 1] if name != 'creat' else (
          _O_CREAT + '|' + _O_TRUNC)
      found = self.lookup(syscall_trace.fd_path(c.result))
      if found is None:
        return
      parent, entry, ino = found
      if ino < 0 and _O_CREAT in flags:
        self._add(Op('link', ino=self._new(False), dirs=((parent, entry),),
                     **span))
      elif ino >= 0 and _O_TRUNC in flags:
        self._add(Op('data', ino=ino, **span))
    elif name in ('mkdir', 'mkdirat'):
      found = self.lookup(c.path(0, 1) if name == 'mkdirat' else c.path(None, 0))
      if found is not None:
        self._add(Op('link', ino=self._new(True), dirs=(found[:2],), **span))
    elif name in ('write', 'pwrite64', 'writev', 'pwritev', 'pwritev2',
                  'ftruncate', 'fallocate', 'ioctl', 'copy_file_range',
                  'sendfile', 'splice'):
      self._read_data(c, span, marker_prefix)
    elif name == 'truncate':
      ino = self.ino(c.path(None, 0))
      if ino >= 0:
        self._add(Op('data', ino=ino, **span))
    elif name in ('fsync', 'fdatasync'):
      ino = self.ino(c.fd_path(0))
      if ino >= 0:
        self._add(Op('sync', ino=ino, **span))
    elif name in ('sync', 'syncfs'):
      self._add(Op('sync_all', **span))
    elif name in ('rename', 'renameat', 'renameat2'):
      self._read_rename(c, span)
    elif name in ('link', 'linkat'):
      src, dst = ((c.path(0, 1), c.path(2, 3)) if name == 'linkat' else
                  (c.path(None, 0), c.path(None, 1)))
      ino, found = self.ino(src), self.lookup(dst)
      if ino >= 0 and found is not None:
        self._add(Op('link', ino=ino, dirs=(found[:2],), **span))
    elif name in ('unlink', 'unlinkat', 'rmdir'):
      found = self.lookup(c.path(0, 1) if name == 'unlinkat' else
                          c.path(None, 0))
      if found is not None and found[2] >= 0:
        self._add(Op('unlink', ino=found[2], dirs=(found[:2],), **span))

  def _read_data(self, c, span, marker_prefix: str) -> None:
    if c.name == 'ioctl' and 'FICLONE' not in c.args[1]:
      return
    target = 2 if c.name in ('copy_file_range', 'splice') else 0
    if c.name.startswith('write') and len(c.args) > 1 and c.args[1].startswith(
        '"' + marker_prefix):
      self._add(Op('marker', text=c.string(1).strip(), **span))
      return
    ino = self.ino(c.fd_path(target))
    if ino >= 0 and (c.name in ('ftruncate', 'fallocate', 'ioctl') or
                     c.result != '0'):
      self._add(Op('data', ino=ino, **span))

  def _read_rename(self, c, span) -> None:
    if c.name == 'rename':
      src, dst, flags = c.path(None, 0), c.path(None, 1), ''
    else:
      src, dst = c.path(0, 1), c.path(2, 3)
      flags = c.args[4] if len(c.args) > 4 else ''
    a, b = self.lookup(src), self.lookup(dst)
    if a is None or b is None or a[2] < 0:
      return
    if _RENAME_EXCHANGE in flags:
      self._add(Op('exchange', ino=a[2], other=b[2], dirs=(a[:2], b[:2]),
                   **span))
    else:
      self._add(Op('rename', ino=a[2], dirs=(a[:2], b[:2]), **span))

  def paths(self, entries=None, root: Optional[int] = None,
            prefix: str = '') -> Dict[str, int]:
    """Path (relative to the root; directories end in '/') -> inode."""
    entries = self.entries if entries is None else entries
    out, pending, seen = {}, [(self.root_ino if root is None else root,
                               prefix)], set()
    while pending:
      directory, path = pending.pop()
      if directory in seen:
        continue
      seen.add(directory)
      for name, ino in entries.get(directory, {}).items():
        if self.is_dir[ino]:
          out[path + name + '/'] = ino
          pending.append((ino, path + name + '/'))
        else:
          out[path + name] = ino
    return out


def apply(entries: Dict[int, Dict[str, int]], op: Op) -> None:
  """Applies a name operation to directory entries (others: nothing)."""
  if op.kind == 'link':
    (directory, name), = op.dirs
    entries.setdefault(directory, {})[name] = op.ino
  elif op.kind == 'unlink':
    (directory, name), = op.dirs
    if entries.get(directory, {}).get(name) == op.ino:
      del entries[directory][name]
  elif op.kind == 'rename':
    (sdir, sname), (ddir, dname) = op.dirs
    if entries.get(sdir, {}).get(sname) == op.ino:
      del entries[sdir][sname]
    entries.setdefault(ddir, {})[dname] = op.ino
  elif op.kind == 'exchange':
    (adir, aname), (bdir, bname) = op.dirs
    entries.setdefault(adir, {})[aname] = op.other
    entries.setdefault(bdir, {})[bname] = op.ino


@dataclasses.dataclass(frozen=True)
class CrashState:
  """What the disk may hold after a cut.

  Attributes:
    cut: operations that had happened (`tree.ops[:cut]`).
    prefix: the name operations kept besides the durable ones are those
      among `tree.ops[:prefix]`.
    files: path below the root -> contents (None: lost;
      `COMPLETE_UNKNOWN`: complete, but deleted by the end of the run);
      directories end in '/' and map to b''.
    returned: the markers printed before the cut.
  """
  cut: int
  prefix: int
  files: Dict[str, Optional[bytes]]
  returned: Tuple[str, ...]


def _forced(ops: Sequence[Op], cut: int) -> Tuple[set, set]:
  """(indices of durable name ops, indices of durable data ops) at `cut`."""
  names, data = set(), set()
  syncs = [(op.start, op.ino, op.kind) for op in ops[:cut]
           if op.kind in ('sync', 'sync_all')]
  for i, op in enumerate(ops[:cut]):
    if not (op.is_name or op.kind == 'data'):
      continue
    for start, ino, kind in syncs:
      if start <= op.end:
        continue  # a sync covers what had returned when it started
      if kind == 'sync_all' or (op.kind == 'data' and ino == op.ino) or (
          op.is_name and ino in op.durable_by):
        (names if op.is_name else data).add(i)
        break
  return names, data


def crash_states(tree: Tree, final: Dict[int, bytes]) -> Iterator[CrashState]:
  """Every state the model allows, for every cut of the traced run.

  Args:
    tree: a Tree after `read_trace`.
    final: inode -> contents at the end of the run (for new files).
  """
  ops = tree.ops
  writes: Dict[int, List[int]] = {}
  for i, op in enumerate(ops):
    if op.kind == 'data':
      writes.setdefault(op.ino, []).append(i)
  for cut in range(len(ops) + 1):
    names, data = _forced(ops, cut)
    returned = tuple(op.text for op in ops[:cut] if op.kind == 'marker')
    contents = {}
    for ino in tree.is_dir:
      if tree.is_dir[ino]:
        continue
      done = writes.get(ino, [])
      if not done:
        contents[ino] = tree.initial.get(ino, b"")  # never written: empty
      elif all(i in data for i in done):  # every write of the run durable
        contents[ino] = final.get(ino, COMPLETE_UNKNOWN)
      else:
        contents[ino] = None
    prefixes = [0] + [i + 1 for i in range(cut) if ops[i].is_name]
    for prefix in prefixes:
      entries = copy.deepcopy(tree.initial_entries)
      for i, op in enumerate(ops[:cut]):
        if op.is_name and (i < prefix or i in names):
          apply(entries, op)
      files = {path: (b'' if path.endswith('/') else contents[ino])
               for path, ino in tree.paths(entries).items()}
      yield CrashState(cut, prefix, files, returned)


def final_contents(tree: Tree) -> Dict[int, bytes]:
  """inode -> contents now, for every file reachable at the end of the run."""
  out = {}
  for path, ino in tree.paths().items():
    if not path.endswith('/'):
      with open(os.path.join(tree.root, path), 'rb') as f:
        out[ino] = f.read()
  return out
