"""Running a command under `strace -f -y` and reading the trace back.

Only the system calls that change files, names or their durability are
traced (`TRACED`); `-y` prints the path of every file descriptor, so a call
names its file without a table of open fds. Calls of several threads
interleave (`<unfinished ...>` / `<... resumed>`): each `Call` has the line
where it started and the line where it returned.
"""

import ast
import dataclasses
import os
import re
import shutil
import subprocess
from typing import Dict, List, Optional, Sequence

TRACED = (
    'open', 'openat', 'creat', 'write', 'pwrite64', 'writev', 'pwritev',
    'pwritev2', 'copy_file_range', 'sendfile', 'splice', 'ftruncate',
    'truncate', 'fallocate', 'fsync', 'fdatasync', 'sync', 'syncfs',
    'rename', 'renameat', 'renameat2', 'link', 'linkat', 'unlink',
    'unlinkat', 'mkdir', 'mkdirat', 'rmdir', 'ioctl')

_LINE = re.compile(r'^(\d+)\s+(.*)$')
_RESUMED = re.compile(r'^<\.\.\. (\w+) resumed>(.*)$')
_RETURN = re.compile(r'\)\s+= ')
_FD = re.compile(r'^(?:-?\d+|AT_FDCWD)<(.*)>$')


@dataclasses.dataclass
class Call:
  """One completed system call.

  Attributes:
    pid: the thread that made it.
    name: the system call.
    args: its arguments as strace printed them.
    result: what it returned, e.g. `0`, `4</path>`, `-1 ENOENT (...)`.
    start: the trace line where it started.
    end: the trace line where it returned.
  """
  pid: int
  name: str
  args: List[str]
  result: str
  start: int
  end: int

  @property
  def ok(self) -> bool:
    return not self.result.startswith(('-1', '?'))

  def fd_path(self, i: int) -> Optional[str]:
    """The path of the fd argument `i` (None if not a file)."""
    return fd_path(self.args[i]) if i < len(self.args) else None

  def string(self, i: int) -> str:
    return decode_string(self.args[i])

  def path(self, dirfd: Optional[int], i: int) -> str:
    """The path argument `i`, made absolute with the dirfd argument."""
    path = self.string(i)
    if path.startswith('/') or dirfd is None:
      return path
    return os.path.join(fd_path(self.args[dirfd]) or '/', path)


def fd_path(arg: str) -> Optional[str]:
  match = _FD.match(arg.strip())
  if not match:
    return None
  path = match.group(1)
  if path.endswith(' (deleted)'):
    return None
  return path if path.startswith('/') else None


def decode_string(arg: str) -> str:
  """A C string as strace prints it (`"a\\n"...` when cut short)."""
  arg = arg.strip()
  if arg.endswith('...'):
    arg = arg[:-3]
  return ast.literal_eval('b' + arg).decode('utf-8', 'replace')


def split_args(text: str) -> List[str]:
  """Top-level comma-separated arguments (strings, [..], {..}, <..> kept)."""
  pairs = {']': '[', '}': '{', ')': '(', '>': '<'}
  args, stack, current, i, in_string = [], [], [], 0, False
  while i < len(text):
    c = text[i]
    current.append(c)
    if in_string:
      if c == '\\':
        current.append(text[i + 1])
        i += 1
      elif c == '"':
        in_string = False
    elif c == '"':
      in_string = True
    elif c in '[{(<':
      stack.append(c)
    elif c in pairs and stack and stack[-1] == pairs[c]:
      stack.pop()  # a '>' of '=>' closes nothing
    elif c == ',' and not stack:
      args.append(''.join(current[:-1]).strip())
      current = []
    i += 1
  if current:
    args.append(''.join(current).strip())
  return args


def _call(pid: int, text: str, start: int, end: int) -> Optional[Call]:
  name, sep, rest = text.partition('(')
  ends = list(_RETURN.finditer(rest))
  if not sep or not ends:
    return None
  return Call(pid, name.strip(), split_args(rest[:ends[-1].start()]),
              rest[ends[-1].end():].strip(), start, end)


def parse(text: str) -> List[Call]:
  """The completed calls of an `strace -f -o FILE` trace, in return order."""
  calls, pending = [], {}  # pid -> (start line, text so far)
  for number, line in enumerate(text.splitlines()):
    match = _LINE.match(line)
    if not match:
      continue
    pid, rest = int(match.group(1)), match.group(2)
    if rest.startswith(('+++', '---')):
      continue
    resumed = _RESUMED.match(rest)
    if resumed:
      if pid not in pending:
        continue
      start, head = pending.pop(pid)
      rest = head + resumed.group(2)
    else:
      start = number
    if rest.endswith('<unfinished ...>'):
      pending[pid] = (start, rest[:-len('<unfinished ...>')].rstrip())
      continue
    call = _call(pid, rest, start, number)
    if call is not None:
      calls.append(call)
  return calls


def available() -> bool:
  return shutil.which('strace') is not None


def run(command: Sequence[str], trace_file: str, env: Dict[str, str],
        timeout: float = 300.0) -> subprocess.CompletedProcess:
  """Runs `command` under `strace -f -y`, the trace written to `trace_file`."""
  return subprocess.run(
      ['strace', '-f', '-y', '-s', '256', '--seccomp-bpf', '-o', trace_file,
       '-e', 'trace=' + ','.join(TRACED)] + list(command),
      env=env, capture_output=True, text=True, timeout=timeout, check=False)
