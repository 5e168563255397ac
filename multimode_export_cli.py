"""The `multimode-export` console script: quiets TensorFlow, then runs the CLI.

A module of its own, outside the `multimode_export` package, because the
package imports TensorFlow and TensorFlow's C++ logging reads
`TF_CPP_MIN_LOG_LEVEL` once, at import: only code that runs before the
import can quiet the INFO/WARNING lines it prints at startup.
"""

import os
import sys

_VERBOSITY_FLAGS = ('-v', '--v', '-verbosity', '--verbosity')


def run() -> None:
  """Sets TF_CPP_MIN_LOG_LEVEL=2 unless the user set it or --verbosity."""
  asked = any(a.split('=')[0] in _VERBOSITY_FLAGS for a in sys.argv[1:])
  if not asked:
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  from multimode_export.integration import _cli  # pylint: disable=g-import-not-at-top
  _cli.run()
