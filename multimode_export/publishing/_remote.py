"""Publishing on filesystems without an atomic directory rename.

`gs://`, `s3://`, `hdfs://`, `ram://`: renaming a directory there is a copy
of each object, or not supported. The staging directory is written
completely, then a version number is claimed, then the staged files are
renamed one by one into the version directory, `saved_model.pb` (or
`.pbtxt`) last: a poller that treats a version as ready once
`saved_model.pb` exists never sees a partial export. If a move fails, the
files already moved are moved back. There is no lock: leftover staging
directories and claims are removed once older than `STALE_AFTER_SECONDS`,
their age read from their name.

Claiming a version (the store needs no conditional write, only
linearizable single-object writes and listings, which S3 and GCS give):

1. List the claims directory `<base>/CLAIMS_DIR/`; pick N above every
   version and every live claim.
2. Write an empty claim object `CLAIMS_DIR/<N>.<attempt id>` (the id: the
   staging directory's name, unique, ending with its creation time).
3. List `CLAIMS_DIR/` again. If another claim for N is listed, delete ours
   and try a higher number after a random pause (both claimants may yield;
   one of them wins a later round).
4. Alone: check that `<base>/<N>` holds nothing (a writer that does not
   claim, e.g. the stock export, or a claimant that finished and removed
   its claim); only then move the files in. The claim is deleted once the
   version is complete (or rolled back).

Why at most one attempt can see itself alone for N: say A and B both claim
N. Each writes its claim (W) and only once that write completed lists (L).
If A's listing L_A does not show W_B, L_A took effect before W_B; W_A took
effect before L_A began, so W_A precedes L_B and B's listing shows A's
claim. B's listing misses it only if A deleted the claim first, which A
does after its files are in `<base>/<N>` (or moved back out): B's check of
`<base>/<N>`, after L_B, then finds them. So a claimed version receives the
files of exactly one claimant; the per-file existence check of a rename is
no longer needed (files are renamed with `overwrite=True`, saving two
requests per file on S3): it never excluded anything the claim does not,
and it cannot exclude a non-claiming writer either (a check-then-copy).

Claims live under a name that is not all digits, so no poller takes them
(or the claims directory) for a version. Not excluded: a writer that does
not claim (stock) creating `<base>/<N>` after our step 4.
"""

import contextlib
import os
import random
import time
from typing import (Callable, Iterable, Iterator, List, Optional, Sequence,
                    Tuple)

import tensorflow as tf
from absl import logging

from multimode_export import _filesystem as filesystem
from multimode_export import errors
from multimode_export.publishing import _versions
from multimode_export.saved_model import _format

# Remote staging directories and claims carry no lock; stale after this long.
STALE_AFTER_SECONDS = 24 * 3600.0
# Where version claims live, under the base (not all digits: no version).
CLAIMS_DIR = '.multimode-export-claims'
# Retries when a concurrent exporter claims the version we picked.
_MAX_ATTEMPTS = 100
# Pause before the next claim after yielding one: random in [0, this * try).
_YIELD_SECONDS = 0.05


def create_staging(export_dir_base: str, path: str) -> None:
  """Creates the staging directory `path` (no lock: none exists remotely)."""
  del export_dir_base  # the staging path lies in it already
  filesystem.makedirs(path)


def _protos_last(files: Iterable[str]) -> List[str]:
  files = sorted(files)
  protos = [f for f in files if os.path.basename(f) in _format.SAVED_MODEL_FILES]
  return [f for f in files if f not in protos] + protos


def _move(src: str, src_root: str, dst_root: str, made: set) -> None:
  """Renames `src` to the same place under `dst_root` (claimed: overwrites).

  `made`: directories already created by this move sequence, not created
  again (no directory is created at all on object stores).
  """
  dst = filesystem.join(dst_root, src[len(src_root):])
  directory = filesystem.parent(dst)
  if not filesystem.is_object_store(dst) and directory not in made:
    tf.io.gfile.makedirs(directory)
    made.add(directory)
  try:
    tf.io.gfile.rename(src, dst, overwrite=True)
  except tf.errors.OpError:
    if tf.io.gfile.exists(dst) and not tf.io.gfile.exists(src):
      return  # the rename happened although it reported an error
    raise


def _claim_number(name: str) -> Optional[int]:
  number = name.split('.', 1)[0]
  return int(number) if number.isdigit() else None


def _live_claims(claims_dir: str) -> List[str]:
  """The claim names in `claims_dir`; stale ones are removed and left out."""
  names = [n.rstrip('/') for n in filesystem.listdir(claims_dir)]
  live = []
  for name in names:
    if _is_stale(name):
      logging.info('Removing the version claim of a dead export: %s', name)
      _unclaim(filesystem.join(claims_dir, name))
    else:
      live.append(name)
  return live


def _unclaim(claim: str) -> None:
  """Deletes a claim object (retried once; a claim left over goes stale)."""
  for retry in (True, False):
    try:
      tf.io.gfile.remove(claim)
      return
    except tf.errors.NotFoundError:
      return
    except tf.errors.OpError as e:
      if not retry:
        logging.warning('Could not remove the claim %s: %s', claim, e)


