"""Fault injection: a failure at every filesystem step of an export.

`FaultInjector` wraps the filesystem functions the writing modules call
(`tf.io.gfile`, the checkpoint-writing raw ops, `os`, `shutil`, `fcntl` and
`open`) as those modules see them, counts every mutating call, and makes the
Nth one fail: before it acts (nothing done, like a refused write), or after
it acted (done, but reported failed, like an error on close or an NFS retry),
or from the Nth on (the disk stays full). Real TensorFlow, real files: only
the moment of failure is chosen by the test.

For each scenario the loop fails step N = 1, 2, ... until an export no
longer reaches step N, and checks after every failed attempt that the
directory holding `export_dir_base` is byte-for-byte as before, then that a
healthy export succeeds.
"""

# bazel-data: //docs:publishing.md

import contextlib
import dataclasses
import errno
import fcntl
import os
import posixpath
import re
import shutil
import uuid
from typing import List, Tuple
from unittest import mock

from absl import logging
from absl.testing import absltest
from absl.testing import parameterized
import tensorflow as tf

from multimode_export import _export as export
from multimode_export import _filesystem as filesystem_lib
from multimode_export import _options as options_lib
from multimode_export import _per_mode as per_mode
from multimode_export import _plan as plan_lib
from multimode_export import errors
from multimode_export.publishing import _fixed_dir as target_dir
from multimode_export.publishing import _group as group
from multimode_export.publishing import _local as local
from multimode_export.publishing import _lock as lock
from multimode_export.publishing import _remote as remote
from multimode_export.publishing import _staging as publish
from multimode_export.saved_model import _assets_extra as assets_extra
from multimode_export.saved_model import _writer as saved_model_writer
from multimode_export.variables import _bundle_index as bundle_index
from multimode_export.variables import _extent_copy as extent_copy
from multimode_export.variables import _transfer as variables_transfer
from testing import faults
from testing import models
from testing import receiver_fns
from testing import running
from tools import doc_generated

ModeKeys = tf.estimator.ModeKeys


class _Proxy:
  """Delegates every attribute to `real` except the given overrides."""

  def __init__(self, real, **overrides):
    self._real = real
    self.__dict__.update(overrides)

  def __getattr__(self, name):
    return getattr(self._real, name)


class _FaultyFile:
  """A GFile opened for writing whose write() and close() are steps."""

  def __init__(self, injector, real_file, path: str):
    self._injector, self._file, self._path = injector, real_file, path

  def write(self, data):
    return self._injector.step('gfile.write', self._path, tf.errors,
                               self._file.write, data)

  def close(self):
    # A close that fails has still released the handle; otherwise a buffered
    # ram:// file would be written back at garbage collection.
    try:
      self._injector.step('gfile.close', self._path, tf.errors,
                          lambda: None)
    finally:
      self._file.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  def __getattr__(self, name):
    return getattr(self._file, name)


def _is_write_mode(mode: str) -> bool:
  return any(c in mode for c in 'wxa+')


