"""The Bazel BUILD files cover every module and match tools/gen_bazel.py.

Runs tools/check_bazel.py on this repository (so the suite fails when a
module or test is added without its target, or an import changes), and on
copies of it with one defect each, to prove the check can fail.
"""

# bazel-data: //multimode_export:sources //tests:sources //tools:sources

import os
import shutil
import subprocess
import sys

from absl import flags
from absl.testing import absltest

from tools import check_bazel
from tools import gen_bazel

# Under pytest absl's flags are never parsed; create_tempdir() needs them.
if not flags.FLAGS.is_parsed():
  flags.FLAGS.mark_as_parsed()

ROOT = gen_bazel.default_root()


class BazelBuildTest(absltest.TestCase):

  def copy_repo(self) -> str:
    """A copy of the BUILD packages' sources, in which a defect can be made."""
    root = self.create_tempdir().full_path
    for package in gen_bazel.packages(ROOT):
      os.makedirs(os.path.join(root, package))
      for name in gen_bazel.module_files(ROOT, package) + ['BUILD', 'py.typed']:
        source = os.path.join(ROOT, package, name)
        if os.path.exists(source):
          shutil.copy(source, os.path.join(root, package, name))
    return root

  def run_checker(self, root: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, 'tools', 'check_bazel.py'),
         '--root', root],
        capture_output=True, text=True, check=False)

  def test_repository_build_files_are_complete_and_current(self):
    problems = check_bazel.check(ROOT)
    self.assertEqual(problems, [], '\n'.join(problems))

  def test_every_module_and_test_has_its_target(self):
    rules = {p: check_bazel.read_rules(os.path.join(ROOT, p, 'BUILD'))
             for p in ('multimode_export', 'tests')}
    libraries = {s for r in rules['multimode_export']
                 if r['kind'] == 'py_library' for s in r['srcs']}
    tests = {s for r in rules['tests'] if r['kind'] == 'py_test'
             for s in r['srcs']}
    modules = set(gen_bazel.module_files(ROOT, 'multimode_export'))
    test_files = {f for f in gen_bazel.module_files(ROOT, 'tests')
                  if f.endswith('_test.py')}
    self.assertEqual(libraries, modules)
    self.assertEqual(tests, test_files)
    self.assertIn('bazel_build_test.py', tests)

  def test_checker_passes_on_a_clean_copy(self):
    result = self.run_checker(self.copy_repo())
    self.assertEqual(result.returncode, 0, result.stderr)

  def test_module_without_py_library_fails_naming_it(self):
    root = self.copy_repo()
    with open(os.path.join(root, 'multimode_export', 'new_module.py'),
              'w') as f:
      f.write('"""A module nobody added to BUILD."""\n'
              'from multimode_export import errors\n')
    result = self.run_checker(root)
    self.assertEqual(result.returncode, 1)
    self.assertIn(
        'multimode_export/new_module.py: no py_library in '
        'multimode_export/BUILD', result.stderr)
    self.assertIn('multimode_export/BUILD: stale', result.stderr)

  def test_test_without_py_test_fails_naming_it(self):
    root = self.copy_repo()
    with open(os.path.join(root, 'tests', 'new_test.py'), 'w') as f:
      f.write('from absl.testing import absltest\n'
              'if __name__ == "__main__":\n  absltest.main()\n')
    result = self.run_checker(root)
    self.assertEqual(result.returncode, 1)
    self.assertIn('tests/new_test.py: no py_test in tests/BUILD',
                  result.stderr)

  def test_test_without_main_block_fails(self):
    root = self.copy_repo()
    with open(os.path.join(root, 'tests', 'pytest_only_test.py'), 'w') as f:
      f.write('def test_nothing():\n  pass\n')
    gen_bazel.main(['--root', root])
    result = self.run_checker(root)
    self.assertEqual(result.returncode, 1)
    self.assertIn("tests/pytest_only_test.py: no `if __name__ == '__main__':`",
                  result.stderr)

  def test_changed_import_makes_deps_stale(self):
    root = self.copy_repo()
    with open(os.path.join(root, 'multimode_export', 'filesystem.py'),
              'a') as f:
      f.write('\nfrom multimode_export import errors  # new dependency\n')
    result = self.run_checker(root)
    self.assertEqual(result.returncode, 1)
    self.assertIn('multimode_export/BUILD: stale', result.stderr)
    self.assertIn('+    deps = [":errors"],', result.stderr)
    # Regenerating fixes it.
    self.assertEqual(gen_bazel.main(['--root', root]), 0)
    self.assertEqual(self.run_checker(root).returncode, 0)

  def test_import_cycle_is_reported(self):
    root = self.copy_repo()
    for name, other in (('cycle_a', 'cycle_b'), ('cycle_b', 'cycle_a')):
      with open(os.path.join(root, 'multimode_export', name + '.py'),
                'w') as f:
        f.write(f'def late():\n  from multimode_export import {other}\n')
    result = self.run_checker(root)
    self.assertEqual(result.returncode, 1)
    self.assertIn('import cycle', result.stderr)
    self.assertIn('multimode_export/cycle_a -> multimode_export/cycle_b -> '
                  'multimode_export/cycle_a', result.stderr)

  def test_deps_are_exactly_the_repository_imports(self):
    root = self.create_tempdir().full_path
    files = {
        'multimode_export/__init__.py':
            'from multimode_export.core import Thing\n__all__ = ("Thing",)\n',
        'multimode_export/core.py':
            'import os\nimport numpy as np\nfrom . import util\n',
        'multimode_export/util.py': '',
        'multimode_export/lazy.py':
            'def f():\n  import multimode_export.util\n'
            '  from multimode_export import Thing\n',
        'tests/helpers.py': 'from multimode_export.core import Thing\n',
        'tests/core_test.py':
            '# bazel-data: //docs:x.md :helpers.py\n'
            'import helpers\nfrom tests import helpers as h2\n'
            'from multimode_export import core, missing\n',
        'tools/tool.py': 'import tests.helpers\n',
    }
    for relpath, text in files.items():
      os.makedirs(os.path.join(root, os.path.dirname(relpath)), exist_ok=True)
      with open(os.path.join(root, relpath), 'w') as f:
        f.write(text)
    warnings = []
    targets = {(p, t.name): t for p, ts in
               gen_bazel.build_targets(root, warnings).items() for t in ts}
    self.assertEqual(targets['multimode_export', 'multimode_export'].deps,
                     (':core',))
    self.assertEqual(targets['multimode_export', 'core'].deps, (':util',))
    self.assertEqual(targets['multimode_export', 'lazy'].deps,
                     (':multimode_export', ':util'))
    self.assertEqual(targets['multimode_export', 'util'].deps, ())
    test = targets['tests', 'core_test']
    self.assertEqual(test.kind, 'py_test')
    self.assertEqual(test.deps, (':helpers', '//multimode_export:core'))
    self.assertEqual(test.data, (':helpers.py', '//docs:x.md'))
    self.assertEqual(targets['tests', 'helpers'].kind, 'py_library')
    self.assertEqual(targets['tools', 'tool'].deps, ('//tests:helpers',))
    self.assertEqual(warnings, [
        "tests/core_test.py: import of 'multimode_export.missing' matches "
        'no file'])

if __name__ == '__main__':
  absltest.main()
