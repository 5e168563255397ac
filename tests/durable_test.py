"""publishing/_durable.py and the `durable` option: what is synced, the
opt-out, bad input, and a failing sync before or after the publishing rename.

Which calls a real export makes, in which order, and what a power cut leaves
of it, are in tests/conformance/crash_test.py (under strace).
"""

import errno
import os
from typing import Callable, List
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized

import multimode_export
from multimode_export.publishing import _durable as durable
from testing import faults
from testing import models
from testing import receiver_fns
from testing import running


class _CountingOs:
  """`os` as `_durable` sees it, recording every fsync'd path; `fail(path)`
  True makes that fsync raise EIO (a disk error)."""

  def __init__(self, fail: Callable[[str], bool] = lambda path: False):
    self.synced: List[str] = []
    self._fail = fail

  def fsync(self, fd: int) -> None:
    path = os.readlink(f'/proc/self/fd/{fd}')
    self.synced.append(path)
    if self._fail(path):
      raise OSError(errno.EIO, 'injected fsync failure', path)
    os.fsync(fd)

  def __getattr__(self, name):
    return getattr(os, name)


class SyncTreeTest(absltest.TestCase):

  def test_every_file_once_per_inode_and_every_directory(self):
    root = self.create_tempdir().full_path
    os.makedirs(os.path.join(root, 'a', 'b'))
    for name in ('x', 'a/y', 'a/b/z'):
      with open(os.path.join(root, name), 'w') as f:
        f.write(name)
    os.link(os.path.join(root, 'x'), os.path.join(root, 'a', 'x2'))
    counting = _CountingOs()
    with mock.patch.object(durable, 'os', counting):
      durable.sync_tree(root)
    files = [p for p in counting.synced if os.path.isfile(p)]
    dirs = [p for p in counting.synced if os.path.isdir(p)]
    self.assertLen(files, 3)  # x and a/x2 are one inode
    self.assertCountEqual(
        [os.path.relpath(p, root) for p in files if 'x' not in
         os.path.basename(p)], ['a/y', 'a/b/z'])
    self.assertEqual([os.path.relpath(d, root) for d in dirs],
                     ['a/b', 'a', '.'])  # deepest first

  def test_created_parents_entries_are_synced(self):
    root = self.create_tempdir().full_path
    base = os.path.join(root, 'new', 'base')
    os.makedirs(base)
    counting = _CountingOs()
    with mock.patch.object(durable, 'os', counting):
      durable.sync_tree(base, created=[base, os.path.dirname(base)])
    self.assertEqual(counting.synced, [base, os.path.join(root, 'new'), root])

  def test_applies_only_to_local_paths(self):
    self.assertTrue(durable.applies('/tmp/x'))
    self.assertTrue(durable.applies('file:///tmp/x'))
    for remote in ('ram://x', 's3://bucket/x', 'gs://bucket/x'):
      self.assertFalse(durable.applies(remote), remote)


class DurableOptionTest(models.ClassRootMixin, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.estimator = models.train_custom(os.path.join(cls.root, 'model'),
                                        steps=2)

  def _export(self, layout: str, target: str, **kwargs):
    if layout == 'per_mode':
      return multimode_export.export_saved_models_per_mode(
          self.estimator, target, receiver_fns.receiver_map(), **kwargs)
    if layout == 'fixed':
      return multimode_export.export_all_saved_models(
          self.estimator, None, receiver_fns.receiver_map(),
          export_dir=target, overwrite=True, **kwargs)
    return multimode_export.export_all_saved_models(
        self.estimator, target, receiver_fns.receiver_map(), **kwargs)

  def test_not_a_bool(self):
    base = os.path.join(self.create_tempdir().full_path, 'base')
    with self.assertRaisesRegex(TypeError,
                                "durable: expected True or False, got 'yes'"):
      self._export('shared', base, durable='yes')
    self.assertFalse(os.path.exists(base))

  @parameterized.parameters('shared', 'per_mode', 'fixed')
  def test_opt_out_syncs_nothing(self, layout):
    target = os.path.join(self.create_tempdir().full_path, 'target')
    counting = _CountingOs()
    with mock.patch.object(durable, 'os', counting):
      self._export(layout, target, durable=False)
      self.assertEqual(counting.synced, [])
      self._export(layout, target)  # durable by default
    # The directory that received the published name, after the rename.
    receiving = {'shared': target, 'fixed': os.path.dirname(target),
                 'per_mode': os.path.join(target, 'serve')}[layout]
    self.assertIn(receiving, counting.synced)

  def test_exporter_passes_the_option_on(self):
    base = os.path.join(self.create_tempdir().full_path, 'export', 'x')
    for durable_option, expect_syncs in ((False, False), (True, True)):
      exporter = multimode_export.MultiModeExporter(
          'x', receiver_fns.receiver_map(), durable=durable_option)
      counting = _CountingOs()
      with mock.patch.object(durable, 'os', counting):
        path = exporter.export(self.estimator, base, None, {'loss': 1.0},
                               False)
      self.assertEqual(bool(counting.synced), expect_syncs)
      self.assertEqual(base in counting.synced, expect_syncs, path)

  def test_ram_filesystem_syncs_nothing(self):
    counting = _CountingOs()
    with mock.patch.object(durable, 'os', counting):
      path = self._export('shared', 'ram://durable_test/base')
    self.assertEqual(counting.synced, [])
    self.assertNotEmpty(running.read_meta_graphs(path))

  @parameterized.parameters(
      ('shared', 'saved_model.pb'), ('shared', 'after_rename'),
      ('per_mode', 'saved_model.pb'), ('per_mode', 'after_rename'),
      ('fixed', 'saved_model.pb'), ('fixed', 'after_rename'))
  def test_failing_sync_publishes_nothing(self, layout, which):
    parent = self.create_tempdir().full_path
    target = os.path.join(parent, 'target')
    self._export(layout, target)  # an earlier export, to keep intact
    before = faults.snapshot(parent)
    # The directory that receives the published name is synced only after
    # the rename (it exists already); per-mode: the second mode's, so that
    # half the group is published when the sync fails.
    receiving = {'shared': target, 'fixed': parent,
                 'per_mode': os.path.join(target, 'eval')}[layout]

    def fail(path: str) -> bool:
      if which == 'saved_model.pb':
        return path.endswith('/saved_model.pb')
      return path == receiving

    with mock.patch.object(durable, 'os', _CountingOs(fail)):
      with self.assertRaisesRegex(multimode_export.PublishError,
                                  'injected fsync failure'):
        self._export(layout, target)
    self.assertEqual(faults.snapshot(parent), before)


if __name__ == '__main__':
  absltest.main()