class FaultInjector:
  """Counts mutating filesystem calls of multimode_export; fails the Nth.

  Attributes:
    ops: (operation, path) of every counted call, in order.
    fired: the (operation, path) calls that were made to fail.
  """

  def __init__(self, fail_at: int = 0, after: bool = False,
               persistent: bool = False):
    self.fail_at, self.after, self.persistent = fail_at, after, persistent
    self.ops: List[Tuple[str, str]] = []
    self.fired: List[Tuple[str, str]] = []

  def step(self, op: str, path, kind, real, *args, **kwargs):
    """Runs `real(*args, **kwargs)` as step number len(ops) + 1."""
    if isinstance(path, int):  # a file descriptor: record the file's path
      path = os.readlink(f'/proc/self/fd/{path}')
    self.ops.append((op, str(path)))
    n = len(self.ops)
    failing = self.fail_at and (
        n == self.fail_at or (self.persistent and n > self.fail_at))
    if not failing:
      return real(*args, **kwargs)
    self.fired.append((op, str(path)))
    if self.after:
      real(*args, **kwargs)
    message = f'injected fault #{n}: {op} {path}'
    if kind is tf.errors:
      raise tf.errors.ResourceExhaustedError(None, None, message)
    raise OSError(errno.ENOSPC, message, str(path))

  def _wrap(self, op: str, kind, real, path_arg: int = 0):
    def wrapped(*args, **kwargs):
      path = args[path_arg] if args else ''
      if op in ('os.rename', 'gfile.rename', 'os.link', 'gfile.copy'):
        path = f'{path} -> {args[path_arg + 1]}'
      return self.step(op, path, kind, real, *args, **kwargs)
    return wrapped

  def _gfile_open(self, name, mode='r'):
    if not _is_write_mode(mode):
      return tf.io.gfile.GFile(name, mode)
    real = self.step('gfile.open', name, tf.errors, tf.io.gfile.GFile, name,
                     mode)
    return _FaultyFile(self, real, name)

  def _builtin_open(self, file, mode='r', *args, **kwargs):
    if not _is_write_mode(mode):
      return open(file, mode, *args, **kwargs)
    return self.step('open', file, OSError, open, file, mode, *args, **kwargs)

  def _flock(self, fd, operation):
    if operation & fcntl.LOCK_UN:
      return fcntl.flock(fd, operation)
    return self.step('flock', fd, OSError, fcntl.flock, fd, operation)

  def _raw_op(self, name: str):
    real = getattr(tf.raw_ops, name)

    def wrapped(**kwargs):
      path = kwargs.get('prefix') or kwargs.get('destination_prefix')
      return self.step(f'raw_ops.{name}', path, tf.errors, real, **kwargs)
    return wrapped

  @contextlib.contextmanager
  def installed(self):
    """Replaces the filesystem functions the writing modules see."""
    gfile = tf.io.gfile
    faulty_gfile = _Proxy(gfile, GFile=self._gfile_open, **{
        name: self._wrap(f'gfile.{name}', tf.errors, getattr(gfile, name))
        for name in ('makedirs', 'mkdir', 'copy', 'rename', 'remove',
                     'rmtree')})
    faulty_tf = _Proxy(tf, io=_Proxy(tf.io, gfile=faulty_gfile),
                       raw_ops=_Proxy(tf.raw_ops, **{
                           n: self._raw_op(n)
                           for n in ('SaveV2', 'MergeV2Checkpoints')}))
    faulty_os = _Proxy(os, **{
        name: self._wrap(f'os.{name}', OSError, getattr(os, name))
        for name in ('makedirs', 'mkdir', 'rename', 'rmdir', 'link',
                     'unlink', 'remove')})
    faulty_shutil = _Proxy(shutil, rmtree=self._wrap('shutil.rmtree', OSError,
                                                     shutil.rmtree))
    faulty_fcntl = _Proxy(fcntl, flock=self._flock,
                          ioctl=self._wrap('ioctl', OSError, fcntl.ioctl))
    with contextlib.ExitStack() as stack:
      # Every module that writes, moves or removes files.
      for module in (filesystem_lib, publish, local, remote, group,
                     saved_model_writer, variables_transfer, extent_copy,
                     bundle_index, assets_extra, per_mode, target_dir):
        stack.enter_context(mock.patch.object(module, 'tf', faulty_tf))
      for module in (filesystem_lib, local, remote, group, lock,
                     variables_transfer, extent_copy, target_dir):
        stack.enter_context(mock.patch.object(module, 'os', faulty_os))
      for module in (lock, variables_transfer):
        stack.enter_context(mock.patch.object(module, 'fcntl', faulty_fcntl))
      stack.enter_context(mock.patch.object(local, 'shutil', faulty_shutil))
      for module in (variables_transfer, extent_copy):
        stack.enter_context(mock.patch.object(
            module, 'open', self._builtin_open, create=True))
      yield self


def _remove(path: str) -> None:
  if tf.io.gfile.exists(path):
    tf.io.gfile.rmtree(path)


def _new_entries(root: str, before, after, published):
  """Entries of `after` not in `before`, other than the published
  directories, their contents and the directories leading to them."""
  rels = [p[len(root) + 1:] for p in published]
  return {k for k in set(after) - set(before)
          if not any(k.startswith(r) or r.startswith(k.rstrip('/'))
                     for r in rels)}


