"""Exports that survive a power cut: traced syncs and simulated crashes.

A real export runs in a subprocess under `strace -f -y`
(`traced_export_worker.py`), into a root directory that already holds the
checkpoint and an earlier export (synced). From the trace:

* the trace test (`_check_syncs`): every file of the published version was
  synced after its last write and before the publishing rename, every
  directory of it before the rename, and the directory receiving the new
  name after it, before the call returned (`crash_checks.sync_violations`);
* the power-cut simulation (`_check_power_cut`): for every point of the run
  where the power could go, every state the persistence model of
  `testing/power_cut.py` allows (unsynced data lost, name operations not
  made durable by a directory sync kept or undone, in order) is rebuilt and
  checked: only complete, loadable versions (or none) in the base, the
  earlier export untouched, the new version present once the call returned,
  a per-mode group's modes in publishing order, and while a group is partly
  published its journal there (for the next export's roll back).

For the shared layout, the per-mode group and a fixed `export_dir`
(replaced with `overwrite=True`). Each check also runs against the same
export with `durable=False` (no sync at all, the code before issue 24) and
must find violations there: the checks can fail.
"""
# bazel-data: :traced_export_worker

import json
import os
import shutil
import sys
import tempfile
from typing import Dict, List, Tuple

from absl.testing import absltest
from absl.testing import parameterized

import multimode_export
from multimode_export.publishing import _group as group
from multimode_export.publishing import _staging as publish
from testing import crash_checks
from testing import models
from testing import power_cut
from testing import receiver_fns
from testing import running
from testing import syscall_trace

_HERE = os.path.dirname(os.path.abspath(__file__))
_TESTS = os.path.dirname(_HERE)
_WORKER = os.path.join(_HERE, 'traced_export_worker.py')
_RETURNED = 'MMX-RETURNED'
_MODE_DIRS = ('train', 'eval', 'serve')
_LAYOUTS = ('shared', 'per_mode', 'fixed')


def _now(tree: power_cut.Tree) -> crash_checks.FileMap:
  """Path -> contents of the tree at the end of the run."""
  final = power_cut.final_contents(tree)
  return {p: (b'' if p.endswith('/') else final[i])
          for p, i in tree.paths().items()}


