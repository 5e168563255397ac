"""Publishing a per-mode group: every mode of one export under one version.

Every mode is staged completely in one staging directory; then one version
number is chosen above every version of every mode directory (local: under
the base lock; remote: claimed, see `_remote`), a journal naming it is
written into the staging directory, and each mode is moved to
`<export_dir_base>/<mode dir>/<version>` in the order TRAIN, EVAL, PREDICT (local: one rename each; remote: file by file,
protos last). A failed move moves the others back. An exporter killed
between two moves leaves its journal behind, and the next export in the same
base unpublishes that incomplete group (`roll_back`) before it publishes.
"""

import contextlib
import json
import os
from typing import Dict, Iterable, Iterator, Sequence

import tensorflow as tf
from absl import logging

from multimode_export import _filesystem as filesystem
from multimode_export import errors
from multimode_export.publishing import _durable
from multimode_export.publishing import _local
from multimode_export.publishing import _lock
from multimode_export.publishing import _remote
from multimode_export.publishing import _versions
from multimode_export.saved_model import _format

# Written into the staging directory before a group is published: which
# version, which subdirectories.
JOURNAL = '.publishing-group'


def publish_group(staging_path: str, export_dir_base: str,
                  names: Sequence[str], reserved: Iterable[str],
                  durable: bool = False) -> Dict[str, str]:
  """Publishes each staged subdirectory as `<base>/<name>/<version>`.

  Args:
    staging_path: the staging directory holding one subdirectory per name.
    export_dir_base: the per-mode base.
    names: subdirectories of the staging directory, in publish order.
    reserved: every name whose versions the new version must exceed (a
      superset of `names`).
    durable: sync the journal before the first move and each move before
      the next (local; the staged tree is already synced, see `_durable`).

  Returns:
    name -> published directory.

  Raises:
    errors.PublishError: a move failed (already rolled back).
  """
  base = export_dir_base
  bases = [filesystem.join(base, r) for r in reserved]
  if filesystem.is_local(base):
    move_dirs, choice = _local.move_dirs, _locked_next_version(base, bases)
  else:
    move_dirs = _remote.move_dirs
    choice = _remote.claimed_version(base, bases, staging_path)
  with choice as version:
    journal = filesystem.join(staging_path, JOURNAL)
    with tf.io.gfile.GFile(journal, 'w') as f:
      f.write(json.dumps({'version': version, 'names': list(names)}))
    if durable:  # a crash mid-group must leave the journal for roll_back
      _durable.sync_file(filesystem.local_path(journal))
      # The journal's name, and the staging directory's own name in the
      # base, which nothing else syncs while the mode directories exist.
      _durable.sync_dirs([staging_path, base])
    finals = {n: _versions.version_dir(filesystem.join(base, n), version)
              for n in names}
    try:
      move_dirs([(filesystem.join(staging_path, n), finals[n]) for n in names],
                durable=durable)
    except (OSError, tf.errors.OpError) as e:
      raise errors.PublishError(
          f'publishing version {version} of {list(names)} under {base!r} '
          f'failed, nothing published: {type(e).__name__}: {e}', base) from e
  logging.info('Export group published as version %d of %s under %s',
               version, list(names), base)
  return finals


@contextlib.contextmanager
def _locked_next_version(base: str, bases: Sequence[str]) -> Iterator[int]:
  """The next version above every one in `bases`, under the base lock."""
  with _lock.base_lock(base):
    yield _versions.next_version(bases)


def roll_back(export_dir_base: str, staging_path: str) -> None:
  """Unpublishes the group of an exporter killed while publishing it.

  The rule: a group is complete once no SavedModel proto is left in its
  staging directory (protos move last). A complete group stays published; of
  an incomplete one, every member already published is removed, its
  `saved_model.pb` first (local: renamed back into the staging directory in
  one step).
  """
  try:
    with tf.io.gfile.GFile(filesystem.join(staging_path, JOURNAL)) as f:
      journal = json.loads(f.read())
    version, names = int(journal['version']), list(journal['names'])
  except (tf.errors.OpError, ValueError, KeyError, TypeError):
    return  # no group was being published
  if not any(os.path.basename(f) in _format.SAVED_MODEL_FILES
             for f in filesystem.walk_files(staging_path)):
    return
  for name in names:
    published = _versions.version_dir(filesystem.join(export_dir_base, name),
                                      version)
    if filesystem.exists(published):
      logging.warning('Unpublishing %s: its exporter died before publishing '
                      'the rest of its group %s', published, names)
      _unpublish(published, filesystem.join(staging_path, name))


def _unpublish(published: str, staged: str) -> None:
  if filesystem.is_local(published) and not tf.io.gfile.exists(staged):
    os.rename(filesystem.local_path(published), filesystem.local_path(staged))
    # Durably, before the staging directory is removed: else a crash could
    # keep the member published and lose the journal that names it.
    _durable.sync_dirs([os.path.dirname(filesystem.local_path(published)),
                        os.path.dirname(filesystem.local_path(staged))])
    return
  for proto in _format.SAVED_MODEL_FILES:
    with contextlib.suppress(tf.errors.NotFoundError):
      tf.io.gfile.remove(filesystem.join(published, proto))
  tf.io.gfile.rmtree(published)