# docs/publishing.md shows what these tests measure: a row of its scenario
# table per test, tagged (`<test name less test_fail_every_step_>`), and the
# steps of two scenarios. Each test checks its part; to rewrite them run
# MULTIMODE_EXPORT_UPDATE_DOCS=1 python -m pytest -p no:xdist <this file>.
DOC = 'docs/publishing.md'
STEP_LISTS = {'after_it_acted_local_link': 'local',
              'after_it_acted_ram_full': 'ram'}


def _doc_key(test: absltest.TestCase) -> str:
  return re.sub(r'^test_(fail_every_step_)?', '', test._testMethodName)


def _step_list(ops: List[Tuple[str, str]], base: str, extra_source: str,
               checkpoint: str) -> str:
  """The steps, numbered, with the varying parts of their paths named."""
  lines = []
  for n, (op, path) in enumerate(ops, 1):
    path = path.replace(base, '<base>').replace(checkpoint, '<ckpt>')
    path = path.replace(os.path.dirname(extra_source) + '/', '')
    path = re.sub(r'\.multimode-export-staging-[^/ ]*', '.staging-*', path)
    lines.append(f'{n:2} {op:15} {re.sub(r"/[0-9]{10}", "/<v>", path)}')
  return '\n'.join(lines)


def _agree_with_doc(test: absltest.TestCase, cells, steps_text=None) -> None:
  """The test's row of the scenario table (and step list) shows `cells`."""
  key = _doc_key(test)
  if key in STEP_LISTS:
    test.assertEqual(doc_generated.disagreement(
        DOC, f'tests/conformance/faults_test.py steps-{STEP_LISTS[key]}',
        steps_text), '')
  if doc_generated.updating():
    doc_generated.write_table_cells(DOC, key, cells)
    return
  shown = doc_generated.table_row(DOC, key)
  test.assertEqual(
      {k: shown.get(k) for k in cells}, cells,
      f'{DOC} row (`{key}`) differs from what the test measured; rewrite '
      f'it: {doc_generated.UPDATE_ENV}=1 python -m pytest -p no:xdist '
      'tests/conformance/faults_test.py')


def _restore(root: str, before) -> None:
  """Removes what was added under `root` since the snapshot `before`."""
  for key in set(faults.snapshot(root)) - set(before):
    parent = posixpath.dirname(key.rstrip('/'))
    if (parent + '/' if parent else '') in before:
      _remove(f'{root}/{key.rstrip("/")}')