class CrashTest(models.ClassRootMixin, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    if not syscall_trace.available():
      if os.environ.get('CI') == 'true':
        raise AssertionError('strace is missing; .ci/run installs it')
      raise absltest.SkipTest('strace is not installed')
    cls.model_dir = os.path.join(cls.root, 'model')
    models.train_custom(cls.model_dir, steps=3)
    with open(os.path.join(cls.model_dir, 'vocab.txt'), 'w') as f:
      f.write('a\nb\n')
    cls.runs: Dict[Tuple[str, bool], tuple] = {}

  def _earlier_export(self, layout: str, model_dir: str, target: str) -> None:
    estimator = models.MixinEstimator(
        models.linear_model_fn, model_dir=model_dir, params={})
    if layout == 'per_mode':
      estimator.export_saved_models_per_mode(target,
                                             receiver_fns.receiver_map())
    elif layout == 'fixed':
      estimator.export_all_saved_models(None, receiver_fns.receiver_map(),
                                        export_dir=target)
    else:
      estimator.export_all_saved_models(target, receiver_fns.receiver_map())

  def _run(self, layout: str, durable: bool):
    """Traces one export (once per class); returns (tree, paths, final)."""
    if (layout, durable) in self.runs:
      return self.runs[(layout, durable)]
    root = tempfile.mkdtemp(dir=self.root)
    model_dir = os.path.join(root, 'model')
    shutil.copytree(self.model_dir, model_dir)
    target = os.path.join(root, 'model_export' if layout == 'fixed' else
                          'export')
    self._earlier_export(layout, model_dir, target)
    os.sync()  # the model: everything before the trace is on disk
    tree = power_cut.Tree(root)
    trace = os.path.join(tempfile.mkdtemp(dir=self.root), 'trace')
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', PYTHONPATH=os.pathsep.join(
        [os.path.dirname(_TESTS), _TESTS, os.environ.get('PYTHONPATH', '')]))
    command = [sys.executable, _WORKER, model_dir, target, layout]
    result = syscall_trace.run(command + ([] if durable else ['--nodurable']),
                               trace, env)
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    with open(trace) as f:
      tree.read_trace(syscall_trace.parse(f.read()))
    [line] = [l for l in result.stdout.splitlines() if l.startswith(_RETURNED)]
    paths = json.loads(line[len(_RETURNED):])['paths']
    for path in paths:  # what the states are compared with loads for real
      self.assertNotEmpty(running.load_every_tag_set(path))
    self.runs[(layout, durable)] = (tree, paths, root, target)
    return self.runs[(layout, durable)]

  def _checker(self, layout: str, tree, paths: List[str], root: str,
               target: str) -> crash_checks.StateChecker:
    now = _now(tree)
    before = {p: (b'' if p.endswith('/') else tree.initial[i])
              for p, i in tree.paths(tree.initial_entries).items()}
    rel = lambda p: os.path.relpath(p, root)
    base = rel(target)
    new = [rel(p) for p in paths]
    if layout == 'fixed':
      bases, always, required = [], [base], [base]
      allowed = {base: [crash_checks.file_map(before, base),
                        crash_checks.file_map(now, base)]}
    else:
      bases = ([os.path.join(base, m) for m in _MODE_DIRS]
               if layout == 'per_mode' else [base])
      always, required = [], new
      old = crash_checks.version_dirs(before, bases)
      allowed = {v: [crash_checks.file_map(before, v)] for v in old}
      allowed.update({v: [crash_checks.file_map(now, v)] for v in new})
    # Published in the order of _MODE_DIRS: train, eval, serve.
    groups = ([sorted(new, key=lambda p: _MODE_DIRS.index(p.split('/')[-2]))]
              if layout == 'per_mode' else [])
    journal = (os.path.join(base, publish.STAGING_PREFIX),
               '/' + group.JOURNAL)
    return crash_checks.StateChecker(allowed, bases, required, _RETURNED,
                                     always=always, groups=groups,
                                     journal=journal)

  @parameterized.parameters(*_LAYOUTS)
  def test_syncs_and_power_cut(self, layout):
    # One test per layout, both layers on the same two traced runs: under
    # pytest-xdist a worker traces only the layouts it runs.
    self._check_syncs(layout)
    self._check_power_cut(layout)

  def _check_syncs(self, layout):
    tree, paths, _, _ = self._run(layout, durable=True)
    self.assertEqual(crash_checks.sync_violations(tree, paths, _RETURNED), [])
    # Control: the same export without syncing fails the same check.
    tree, paths, _, _ = self._run(layout, durable=False)
    missing = crash_checks.sync_violations(tree, paths, _RETURNED)
    self.assertNotEmpty(missing)
    self.assertTrue(any('saved_model.pb: file not synced' in m
                        for m in missing), missing)

  def _check_power_cut(self, layout):
    tree, paths, root, target = self._run(layout, durable=True)
    checker = self._checker(layout, tree, paths, root, target)
    self.assertEqual(checker.loadable(
        [crash_checks.file_map(_now(tree), os.path.relpath(path, root))
         for path in paths]), [])
    found, count = crash_checks.check_all(
        checker, tree, power_cut.final_contents(tree))
    self.assertEqual((found, count), ([], 0))
    print(f'{layout}: {len(tree.ops)} operations, {checker.states} crash '
          f'states, {len(checker.distinct)} distinct, no violation')
    # Control: without syncing, some cut loses a returned or partial version.
    tree, paths, root, target = self._run(layout, durable=False)
    checker = self._checker(layout, tree, paths, root, target)
    found, count = crash_checks.check_all(
        checker, tree, power_cut.final_contents(tree))
    self.assertGreater(count, 0)
    print(f'{layout}, durable=False: {checker.states} crash states, {count} '
          f'violations, e.g. {found[:3]}')


if __name__ == '__main__':
  absltest.main()
