"""Garbage collection of an exporter's own numbered exports.

An export directory base (`<model_dir>/export/<name>`) may hold more than one
exporter's versions, a model server's or a user's files, and the hidden
staging directories of exports in progress. Garbage collection therefore
only ever considers a directory that

* has an all-digit name (a published version, see `_versions`), and
* holds a `saved_model.pb` (or `.pbtxt`) whose MetaGraphDefs carry exactly
  the tag sets this exporter writes,

and deletes the oldest of those beyond `keep`. Everything else (other names,
staging directories, versions without a `saved_model.pb` because another
writer is still publishing them file by file, exports with other tag sets)
is never touched. In the per-mode layout (`collect_per_mode`) the same rule
applies in each mode directory, and one version number counts once across
them: its modes are kept or deleted together. All access goes through `tf.io.gfile`, so it works on
`gs://`, `s3://` and `ram://` as on local disks.
"""

import dataclasses
from typing import (AbstractSet, Dict, FrozenSet, Iterable, List, Mapping,
                    Tuple)

import tensorflow as tf
from absl import logging

from multimode_export import _filesystem as filesystem
from multimode_export.publishing import _versions
from multimode_export.saved_model import _format

TagSets = FrozenSet[FrozenSet[str]]


@dataclasses.dataclass(frozen=True)
class GcResult:
  """What one garbage collection did.

  Attributes:
    kept: paths of the exports it considers its own and kept, oldest first.
    deleted: paths it deleted, oldest first.
  """
  kept: tuple
  deleted: tuple


def tag_sets(tags_per_mode: Iterable[Iterable[str]]) -> TagSets:
  """The set of tag sets of an export, from an iterable of tag lists."""
  return frozenset(frozenset(t) for t in tags_per_mode)


def own_versions(export_dir_base: str, own_tag_sets: AbstractSet
                ) -> List[str]:
  """Paths of the exports under the base with exactly `own_tag_sets`.

  Returns:
    Version directory paths, oldest (smallest number) first.
  """
  paths = (_versions.version_dir(export_dir_base, v)
           for v in _versions.version_numbers(export_dir_base))
  return [p for p in paths if _format.read_tag_sets(p) == own_tag_sets]


def collect(export_dir_base: str, own_tag_sets: AbstractSet,
            keep: int) -> GcResult:
  """Deletes all but the newest `keep` of this exporter's exports.

  Args:
    export_dir_base: the directory holding numbered versions.
    own_tag_sets: the tag sets (`tag_sets(...)`) that identify an export as
      this exporter's.
    keep: how many of the newest own exports to keep, at least 1.

  Returns:
    A `GcResult`. A version that cannot be deleted (already gone, or the
    filesystem refuses) is logged and reported as kept.
  """
  own = own_versions(export_dir_base, own_tag_sets)
  deleted, failed = _delete(own[:-keep])
  kept = failed + own[-keep:]
  return GcResult(tuple(sorted(kept, key=_version_of)), tuple(deleted))


def collect_per_mode(export_dir_base: str,
                     own_tag_sets_by_dir: Mapping[str, AbstractSet],
                     keep: int) -> GcResult:
  """`collect` for the per-mode layout: one version spans the mode dirs.

  A version number is this exporter's if some mode directory
  (`<export_dir_base>/<mode dir>`, the keys of `own_tag_sets_by_dir`) holds
  a SavedModel under it with that directory's own tag sets, and none holds
  one with other tag sets (another writer's export). All but
  the newest `keep` such numbers are deleted from every mode directory that
  holds them as its own, in the reverse of the publishing order (the last
  key first, e.g. `serve/` before `train/`), so a model server stops seeing
  a version before its other modes go.

  Args:
    export_dir_base: the per-mode base holding the mode directories.
    own_tag_sets_by_dir: mode directory name -> the tag sets of this
      exporter's SavedModels there, in publishing order.
    keep: how many of the newest own versions to keep, at least 1.

  Returns:
    A `GcResult` of SavedModel paths, by version then mode directory.
  """
  by_version: Dict[int, List[str]] = {}
  foreign = set()
  for name, own_tag_sets in own_tag_sets_by_dir.items():
    mode_dir = filesystem.join(export_dir_base, name)
    for number in _versions.version_numbers(mode_dir):
      path = _versions.version_dir(mode_dir, number)
      found = _format.read_tag_sets(path)
      if found == own_tag_sets:
        by_version.setdefault(number, []).append(path)
      elif found is not None:
        foreign.add(number)
  # A number another writer's SavedModel uses in some mode directory is not
  # this exporter's version, whatever the other mode directories hold.
  numbers = sorted(set(by_version) - foreign)
  doomed = numbers[:-keep]
  kept = [p for n in numbers[-keep:] for p in by_version[n]]
  deleted = []
  for number in doomed:
    gone, failed = _delete(reversed(by_version[number]))
    deleted += gone
    kept += failed
  order = {p: i for i, p in enumerate(
      p for n in numbers for p in by_version[n])}
  return GcResult(tuple(sorted(kept, key=order.get)),
                  tuple(sorted(deleted, key=order.get)))


def _delete(paths: Iterable[str]) -> Tuple[List[str], List[str]]:
  """Deletes each version directory in order; returns (deleted, failed)."""
  deleted, failed = [], []
  for path in paths:
    try:
      _rmtree(path)
      deleted.append(path)
      logging.info('Garbage-collected export %s', path)
    except tf.errors.OpError as e:
      logging.warning('Could not delete old export %s: %s', path, e)
      failed.append(path)
  return deleted, failed


def _rmtree(path: str) -> None:
  """Deletes a version directory; raises OpError if it is still there."""
  try:
    tf.io.gfile.rmtree(path)
  except tf.errors.NotFoundError:
    # Someone else deleted it first, or ram:// listed a phantom child (it
    # lists '10/00000000' when '1000000000' exists) after deleting the real
    # ones. Either way only its absence from the parent's listing counts.
    name = path.rstrip('/').rsplit('/', 1)[1]
    parent = filesystem.parent(path)
    if name in (n.rstrip('/') for n in tf.io.gfile.listdir(parent)):
      raise


def _version_of(path: str) -> int:
  return int(path.rstrip('/').rsplit('/', 1)[-1])
