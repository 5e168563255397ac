"""Checks that the committed BUILD files cover every module and are current.

Exit status 1, with one line per problem naming the file, when:
- a `multimode_export/*.py` module has no `py_library`, or a
  `tests/*_test.py` has no `py_test`, in its package's BUILD file;
- a test file has no `if __name__ == '__main__':` block (Bazel runs the file
  as a script: without one it would run no test and pass);
- a BUILD file differs from what `tools/gen_bazel.py` generates now (stale
  deps after an import changed, a new module, ...); a diff is printed.
Exit status 0 otherwise.

    python3 tools/check_bazel.py [--root DIR]

The fix is nearly always `python3 tools/gen_bazel.py`.
"""

import argparse
import difflib
import os
import re
import sys
from typing import Dict, List, Optional, Sequence

if not __package__:
  # Run as a script: only tools/ is on sys.path, add the repository root.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tools import gen_bazel  # pylint: disable=g-import-not-at-top,wrong-import-position

_MAIN_BLOCK = re.compile(r"^if __name__ == ['\"]__main__['\"]:", re.M)
# The rule kinds that give a file a target, per kind of file.
_LIBRARY_KINDS = ('py_library', 'py_binary')
_TEST_KINDS = ('py_test',)


def read_rules(build_path: str) -> List[Dict[str, object]]:
  """The rules declared in a BUILD file, as dicts with a `kind` key.

  BUILD files in this repository are plain Starlark calls, which Python can
  evaluate with recording stand-ins for the rules.

  Raises:
    ValueError: the file cannot be evaluated that way.
  """
  rules = []

  def recorder(kind):
    def record(**attrs):
      rules.append(dict(attrs, kind=kind))
    return record

  names = {k: recorder(k) for k in (
      'py_library', 'py_binary', 'py_test', 'filegroup', 'test_suite',
      'sh_binary', 'sh_test')}
  names.update(package=lambda **_: None, exports_files=lambda *a, **k: None,
               load=lambda *a, **k: None, glob=lambda *a, **k: [])
  with open(build_path, encoding='utf-8') as f:
    source = f.read()
  try:
    exec(compile(source, build_path, 'exec'), {'__builtins__': {}}, names)  # pylint: disable=exec-used
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f'{build_path}: cannot read its rules: {e}') from e
  return rules


def check(root: str) -> List[str]:
  """Every problem found under `root`, one line each (empty when all is well)."""
  problems = []
  for package in gen_bazel.packages(root):
    files = gen_bazel.module_files(root, package)
    if not files:
      continue
    build = os.path.join(root, package, 'BUILD')
    rel_build = f'{package}/BUILD'
    if not os.path.exists(build):
      problems.append(f'{rel_build}: missing (it must hold a target for '
                      f'each of {", ".join(files)})')
      continue
    try:
      rules = read_rules(build)
    except ValueError as e:
      problems.append(str(e))
      continue
    for filename in files:
      test = gen_bazel.is_test_file(package, filename)
      kinds = _TEST_KINDS if test else _LIBRARY_KINDS
      if not any(r['kind'] in kinds and filename in (r.get('srcs') or ())
                 for r in rules):
        problems.append(f'{package}/{filename}: no {kinds[0]} in {rel_build}')
      if test:
        with open(os.path.join(root, package, filename), encoding='utf-8') as f:
          if not _MAIN_BLOCK.search(f.read()):
            problems.append(
                f"{package}/{filename}: no `if __name__ == '__main__':` block;"
                ' under Bazel it would run no test')
  try:
    expected = gen_bazel.generate(root)
  except gen_bazel.GenerateError as e:
    return problems + [str(e)]
  for relpath, text in expected.items():
    path = os.path.join(root, relpath)
    if not os.path.exists(path):
      continue  # Reported above.
    with open(path, encoding='utf-8') as f:
      actual = f.read()
    if actual != text:
      diff = ''.join(difflib.unified_diff(
          actual.splitlines(True), text.splitlines(True),
          f'{relpath} (committed)', f'{relpath} (generated)'))
      problems.append(f'{relpath}: stale, run `python3 tools/gen_bazel.py`\n'
                      f'{diff}')
  return problems


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--root', default=gen_bazel.default_root(),
                      help='repository root (default: %(default)s)')
  args = parser.parse_args(argv)
  problems = check(args.root)
  for problem in problems:
    print(problem, file=sys.stderr)
  if problems:
    print(f'check_bazel: {len(problems)} problem(s)', file=sys.stderr)
    return 1
  print('check_bazel: BUILD files cover every module and are up to date')
  return 0


if __name__ == '__main__':
  sys.exit(main())
