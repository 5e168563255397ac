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

import os
import sys

import cached_venv

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUIREMENTS = os.path.join(REPO_ROOT, 'tools', 'requirements-tf-full.txt')
DEFAULT_VENV = '/tmp/venv-tf-full'


def venv_path() -> str:
  """The venv's path: $MULTIMODE_EXPORT_TF_FULL_VENV or /tmp/venv-tf-full."""
  return os.environ.get('MULTIMODE_EXPORT_TF_FULL_VENV') or DEFAULT_VENV


def ensure_venv(path: str) -> str:
  """Makes (or reuses) the venv at `path`; returns its python.

  Raises:
    subprocess.CalledProcessError: pip failed (e.g. no package index).
  """
  python = cached_venv.ensure(
      path, cached_venv.requirement_lines(REQUIREMENTS))
  # The venv's own setuptools builds it: nothing more to download.
  cached_venv.pip_install(path, '--no-deps', '--no-build-isolation',
                          '--editable', REPO_ROOT)
  return python


def main(argv=None) -> int:
  return cached_venv.main(__doc__, venv_path(), ensure_venv, argv)


if __name__ == '__main__':
  sys.exit(main())
