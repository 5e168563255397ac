"""Publishing to an explicit `export_dir=` instead of a numbered version.

The staging directory lives in the target's parent (same filesystem), so the
finished export is moved into place without copying.

* The target does not exist, or is an empty directory: the staging
  directory is renamed to it in one `rename(2)` (local), or moved file by file
  with `saved_model.pb` last (other filesystems).
* The target is not empty: refused with `ExportDirError` unless
  `overwrite=True`, and even then only if it is itself an export written
  this way (`layout.is_fixed_export`: a SavedModel, or mode directories each
  holding one), so a mistyped path never deletes unrelated data.
  - Local: the new export and the old one are swapped with one
    `renameat2(RENAME_EXCHANGE)`, so the target always names a complete
    export, the old one until the swap and the new one after; then the old
    one, now in the staging directory, is deleted. Where the kernel or
    filesystem cannot exchange, the old export is first renamed aside (a
    short moment without a target, never a mix), the new one renamed in,
    and the old one deleted; if the second rename fails, the old export is
    renamed back.
  - Other filesystems (no atomic rename): the old export's `saved_model.pb`
    is deleted first (it stops being a SavedModel), then the rest of it, then
    the new export is moved in with `saved_model.pb` last. A reader may find
    no export for that time, never a mix of the old and new.
Nothing outside the target and the staging directory is touched.

Durable (local, the default): the staged tree is synced before the rename or
swap, and the parent after it; if that last sync fails, the rename or swap
is undone (`_durable`).
"""

import ctypes
import errno
import os
import uuid

import tensorflow as tf
from absl import logging

from multimode_export import _filesystem as filesystem
from multimode_export import errors
from multimode_export.publishing import _durable
from multimode_export.publishing import _layout as layout
from multimode_export.publishing import _lock
from multimode_export.publishing import _remote
from multimode_export.publishing import _staging
from multimode_export.saved_model import _format

ABSENT, EMPTY, EXPORT = 'absent', 'empty', 'export'
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2  # linux/fs.h


def parent_of(export_dir: str) -> str:
  """The directory where `export_dir` is created (and staged).

  Raises:
    ValueError: `export_dir` is a root ('/', 's3://bucket/'), or a URL with
      no bucket.
  """
  if filesystem.is_local(export_dir):
    prefix = 'file://' if export_dir.startswith('file://') else ''
    export_dir = prefix + os.path.abspath(filesystem.local_path(export_dir))
  parent = filesystem.parent(export_dir)
  if parent is None:
    raise ValueError(f'export_dir: expected a directory below a bucket or '
                     f'root, got {export_dir!r}')
  return parent


def check_export_dir(export_dir: str, overwrite: bool) -> str:
  """Checks that an export may be published at `export_dir`.

  Returns:
    ABSENT, EMPTY, or EXPORT (non-empty, replaceable, and `overwrite` set).

  Raises:
    errors.ExportDirError: `export_dir` is a file; or is not empty and
      `overwrite` is False; or is not empty and not an export.
  """
  if not filesystem.exists(export_dir):
    return ABSENT
  if not tf.io.gfile.isdir(export_dir):
    raise errors.ExportDirError(
        f'export_dir: expected a directory, got the file {export_dir!r}',
        export_dir)
  if not tf.io.gfile.listdir(export_dir):
    return EMPTY
  if not overwrite:
    raise errors.ExportDirError(
        f'export_dir {export_dir!r} exists and is not empty; pass '
        'overwrite=True to replace it', export_dir)
  if not layout.is_fixed_export(export_dir):
    raise errors.ExportDirError(
        f'export_dir {export_dir!r} is not empty and is not an export (no '
        'saved_model.pb, no train/eval/serve SavedModels); refusing to '
        'replace it even with overwrite=True', export_dir)
  return EXPORT


def _exchange(a: str, b: str) -> bool:
  """Atomically swaps two local paths; False if the system cannot."""
  libc = ctypes.CDLL(None, use_errno=True)
  renameat2 = getattr(libc, 'renameat2', None)
  if renameat2 is None:
    return False
  if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b),
               _RENAME_EXCHANGE) == 0:
    return True
  err = ctypes.get_errno()
  if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
    return False
  raise OSError(err, os.strerror(err), a, None, b)


def _replace_local(new: str, target: str) -> None:
  """Puts the directory `new` at `target`; the old target ends up at `new`."""
  if _exchange(new, target):
    return
  aside = os.path.join(os.path.dirname(target),
                       f'.multimode-export-replaced-{uuid.uuid4().hex[:12]}')
  os.rename(target, aside)
  try:
    os.rename(new, target)
  except OSError:
    os.rename(aside, target)
    raise
  os.rename(aside, new)


def _publish_local(staging: _staging.Staging, export_dir: str,
                   overwrite: bool) -> None:
  staging.sync()
  # Checked again under the parent's lock: another exporter may have
  # published here since the plan was made.
  with _lock.base_lock(staging.export_dir_base):
    state = check_export_dir(export_dir, overwrite)
    new, target = (filesystem.local_path(staging.path),
                   filesystem.local_path(export_dir))
    if state == EXPORT:
      _replace_local(new, target)
      logging.info('Replaced the export at %s', export_dir)
    else:
      os.rename(new, target)  # also atomically replaces an empty directory
    if not staging.durable:
      return
    try:
      _durable.sync_dir(filesystem.local_path(staging.export_dir_base))
    except OSError:
      if state == EXPORT:
        _replace_local(new, target)  # swaps back
      else:
        os.rename(target, new)
      raise


def _publish_remote(staging: _staging.Staging, export_dir: str,
                    overwrite: bool) -> None:
  if check_export_dir(export_dir, overwrite) == EXPORT:
    protos = [filesystem.join(d, name) for d in
              [export_dir] + tf.io.gfile.glob(filesystem.join(export_dir, '*'))
              for name in _format.SAVED_MODEL_FILES]
    for proto in filter(tf.io.gfile.exists, protos):
      tf.io.gfile.remove(proto)
    tf.io.gfile.rmtree(export_dir)
  _remote.move_dirs([(staging.path, export_dir)])


def publish_to(staging: _staging.Staging, export_dir: str,
               overwrite: bool = False) -> str:
  """Publishes a complete staging directory as `export_dir`.

  Args:
    staging: a Staging in `parent_of(export_dir)`, its contents complete.
    export_dir: the target directory.
    overwrite: replace an existing export there.

  Returns:
    `export_dir`.

  Raises:
    errors.ExportDirError: the target cannot be used (see
      `check_export_dir`); nothing was changed.
    errors.PublishError: moving failed; the old target is left in place.
  """
  try:
    if staging.local:
      _publish_local(staging, export_dir, overwrite)
    else:
      _publish_remote(staging, export_dir, overwrite)
  except (OSError, tf.errors.OpError) as e:
    raise errors.PublishError(
        f'publishing the export at {export_dir!r} failed: '
        f'{type(e).__name__}: {e}', staging.export_dir_base) from e
  staging.discard()  # what is left: the replaced export, or nothing
  logging.info('Export published at %s', export_dir)
  return export_dir

