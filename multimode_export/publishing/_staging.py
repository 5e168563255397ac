"""Staging an export: a hidden directory where it is written, then published.

The guarantee: a published export (`<export_dir_base>/<version>`, all
digits, what model servers poll for) holds a complete SavedModel whenever a
poller that waits for `saved_model.pb` sees it, and nothing of a failed or
killed export is ever published. How it is published depends on the
filesystem, one protocol per module: `_local` (one rename under the base
lock), `_remote` (file by file, protos last), `_group` (the per-mode layout's
modes under one version) and `_fixed_dir` (an explicit `export_dir`).

On a local filesystem a durable staging (the default) is synced before it
is published and its new name after (`_durable`), so that a published
version also survives a machine crash.

Failures before publishing remove the staging directory and any directory
the export created (the base itself and missing parents, if still empty),
so `export_dir_base` is left as it was.
"""

import contextlib
import os
import socket
import time
import uuid
from typing import Dict, Iterable, Iterator, List, Optional, Sequence

import tensorflow as tf
from absl import logging

from multimode_export import _filesystem as filesystem
from multimode_export import errors
from multimode_export.publishing import _durable
from multimode_export.publishing import _group
from multimode_export.publishing import _local
from multimode_export.publishing import _remote

STAGING_PREFIX = '.multimode-export-staging-'


def _protocol(path: str):
  """The publishing protocol module for the filesystem of `path`."""
  return _local if filesystem.is_local(path) else _remote


class Staging:
  """A hidden directory in `export_dir_base` where one export is written.

  Use `open_staging`; call `publish` (or `publish_group`) once the contents
  are complete, or `discard` to remove everything.

  Attributes:
    export_dir_base: where the export is published.
    path: the staging directory.
    local: whether the base is on the local filesystem.
    durable: whether publishing syncs (local and asked for, see `_durable`).
    published: whether the export has been published.
  """

  def __init__(self, export_dir_base: str, durable: bool = True):
    self.export_dir_base = export_dir_base
    self.local = filesystem.is_local(export_dir_base)
    self.durable = durable and _durable.applies(export_dir_base)
    self._protocol = _protocol(export_dir_base)
    # The creation time ends the name: remote staging directories have no
    # lock and often no reliable mtime.
    name = (f'{STAGING_PREFIX}{socket.gethostname()}-{os.getpid()}-'
            f'{uuid.uuid4().hex[:12]}-{int(time.time())}')
    self.path = filesystem.join(export_dir_base, name)
    self.published = False
    self._lock_fd: Optional[int] = None
    self._created: List[str] = []
    try:
      self._created = filesystem.missing_dirs(export_dir_base)
      self._lock_fd = self._protocol.create_staging(export_dir_base, self.path)
    except (OSError, tf.errors.OpError) as e:
      self.discard()
      raise errors.ExportDirError(
          f'export_dir_base {export_dir_base!r} is not writable: '
          f'{type(e).__name__}: {e}', export_dir_base) from e

  def sync(self) -> None:
    """If durable, syncs the staged tree and the directories this export
    created (see `_durable.sync_tree`); call once the contents are complete.

    Raises:
      OSError: a sync failed.
    """
    if self.durable:
      _durable.sync_tree(self.path, self._created)

  def publish(self) -> str:
    """Makes the staged export visible as the next version; returns its path."""
    self.sync()
    final = self._protocol.publish_version(self.path, self.export_dir_base,
                                           durable=self.durable)
    self.published = True
    self._release()
    logging.info('Export published at %s', final)
    return final

  def publish_group(self, names: Sequence[str],
                    reserved: Iterable[str]) -> Dict[str, str]:
    """Publishes each staged subdirectory under one version (see `_group`)."""
    self.sync()
    finals = _group.publish_group(self.path, self.export_dir_base, names,
                                  reserved, durable=self.durable)
    self.published = True
    self.discard()  # only the journal is left in it
    return finals

  def discard(self) -> None:
    """Removes the staging directory and the directories this export created
    (the base and its parents), if they are empty again."""
    try:
      self._protocol.remove(self.path, self._created)
    except (OSError, tf.errors.OpError) as e:
      logging.warning('Could not remove staging data %s: %s', self.path, e)
    finally:
      self._release()

  def _release(self) -> None:
    if self._lock_fd is not None:
      os.close(self._lock_fd)
      self._lock_fd = None


@contextlib.contextmanager
def open_staging(export_dir_base: str,
                 durable: bool = True) -> Iterator[Staging]:
  """Yields a Staging; discards it if the body raises or does not publish."""
  staging = Staging(export_dir_base, durable)
  try:
    yield staging
  finally:
    if not staging.published:
      staging.discard()


def check_export_dir_base(export_dir_base: str) -> None:
  """Raises ExportDirError if the base exists and is not a directory."""
  try:  # one stat, not exists() and isdir(): requests on object stores
    is_dir = tf.io.gfile.stat(export_dir_base).is_directory
  except (tf.errors.NotFoundError, tf.errors.FailedPreconditionError):
    return  # none (a parent that is a file is refused when staging)
  if not is_dir:
    raise errors.ExportDirError(
        f'export_dir_base: expected a directory, got the file '
        f'{export_dir_base!r}', export_dir_base)


def remove_stale_staging(export_dir_base: str) -> List[str]:
  """Removes staging directories left by dead exporters; returns their paths.

  Never touches a live exporter's staging directory or a published export,
  except the members of a per-mode group whose exporter died half-way
  through publishing it (`_group.roll_back`). Best effort: a directory that
  cannot be removed is logged and skipped.
  """
  # Remotely no isdir() first (two requests on S3): remove_stale lists.
  if filesystem.is_local(export_dir_base) and not os.path.isdir(
      filesystem.local_path(export_dir_base)):
    return []
  return _protocol(export_dir_base).remove_stale(
      export_dir_base, STAGING_PREFIX, _group.roll_back)