def _claim(export_dir_base: str, version_bases: Sequence[str], attempt: str,
           floor: int) -> Tuple[Optional[str], int]:
  """Claims a version number >= `floor` (see the module docstring).

  Args:
    export_dir_base: where the claims live.
    version_bases: the directories whose versions the number must exceed
      and whose `<N>` must hold nothing (a per-mode group: every mode's).
    attempt: this export's unique name.
    floor: the lowest number to take.

  Returns:
    (the claim object, the version) if this attempt alone claimed a free
    version; else (None, the lowest number the next attempt may take).
  """
  claims_dir = filesystem.join(export_dir_base, CLAIMS_DIR)
  claimed = [_claim_number(n) for n in _live_claims(claims_dir)]
  version = max([floor, _versions.next_version(version_bases)] +
                [n + 1 for n in claimed if n is not None])
  name = f'{version}.{attempt}'
  claim = filesystem.join(claims_dir, name)
  try:
    with tf.io.gfile.GFile(claim, 'wb') as f:
      f.write(b'')
    rivals = [n for n in _live_claims(claims_dir)
              if n != name and _claim_number(n) == version]
    taken = rivals or any(  # a listing: one request, and right on GCS
        filesystem.listdir(_versions.version_dir(b, version))
        for b in version_bases)
  except BaseException:
    _unclaim(claim)
    raise
  if taken:
    _unclaim(claim)
    return None, version + 1
  return claim, version


@contextlib.contextmanager
def claimed_version(export_dir_base: str, version_bases: Sequence[str],
                    staging_path: str) -> Iterator[int]:
  """Claims a free version number for the body; the claim goes at its end.

  Args:
    export_dir_base: where the claims live.
    version_bases: the directories the version is published in.
    staging_path: the export's staging directory (its unique name, which
      ends with its creation time, names the claim: a claim goes stale with
      its staging directory).

  Yields:
    The version number, which no other claiming exporter can hold.

  Raises:
    errors.PublishError: no number could be claimed in `_MAX_ATTEMPTS`.
  """
  attempt = staging_path.rstrip('/').rsplit('/', 1)[-1].lstrip('.')
  floor = 0
  for tries in range(1, _MAX_ATTEMPTS + 1):
    claim, version = _claim(export_dir_base, version_bases, attempt, floor)
    if claim is not None:
      break
    floor = version
    time.sleep(random.uniform(0, _YIELD_SECONDS * tries))
  else:
    raise errors.PublishError(
        f'could not claim a new version under {export_dir_base!r} after '
        f'{_MAX_ATTEMPTS} attempts', export_dir_base)
  try:
    yield version
  finally:
    _unclaim(claim)


def publish_version(path: str, export_dir_base: str,
                    durable: bool = False) -> str:
  """Claims the next version, moves the staged files into it, protos last.

  Returns the version directory. Only files this export moved are ever
  removed or moved back; the claim is deleted in every case. `durable` is
  ignored: on an object store a completed write is durable, and `ram://`
  lives in memory (see `_durable`).
  """
  order = _protos_last(filesystem.walk_files(path))
  if not order:
    raise errors.PublishError(f'nothing staged in {path!r}', export_dir_base)
  with claimed_version(export_dir_base, [export_dir_base], path) as version:
    final = _versions.version_dir(export_dir_base, version)
    moved, made = [], set()
    try:
      for src in order:
        _move(src, path, final, made)
        moved.append(src)
    except BaseException:
      _move_back(moved, path, final)
      raise
  if not filesystem.is_object_store(path):
    _remove_quietly(path)  # what is left of it: empty directories, if any
  return final


def _move_back(moved: Sequence[str], path: str, final: str) -> None:
  """Returns this export's files from `final` to staging, newest first.

  The version was claimed and empty before: whatever is left of it is ours.
  """
  for src in reversed(moved):
    dst = filesystem.join(final, src[len(path):])
    try:
      tf.io.gfile.rename(dst, src, overwrite=False)
    except tf.errors.OpError as e:
      logging.warning('Could not move %s back to %s: %s', dst, src, e)
  _remove_quietly(final, only_if_no_files=True)


def move_dirs(moves: Sequence[Tuple[str, str]], durable: bool = False
              ) -> None:
  """Moves every file of each (source dir, new dir) pair, file by file.

  Every SavedModel proto is moved after every other file of every pair, in
  the order of `moves`, so a reader that waits for `saved_model.pb` never
  sees a partial directory. On failure the moved files are moved back and
  the new directories removed. `durable` is ignored, as in
  `publish_version`.
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
      filesystem.makedirs(filesystem.parent(dst))
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
  if filesystem.exists(path):
    tf.io.gfile.rmtree(path)
  _remove_empty(created)


def _remove_empty(directories: Sequence[str]) -> None:
  for directory in directories:  # innermost first
    with contextlib.suppress(OSError, tf.errors.OpError):
      if tf.io.gfile.isdir(directory) and not tf.io.gfile.listdir(directory):
        tf.io.gfile.rmtree(directory)


def _remove_quietly(path: str, only_if_no_files: bool = False) -> None:
  try:
    if not filesystem.exists(path):
      return
    if only_if_no_files and filesystem.walk_files(path):
      return
    tf.io.gfile.rmtree(path)
  except tf.errors.OpError as e:
    logging.warning('Could not remove %s: %s', path, e)


def remove_stale(export_dir_base: str, prefix: str,
                 roll_back: Callable[[str, str], None]) -> List[str]:
  """Removes staging directories older than STALE_AFTER_SECONDS."""
  try:
    names = filesystem.listdir(export_dir_base)
  except tf.errors.FailedPreconditionError:
    return []  # not a directory: refused elsewhere
  removed = []
  for name in names:
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
