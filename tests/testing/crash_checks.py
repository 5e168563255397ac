"""Checks of a traced export: the syncs it made, and what a power cut leaves.

`sync_violations` reads the order of operations (`power_cut.Tree.ops`):
every file of a published directory synced after its last write and before
the publishing rename, every directory of it synced after its last change
and before that rename, and the directory receiving the new name synced
after it and before the call returned.

`state_violations` checks the crash states of `power_cut.crash_states`:
every version directory present holds a complete export (byte for byte one
the run or the earlier state had, and loadable), every version whose export
call had returned is there, and a per-mode group is never published without
its earlier modes.
"""

import hashlib
import os
import tempfile
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from google.protobuf import message
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from testing import power_cut

FileMap = Dict[str, Optional[bytes]]


def publishing_op(tree: power_cut.Tree, published: str) -> int:
  """Index of the last rename (or exchange) that put `published` in place."""
  found = tree.lookup(published)
  assert found is not None, published
  target = found[:2]
  indices = [i for i, op in enumerate(tree.ops)
             if op.kind in ('rename', 'exchange') and op.dirs[1] == target]
  assert indices, f'no rename to {published}'
  return indices[-1]


def _synced_between(ops, ino: int, after: int, before: int) -> bool:
  """A sync of `ino` started after line `after` and returned before line
  `before`."""
  return any(op.kind in ('sync', 'sync_all') and
             (op.kind == 'sync_all' or op.ino == ino) and
             op.start > after and op.end < before for op in ops)


def sync_violations(tree: power_cut.Tree, published: Sequence[str],
                    returned_marker: str) -> List[str]:
  """What the run failed to sync, for each published directory."""
  ops, out = tree.ops, []
  [returned] = [op for op in ops if op.kind == 'marker' and
                op.text.startswith(returned_marker)]
  for path in published:
    r = publishing_op(tree, path)
    rename = ops[r]
    root = tree.ino(path)
    inodes = {'': root}
    inodes.update(tree.paths(root=root))
    for rel, ino in sorted(inodes.items()):
      is_dir = tree.is_dir[ino]
      changes = [op.end for op in ops[:r] if
                 (op.kind == 'data' and op.ino == ino) or
                 (op.is_name and ino in [d for d, _ in op.dirs])]
      last = max(changes, default=-1)
      if not _synced_between(ops, ino, last, rename.start):
        out.append(f'{path}/{rel}: {"directory" if is_dir else "file"} not '
                   f'synced after its last change (trace line {last}) and '
                   f'before the publishing {rename.kind} (line {rename.start})')
    parent = rename.dirs[1][0]
    if not _synced_between(ops, parent, rename.end, returned.start):
      out.append(f'{os.path.dirname(path)}: not synced after the publishing '
                 f'{rename.kind} of {path} and before the call returned')
  return out


def version_dirs(files: FileMap, bases: Sequence[str]) -> List[str]:
  """The all-digit directories directly in each of `bases` (relative)."""
  out = []
  for path in files:
    if path.endswith('/'):
      head, name = os.path.split(path.rstrip('/'))
      if head in bases and name.isdigit():
        out.append(path.rstrip('/'))
  return sorted(out)


def file_map(files: FileMap, directory: str) -> FileMap:
  prefix = directory.rstrip('/') + '/'
  return {p[len(prefix):]: c for p, c in files.items()
          if p.startswith(prefix) and p != prefix}


def _digest(content: FileMap) -> str:
  h = hashlib.sha256()
  for path, data in sorted(content.items()):
    h.update(path.encode() + b'\0' + (b'?' if data is None else
                                      hashlib.sha256(data).digest()))
  return h.hexdigest()


