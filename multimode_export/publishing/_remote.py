"""Publishing on filesystems without an atomic directory rename.

`gs://`, `s3://`, `hdfs://`, `ram://`: renaming a directory there is a copy
of each object, or not supported. The staging directory is written
completely, then its files are renamed one by one into the version
directory, `saved_model.pb` (or `.pbtxt`) last: a poller that treats a
version as ready once `saved_model.pb` exists never sees a partial export.
Each file is renamed without overwriting: a file already there means a
concurrent exporter took that version, so this one moves its files back to
staging and takes the next number. If a move fails, the files already moved
are moved back. (On S3 a rename is a check-then-copy: two exporters that
reach one version within the same instant can both copy the same file, so
one exporter per base there; docs/object-stores.md.) There is no lock:
leftover staging directories are removed once older than
`STALE_AFTER_SECONDS`, their age read from their name.
"""

import contextlib
import os
import time
from typing import Callable, Iterable, List, Sequence, Tuple

import tensorflow as tf
from absl import logging

from multimode_export import _filesystem as filesystem
from multimode_export import errors
from multimode_export.publishing import _versions
from multimode_export.saved_model import _format

# Remote staging directories carry no lock; they are stale after this long.
STALE_AFTER_SECONDS = 24 * 3600.0
# Retries when a concurrent exporter claims the version we picked.
_MAX_ATTEMPTS = 100


def create_staging(export_dir_base: str, path: str) -> None:
  """Creates the staging directory `path` (no lock: none exists remotely)."""
  del export_dir_base  # the staging path lies in it already
  tf.io.gfile.makedirs(path)


def _protos_last(files: Iterable[str]) -> List[str]:
  files = sorted(files)
  protos = [f for f in files if os.path.basename(f) in _format.SAVED_MODEL_FILES]
  return [f for f in files if f not in protos] + protos


def _move(src: str, src_root: str, dst_root: str) -> None:
  dst = filesystem.join(dst_root, src[len(src_root):])
  tf.io.gfile.makedirs(filesystem.parent(dst))
  try:
    tf.io.gfile.rename(src, dst, overwrite=False)
  except tf.errors.AlreadyExistsError:
    raise
  except tf.errors.OpError:
    if tf.io.gfile.exists(dst) and not tf.io.gfile.exists(src):
      return  # the rename happened although it reported an error
    raise


def publish_version(path: str, export_dir_base: str) -> str:
  """Moves the staged files into the next version, protos last; returns it.

  Every file is renamed without overwriting. A file that already exists in
  the version means a concurrent exporter took that number: the files moved
  so far go back to staging and the next number is tried. Only files this
  export moved are ever removed or moved back.
  """
  order = _protos_last(filesystem.walk_files(path))
  if not order:
    raise errors.PublishError(f'nothing staged in {path!r}', export_dir_base)
  for _ in range(_MAX_ATTEMPTS):
    final = _versions.version_dir(
        export_dir_base, _versions.next_version([export_dir_base]))
    existed = tf.io.gfile.exists(final)
    moved = []
    try:
      for src in order:
        _move(src, path, final)
        moved.append(src)
    except tf.errors.AlreadyExistsError:
      _move_back(moved, path, final, existed)
      continue  # a concurrent exporter claimed this version first
    except BaseException:
      _move_back(moved, path, final, existed)
      raise
    _remove_quietly(path)  # what is left of it: empty directories, if any
    return final
  raise errors.PublishError(
      f'could not claim a new version under {export_dir_base!r} after '
      f'{_MAX_ATTEMPTS} attempts', export_dir_base)


def _move_back(moved: Sequence[str], path: str, final: str,
               existed: bool) -> None:
  """Returns this export's files from `final` to staging, newest first."""
  for src in reversed(moved):
    dst = filesystem.join(final, src[len(path):])
    try:
      tf.io.gfile.rename(dst, src, overwrite=False)
    except tf.errors.OpError as e:
      logging.warning('Could not move %s back to %s: %s', dst, src, e)
  if not existed:
    _remove_quietly(final, only_if_no_files=True)


def move_dirs(moves: Sequence[Tuple[str, str]]) -> None:
  """Moves every file of each (source dir, new dir) pair, file by file.

  Every SavedModel proto is moved after every other file of every pair, in
  the order of `moves`, so a reader that waits for `saved_model.pb` never
  sees a partial directory. On failure the moved files are moved back and
  the new directories removed.
  """
  files, protos = [], []
  for src_dir, dst_dir in moves:
    for src in filesystem.walk_files(src_dir):
      pair = (src, filesystem.join(dst_dir, src[len(src_dir):]))
      (protos if os.path.basename(src) in _format.SAVED_MODEL_FILES else
       files).append(pair)
  created = [d for _, dst_dir in moves for d in filesystem.missing_dirs(dst_dir)]
  done = []
  try:
    for src, dst in files + protos:
      tf.io.gfile.makedirs(filesystem.parent(dst))
      tf.io.gfile.rename(src, dst)
      done.append((src, dst))
  except (OSError, tf.errors.OpError):
    for src, dst in reversed(done):
      tf.io.gfile.rename(dst, src)
    for _, dst_dir in moves:
      with contextlib.suppress(OSError, tf.errors.OpError):
        tf.io.gfile.rmtree(dst_dir)
    _remove_empty(created)
    raise


def remove(path: str, created: Sequence[str]) -> None:
  """Removes a staging directory and the now-empty directories in `created`."""
  if tf.io.gfile.exists(path):
    tf.io.gfile.rmtree(path)
  _remove_empty(created)


def _remove_empty(directories: Sequence[str]) -> None:
  for directory in directories:  # innermost first
    with contextlib.suppress(OSError, tf.errors.OpError):
      if tf.io.gfile.isdir(directory) and not tf.io.gfile.listdir(directory):
        tf.io.gfile.rmtree(directory)


def _remove_quietly(path: str, only_if_no_files: bool = False) -> None:
  try:
    if not tf.io.gfile.exists(path):
      return
    if only_if_no_files and filesystem.walk_files(path):
      return
    tf.io.gfile.rmtree(path)
  except tf.errors.OpError as e:
    logging.warning('Could not remove %s: %s', path, e)


def remove_stale(export_dir_base: str, prefix: str,
                 roll_back: Callable[[str, str], None]) -> List[str]:
  """Removes staging directories older than STALE_AFTER_SECONDS."""
  removed = []
  for name in tf.io.gfile.listdir(export_dir_base):
    name = name.rstrip('/')
    path = filesystem.join(export_dir_base, name)
    if name.startswith(prefix) and _is_stale(name):
      logging.info('Removing staging directory of a dead export: %s', path)
      try:
        roll_back(export_dir_base, path)
        tf.io.gfile.rmtree(path)
        removed.append(path)
      except tf.errors.OpError as e:
        logging.warning('Could not remove %s: %s', path, e)
  return removed


def _is_stale(name: str) -> bool:
  started = name.rsplit('-', 1)[-1]
  return started.isdigit() and time.time() - int(started) > STALE_AFTER_SECONDS
