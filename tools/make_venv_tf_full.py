"""Creates the venv with the full `tensorflow` package and TFMA, once.

    python3 tools/make_venv_tf_full.py [--venv DIR]

The requirements are `tools/requirements-tf-full.txt` (one file, so adding a
consumer is a one-line change). The venv is cached by path: `--venv`, else
`$MULTIMODE_EXPORT_TF_FULL_VENV`, else /tmp/venv-tf-full. It is reused when it
was made from the same requirements (a copy of them is kept inside it) and
remade from scratch otherwise. This repository is then installed into it
editable and without dependencies (they are all in the requirements file).
Prints the venv's python; exits non-zero when pip fails.
"""

import argparse
import os
import subprocess
import sys
import venv

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUIREMENTS = os.path.join(REPO_ROOT, 'tools', 'requirements-tf-full.txt')
DEFAULT_VENV = '/tmp/venv-tf-full'
# The requirements the venv was made from, kept inside it.
_STAMP = 'multimode_export-requirements.txt'


def venv_path() -> str:
  """The venv's path: $MULTIMODE_EXPORT_TF_FULL_VENV or /tmp/venv-tf-full."""
  return os.environ.get('MULTIMODE_EXPORT_TF_FULL_VENV') or DEFAULT_VENV


def python_of(path: str) -> str:
  """The interpreter of the venv at `path`."""
  return os.path.join(path, 'bin', 'python')


def _requirements(path: str) -> list:
  """The requirement lines of a requirements file ([] if there is none)."""
  try:
    with open(path, encoding='utf-8') as f:
      lines = [line.split('#', 1)[0].strip() for line in f]
  except FileNotFoundError:
    return []
  return [line for line in lines if line]


def is_current(path: str) -> bool:
  """Whether `path` is a venv made from the current requirements."""
  return (os.path.exists(python_of(path)) and
          _requirements(os.path.join(path, _STAMP)) ==
          _requirements(REQUIREMENTS))


def _pip(path: str, *args: str) -> None:
  subprocess.run([python_of(path), '-m', 'pip', 'install', '--quiet', *args],
                 check=True, stdin=subprocess.DEVNULL)


def ensure_venv(path: str) -> str:
  """Makes (or reuses) the venv at `path`; returns its python.

  Raises:
    subprocess.CalledProcessError: pip failed (e.g. no package index).
  """
  if not is_current(path):
    venv.EnvBuilder(with_pip=True, clear=True).create(path)
    _pip(path, '-r', REQUIREMENTS)
    with open(os.path.join(path, _STAMP), 'w', encoding='utf-8') as f:
      f.write('\n'.join(_requirements(REQUIREMENTS)) + '\n')
  # The venv's own setuptools builds it: nothing more to download.
  _pip(path, '--no-deps', '--no-build-isolation', '--editable', REPO_ROOT)
  return python_of(path)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--venv', default=None,
                      help=f'the venv to make (default: {venv_path()})')
  args = parser.parse_args(argv)
  print(ensure_venv(args.venv or venv_path()))
  return 0


if __name__ == '__main__':
  sys.exit(main())
