"""pytest setup: `tests/` on sys.path (for `from testing import ...` from any test folder), and parsed absl
flags (absltest's tempdir helpers need them)."""

import os
import sys

from absl import flags

_TESTS = os.path.dirname(os.path.abspath(__file__))
if _TESTS not in sys.path:
  sys.path.insert(0, _TESTS)

if not flags.FLAGS.is_parsed():
  flags.FLAGS.mark_as_parsed()