class FaultsTest(models.ClassRootMixin, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.estimator = models.train_custom(os.path.join(cls.root, 'model'),
                                        steps=3)
    # An assets_extra file exercises the copy into assets.extra/ too.
    cls.extra_source = os.path.join(cls.root, 'vocab.txt')
    with open(cls.extra_source, 'w') as f:
      f.write('a\nb\n')
    cls.plans = {
        'full': plan_lib.plan_export(
            cls.estimator, '/unused', receiver_fns.receiver_map(),
            options_lib.ExportOptions(
                assets_extra={'notes/vocab.txt': cls.extra_source})),
        # PREDICT only: variables/ is a subset (extents copied, a new index).
        'predict': plan_lib.plan_export(
            cls.estimator, '/unused',
            receiver_fns.receiver_map((ModeKeys.PREDICT,)),
            options_lib.ExportOptions()),
    }
    # One SavedModel per mode under <base>/<mode>/<version>, published as a
    # group; and one SavedModel at a fixed export_dir=<base>/model.
    cls.plans['per_mode'] = cls.plans['full']
    cls.plans['export_dir'] = cls.plans['full']

  def _root(self, filesystem: str) -> str:
    if filesystem == 'local':
      return self.create_tempdir().full_path
    root = f'ram://faults-{uuid.uuid4().hex}'
    tf.io.gfile.makedirs(root)
    self.addCleanup(_remove, root)
    return root

  def _prepare(self, filesystem: str, base_exists: bool, plan_name: str):
    """A root holding an unrelated file and, if asked, a base with an export.

    Returns:
      (root, base): the snapshot is taken of root, which holds the base.
    """
    root = self._root(filesystem)
    with tf.io.gfile.GFile(root + '/unrelated.txt', 'w') as f:
      f.write('keep me')
    if base_exists:
      base = root + '/base'
      # An earlier export (a fixed export_dir= target must be new: the
      # earlier one goes elsewhere in the base).
      self._write(base, 'full' if plan_name == 'export_dir' else plan_name)
    else:
      base = root + '/new/deeper/base'  # neither base nor parents exist
    return root, base

  def _write(self, base: str, plan_name: str,
             allow_links: bool = True) -> List[str]:
    """Writes and publishes an export; returns the published directories."""
    options = options_lib.ExportOptions(allow_links=allow_links)
    plan = dataclasses.replace(self.plans[plan_name], export_dir_base=base)
    if plan_name == 'per_mode':
      return sorted(per_mode.write_plan_per_mode(plan, options).values())
    if plan_name == 'export_dir':
      plan = dataclasses.replace(plan, export_dir=base + '/model')
    return [export.write_plan(plan, options)]

  def _check_complete(self, published: List[str], plan_name: str) -> None:
    tags = sorted(sorted(g.tags) for g in self.plans[plan_name].graphs)
    loaded = sorted(t for p in published for t in running.load_every_tag_set(p))
    self.assertEqual(loaded, tags)

  def _run_loop(self, filesystem, plan_name, allow_links, base_exists, after):
    root, base = self._prepare(filesystem, base_exists, plan_name)
    before = faults.snapshot(root)
    outcomes = []
    n = 0
    while True:
      n += 1
      injector = FaultInjector(fail_at=n, after=after)
      error = published = None
      with injector.installed():
        try:
          published = self._write(base, plan_name, allow_links)
        except errors.Error as e:
          error = e
      if not injector.fired:
        self.assertIsNone(error)
        break
      op = injector.fired[0]
      if error is not None:
        self.assertIsInstance(error, (errors.PublishError,
                                      errors.ExportDirError), op)
        self.assertEqual(faults.snapshot(root), before,
                         f'step {n} {op} failed and left a trace')
        outcomes.append((n, op[0], type(error).__name__))
      else:
        # The fault hit a step whose failure the export tolerates (e.g. a
        # reflink falling back to a hard link): the export must be whole.
        self._check_complete(published, plan_name)
        leftover = _new_entries(root, before, faults.snapshot(root),
                                published)
        self.assertTrue(all(publish.STAGING_PREFIX in k for k in leftover),
                        leftover)
        outcomes.append((n, op[0], 'tolerated'))
        _restore(root, before)
    steps = len(injector.ops)
    self.assertGreater(steps, 8)
    # Every step was failed once; then the healthy export published exactly
    # one new, loadable version and nothing else.
    self.assertLen(outcomes, steps)
    after_snapshot = faults.snapshot(root)
    self.assertEmpty(_new_entries(root, before, after_snapshot, published))
    for k, v in before.items():
      self.assertEqual(after_snapshot.get(k, 'missing'), v, k)
    self._check_complete(published, plan_name)
    tolerated = [f'{n} {op}' for n, op, kind in outcomes if kind == 'tolerated']
    _agree_with_doc(self, {
        'Steps': str(steps),
        'Failed cleanly (base as before)': str(len(outcomes) - len(tolerated)),
        'Tolerated (export still complete and loadable)':
            ', '.join(tolerated) or '-'},
                    _step_list(injector.ops, base, self.extra_source,
                               self.estimator.latest_checkpoint()))
    logging.info('%s/%s links=%s after=%s: %d steps: %s', filesystem,
                 plan_name, allow_links, after, steps, outcomes)
    print(f'\n{filesystem}/{plan_name} links={allow_links} after={after}: '
          f'{steps} steps, failed: '
          f'{sum(o[2] != "tolerated" for o in outcomes)}, tolerated: '
          f'{[(o[0], o[1]) for o in outcomes if o[2] == "tolerated"]}')
    return injector.ops

  @parameterized.named_parameters(
      ('local_link_new_base', 'local', 'full', True, False),
      ('local_copy', 'local', 'full', False, True),
      ('local_stream', 'local', 'predict', True, True),
      ('ram_full_new_base', 'ram', 'full', True, False),
      ('ram_stream', 'ram', 'predict', True, True),
      ('local_per_mode', 'local', 'per_mode', True, True),
      ('ram_per_mode_new_base', 'ram', 'per_mode', True, False),
      ('local_export_dir', 'local', 'export_dir', True, True),
      ('ram_export_dir_new_base', 'ram', 'export_dir', True, False),
  )
  def test_fail_every_step_before_it_acts(self, filesystem, plan_name,
                                          allow_links, base_exists):
    self._run_loop(filesystem, plan_name, allow_links, base_exists,
                   after=False)

  @parameterized.named_parameters(
      ('local_link', 'local', 'full', True, True),
      ('local_stream_new_base', 'local', 'predict', True, False),
      ('ram_full', 'ram', 'full', True, True),
      ('local_per_mode', 'local', 'per_mode', True, True),
      ('ram_export_dir', 'ram', 'export_dir', True, True),
  )
  def test_fail_every_step_after_it_acted(self, filesystem, plan_name,
                                          allow_links, base_exists):
    self._run_loop(filesystem, plan_name, allow_links, base_exists,
                   after=True)

  @parameterized.named_parameters(('local', 'local'), ('ram', 'ram'))
  def test_saved_model_pb_is_the_last_file_to_appear(self, filesystem):
    root = self._root(filesystem)
    injector = FaultInjector()
    with injector.installed():
      [path] = self._write(root + '/base', 'full')
    # The last step that puts data under the final name: the directory
    # rename on local disk, saved_model.pb's own rename elsewhere.
    into_final = [(op, p) for op, p in injector.ops
                  if op in ('os.rename', 'gfile.rename')]
    if filesystem == 'local':
      self.assertLen(into_final, 1)
    else:
      self.assertGreater(len(into_final), 3)
      self.assertEqual(os.path.basename(into_final[-1][1]),
                       'saved_model.pb')
    self.assertTrue(tf.io.gfile.exists(path + '/saved_model.pb'))

  @parameterized.named_parameters(('local', 'local'), ('ram', 'ram'))
  def test_disk_stays_full_from_every_step(self, filesystem):
    """From step N on every call fails, cleanup included.

    Nothing a poller could take for an export may remain: on local disk only
    hidden staging data, which the next healthy export removes at once; on
    ram:// also numbered directories without saved_model.pb (the files moved
    before the failure, which could not be deleted either).
    """
    root, base = self._prepare(filesystem, True, 'full')
    before = faults.snapshot(root)
    rel_base = base[len(root) + 1:] + '/'
    n = 0
    while True:
      n += 1
      injector = FaultInjector(fail_at=n, persistent=True)
      published = set()
      with injector.installed():
        try:
          published.add(os.path.basename(self._write(base, 'full')[0]))
        except errors.Error:
          pass
      if not injector.fired:
        break
      for version in published:  # only the cleanup after publishing failed
        self.assertNotEmpty(running.load_every_tag_set(f'{base}/{version}'))
      left = set(faults.snapshot(root)) - set(before)
      partial = {k.split('/')[1] for k in left
                 if k.split('/')[1].isdigit()} - published
      if filesystem == 'local':
        self.assertEmpty(partial, f'from step {n}')
      for version in partial:
        self.assertNotIn(f'{rel_base}{version}/saved_model.pb', left)
      self.assertTrue(all(publish.STAGING_PREFIX in k or
                          k.split('/')[1] in partial | published
                          for k in left), left)
      # The next export removes the dead staging data (at once on local
      # disk; on ram:// once older than STALE_AFTER_SECONDS, 0 here).
      with mock.patch.object(remote, 'STALE_AFTER_SECONDS', -1.0):
        [path] = self._write(base, 'full')
      self.assertNotEmpty(running.load_every_tag_set(path))
      left = set(faults.snapshot(root)) - set(before)
      self.assertTrue(all(k.startswith(path[len(root) + 1:]) or
                          k.split('/')[1] in partial | published
                          for k in left), left)
      for version in partial | published | {os.path.basename(path)}:
        _remove(f'{base}/{version}')
    _agree_with_doc(self, {'Steps': str(n - 1)})
    self.assertGreater(n, 8)


if __name__ == '__main__':
  absltest.main()
