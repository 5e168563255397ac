"""A venv made once from a list of requirements, and cached by path.

The venv scripts (`make_venv_tf216.py`, `make_venv_tf_full.py`) share this:
a venv is reused when it was made from the same requirements (a copy of them
is kept inside it, `multimode_export-requirements.txt`) and remade from
scratch otherwise.
"""

import argparse
import os
import subprocess
import venv
from typing import Callable, Optional, Sequence

# The requirements the venv was made from, kept inside it.
_STAMP = 'multimode_export-requirements.txt'


def python_of(path: str) -> str:
  """The interpreter of the venv at `path`."""
  return os.path.join(path, 'bin', 'python')


def requirement_lines(path: str) -> list:
  """The requirement lines of a requirements file ([] if there is none)."""
  try:
    with open(path, encoding='utf-8') as f:
      lines = [line.split('#', 1)[0].strip() for line in f]
  except FileNotFoundError:
    return []
  return [line for line in lines if line]


def is_current(path: str, requirements: Sequence[str]) -> bool:
  """Whether `path` is a venv made from `requirements`."""
  return (os.path.exists(python_of(path)) and
          requirement_lines(os.path.join(path, _STAMP)) == list(requirements))


def pip_install(path: str, *args: str) -> None:
  """`pip install --quiet ARGS` in the venv at `path`.

  Raises:
    subprocess.CalledProcessError: pip failed (e.g. no package index).
  """
  subprocess.run([python_of(path), '-m', 'pip', 'install', '--quiet', *args],
                 check=True, stdin=subprocess.DEVNULL)


def ensure(path: str, requirements: Sequence[str]) -> str:
  """Makes the venv at `path` from `requirements` unless it is current.

  Returns:
    The venv's python.

  Raises:
    subprocess.CalledProcessError: pip failed.
  """
  if not is_current(path, requirements):
    venv.EnvBuilder(with_pip=True, clear=True).create(path)
    pip_install(path, *requirements)
    with open(os.path.join(path, _STAMP), 'w', encoding='utf-8') as f:
      f.write('\n'.join(requirements) + '\n')
  return python_of(path)


def main(doc: str, default_path: str, ensure_venv: Callable[[str], str],
         argv: Optional[Sequence[str]] = None) -> int:
  """The scripts' command line: `[--venv DIR]`; prints the venv's python."""
  parser = argparse.ArgumentParser(description=doc.split('\n')[0])
  parser.add_argument('--venv', default=None,
                      help=f'the venv to make (default: {default_path})')
  args = parser.parse_args(argv)
  print(ensure_venv(args.venv or default_path))
  return 0