def loads(content: FileMap) -> Optional[str]:
  """Why the export of `content` does not load (None: it does).

  Written to a temporary directory: `saved_model.pb` must parse and hold
  MetaGraphDefs, and every tensor of `variables/` must read back (crc32c
  checked by TensorFlow).
  """
  if any(data is None for data in content.values()):
    return 'files lost: ' + ', '.join(sorted(
        p for p, d in content.items() if d is None))
  with tempfile.TemporaryDirectory() as directory:
    for path, data in content.items():
      full = os.path.join(directory, path)
      if path.endswith('/'):
        os.makedirs(full, exist_ok=True)
        continue
      os.makedirs(os.path.dirname(full), exist_ok=True)
      with open(full, 'wb') as f:
        f.write(data)
    try:
      saved_model = saved_model_pb2.SavedModel()
      saved_model.ParseFromString(content['saved_model.pb'])
      if not saved_model.meta_graphs:
        return 'saved_model.pb holds no MetaGraphDef'
      reader = tf.train.load_checkpoint(
          os.path.join(directory, 'variables', 'variables'))
      for key in reader.get_variable_to_shape_map():
        reader.get_tensor(key)
    except (OSError, KeyError, tf.errors.OpError, ValueError,
            message.DecodeError) as e:
      return f'{type(e).__name__}: {str(e)[:200]}'
  return None


class StateChecker:
  """Checks crash states against the complete exports a location may hold.

  Args:
    allowed: version directory (relative to the root) -> the complete
      contents it may hold (an earlier export's, the new one's).
    bases: directories (relative) whose all-digit children are versions; a
      version not in `allowed` is a violation.
    required: locations that must be present once `returned_marker` was
      printed (the new versions); also those that must always be present
      (`always`: a fixed export_dir replaced in place).
    groups: lists of locations published in order: a later one may be
      present only with every earlier one.
    journal: (prefix, suffix) of the path of a group's journal: while a
      group is partly present, a complete journal must be there too (the
      next export rolls the group back from it).
  """

  def __init__(self, allowed: Dict[str, List[FileMap]], bases: Sequence[str],
               required: Sequence[str], returned_marker: str,
               always: Sequence[str] = (),
               groups: Sequence[Sequence[str]] = (),
               journal: Optional[Tuple[str, str]] = None):
    self.allowed = {k: {_digest(m) for m in v} for k, v in allowed.items()}
    self.bases, self.required, self.always = bases, required, always
    self.returned_marker, self.groups = returned_marker, groups
    self.journal = journal
    self._load_errors: Dict[str, Optional[str]] = {}
    self.states = 0
    self.distinct: set = set()

  def _loads(self, content: FileMap) -> Optional[str]:
    key = _digest(content)
    if key not in self._load_errors:
      self._load_errors[key] = loads(content)
    return self._load_errors[key]

  def violations(self, state: power_cut.CrashState) -> List[str]:
    self.states += 1
    files, out = state.files, []
    present = set(version_dirs(files, self.bases)) | {
        a for a in self.always if a + '/' in files}
    self.distinct.add(tuple(sorted(
        (v, _digest(file_map(files, v))) for v in present)))
    for version in sorted(present):
      content = file_map(files, version)
      if _digest(content) not in self.allowed.get(version, ()):
        why = self._loads(content)
        out.append(f'{version} is not a complete export'
                   f'{": " + why if why else " (loads, but differs)"}')
    returned = any(m.startswith(self.returned_marker) for m in state.returned)
    for version in list(self.always) + list(
        self.required if returned else []):
      if version not in present:
        out.append(f'{version} is missing' + (
            ' although its export call had returned' if returned else ''))
    for group in self.groups:
      for i, member in enumerate(group):
        if member in present and not all(g in present for g in group[:i]):
          out.append(f'{member} is published without {list(group[:i])}')
      partly = 0 < sum(g in present for g in group) < len(group)
      if partly and self.journal and not any(
          p.startswith(self.journal[0]) and p.endswith(self.journal[1]) and
          c is not None for p, c in files.items()):
        out.append(f'{group} is partly published and its journal is lost')
    return [f'cut {state.cut}, prefix {state.prefix}: {v}' for v in out]

  def loadable(self, contents: Iterable[FileMap]) -> List[str]:
    """Load errors of the allowed complete exports (must be none)."""
    return [why for why in map(self._loads, contents) if why]


def check_all(checker: StateChecker, tree: power_cut.Tree,
              final: Dict[int, bytes], limit: int = 10
              ) -> Tuple[List[str], int]:
  """(the first `limit` violations, how many) over every crash state."""
  found, count = [], 0
  for state in power_cut.crash_states(tree, final):
    for violation in checker.violations(state):
      count += 1
      if len(found) < limit:
        found.append(violation)
  return found, count
