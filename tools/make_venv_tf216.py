"""Creates the venv with TensorFlow 2.16 (no tf.estimator), once.

    python3 tools/make_venv_tf216.py [--venv DIR]

The oldest TensorFlow without `tf.estimator`, where the converted TF2
SavedModels of `multimode_export.convert_to_tf2` must load and train
(tests/tf2_convert_test.py; the newest TF is checked in the venv of
`tools/check_tfsmlayer.py`). The venv is cached by path: `--venv`, else
`$MULTIMODE_EXPORT_TF216_VENV`, else /tmp/venv-tf216. It is reused when it was
made from the same requirements (a copy is kept inside it) and remade from
scratch otherwise. Nothing of this repository is installed into it: what
runs there imports nothing from multimode_export. Prints the venv's python;
exits non-zero when pip fails.
"""

import os
import sys

import cached_venv

DEFAULT_VENV = '/tmp/venv-tf216'
# Keras 3 comes with tensorflow 2.16 (its TFSMLayer is tested there too).
REQUIREMENTS = ('tensorflow-cpu==2.16.2',)


def venv_path() -> str:
  """The venv's path: $MULTIMODE_EXPORT_TF216_VENV or /tmp/venv-tf216."""
  return os.environ.get('MULTIMODE_EXPORT_TF216_VENV') or DEFAULT_VENV


def ensure_venv(path: str) -> str:
  """Makes (or reuses) the venv at `path`; returns its python.

  Raises:
    subprocess.CalledProcessError: pip failed (e.g. no package index).
  """
  return cached_venv.ensure(path, REQUIREMENTS)


def main(argv=None) -> int:
  return cached_venv.main(__doc__, venv_path(), ensure_venv, argv)


if __name__ == '__main__':
  sys.exit(main())
