"""Telling the shared and the per-mode export layouts apart.

Shared layout (`export_all_saved_models`), one SavedModel with a MetaGraphDef
per mode:

    <export_dir_base>/<version>/saved_model.pb
    <export_dir>/saved_model.pb                      (with export_dir=)

Per-mode layout (`export_saved_models_per_mode`), one SavedModel per mode,
every mode of one export under the same version number:

    <export_dir_base>/<mode dir>/<version>/saved_model.pb
    <export_dir>/<mode dir>/saved_model.pb           (with export_dir=)

where the mode directories are `MODE_DIRS`: `train`, `eval` and `serve`, so
that `<export_dir_base>/serve` can be handed as-is to a model server that
polls a directory for numbered versions.

An export may carry its TF2 form (`MultiModeExporter(tf2=True)`, the
result of `convert_to_tf2`) in `TF2_FORM_DIR` inside the version directory:
`<version>/tf2/` in the shared layout, and in the per-mode layout inside the
mode directory published last (`serve/<version>/tf2/` when PREDICT is
exported). SavedModel loaders, model servers and the version scanner do not
look into it, and it is published and deleted with its export.

`find_layout` is the one function the exporter, the CLI and the verifier call
to find out which layout a path holds and where its SavedModels are.
"""

import dataclasses
from typing import Dict, Mapping, Optional, Tuple

import tensorflow as tf

from multimode_export import _filesystem as filesystem
from multimode_export import errors
from multimode_export.graph import _modes as modes_lib
from multimode_export.publishing import _versions
from multimode_export.saved_model import _format

ModeKeys = tf.estimator.ModeKeys

# Mode -> directory name in the per-mode layout. PREDICT is `serve` (its
# default tag), not 'infer' (its ModeKeys value), because that is the name
# model servers and users expect.
MODE_DIRS: Dict[str, str] = {
    ModeKeys.TRAIN: 'train',
    ModeKeys.EVAL: 'eval',
    ModeKeys.PREDICT: 'serve',
}
_DIR_MODES = {d: m for m, d in MODE_DIRS.items()}

SHARED = 'shared'
# The TF2 form of an export, inside its (last mode's) SavedModel directory.
TF2_FORM_DIR = 'tf2'
PER_MODE = 'per_mode'


def _children(path: str):
  if not tf.io.gfile.isdir(path):
    return []
  return sorted(n.rstrip('/') for n in tf.io.gfile.listdir(path))


def numbered_versions(path: str) -> Tuple[int, ...]:
  """Versions under `path` that hold a complete SavedModel, ascending."""
  return tuple(_versions.complete_versions(path))


@dataclasses.dataclass(frozen=True)
class Layout:
  """What an export path holds.

  Attributes:
    kind: `SHARED` or `PER_MODE`.
    path: the inspected path.
    versions: published version numbers, ascending (for the per-mode layout,
      over every mode directory); empty when `path` is itself one export (a
      SavedModel, or a per-mode export written with `export_dir=`).
    mode_dirs: per-mode layout only: mode -> its directory, for the mode
      directories that exist; empty for the shared layout.
  """
  kind: str
  path: str
  versions: Tuple[int, ...]
  mode_dirs: Mapping[str, str]

  def newest_complete_version(self) -> Optional[int]:
    """The newest version every mode directory holds, else the newest one.

    A per-mode export publishes its modes one after the other, so the newest
    version may still lack a mode; the shared layout has no such gap. None
    when `versions` is empty.
    """
    if not self.versions:
      return None
    if self.kind == PER_MODE:
      for version in reversed(self.versions):
        if len(self.saved_model_dirs(version)) == len(self.mode_dirs):
          return version
    return self.versions[-1]

  def saved_model_dirs(self, version: Optional[int] = None) -> Dict[str, str]:
    """The SavedModel directories of one export.

    Args:
      version: a number from `versions`; by default the newest. Ignored when
        `versions` is empty.

    Returns:
      Per-mode layout: mode -> SavedModel directory, for each mode that has
      this version. Shared layout: `{SHARED: directory}`.

    Raises:
      ValueError: `version` is not one of `versions`.
    """
    if self.versions:
      if version is None:
        version = self.versions[-1]
      elif version not in self.versions:
        raise ValueError(f'version: expected one of {list(self.versions)}, '
                         f'got {version!r}')
    else:
      version = None
    if self.kind == SHARED:
      return {SHARED: self.path if version is None else
              filesystem.join(self.path, str(version))}
    out = {}
    for mode, mode_dir in self.mode_dirs.items():
      path = mode_dir if version is None else filesystem.join(mode_dir,
                                                              str(version))
      if _format.is_saved_model(path):
        out[mode] = path
    return out


def find_layout(path: filesystem.PathLike) -> Layout:
  """Tells whether `path` holds a shared or a per-mode export, and where.

  `path` may be a SavedModel directory, a base of numbered versions, a
  per-mode base (`<base>/{train,eval,serve}/<version>/`) or a per-mode
  export written with `export_dir=` (`<dir>/{train,eval,serve}/`).

  Args:
    path: str, bytes or os.PathLike.

  Returns:
    A Layout.

  Raises:
    errors.NotASavedModelError: `path` holds no export, or both layouts.
  """
  path = filesystem.as_str(path)
  try:
    path = filesystem.dir_path(path)
  except ValueError as e:  # a URL with no bucket
    raise errors.NotASavedModelError(path, str(e)) from e
  if _format.is_saved_model(path):
    return Layout(SHARED, path, (), {})
  children = _children(path)
  shared_versions = numbered_versions(path)
  mode_dirs = {}
  for mode in modes_lib.MODE_ORDER:
    if MODE_DIRS[mode] in children:
      child = filesystem.join(path, MODE_DIRS[mode])
      if tf.io.gfile.isdir(child):
        mode_dirs[mode] = child
  if shared_versions and mode_dirs:
    raise errors.NotASavedModelError(
        path, f'it holds both numbered shared exports {list(shared_versions)} '
        f'and per-mode directories {sorted(MODE_DIRS[m] for m in mode_dirs)}; '
        'use one directory per layout')
  if shared_versions:
    return Layout(SHARED, path, shared_versions, {})
  if not mode_dirs:
    raise errors.NotASavedModelError(
        path, 'it holds no export: expected a saved_model.pb, numbered '
        f'versions, or mode directories {sorted(_DIR_MODES)}')
  if all(_format.is_saved_model(d) for d in mode_dirs.values()):
    return Layout(PER_MODE, path, (), mode_dirs)
  versions = set()
  for mode_dir in mode_dirs.values():
    versions.update(numbered_versions(mode_dir))
  return Layout(PER_MODE, path, tuple(sorted(versions)), mode_dirs)


def is_fixed_export(path: str) -> bool:
  """Whether `path` is an export written with `export_dir=` (either layout).

  Such a directory may be replaced by `overwrite=True`: it is a SavedModel,
  or every entry in it is a mode directory holding a SavedModel.
  """
  if _format.is_saved_model(path):
    return True
  children = [c for c in _children(path)]
  return bool(children) and all(
      c in _DIR_MODES and _format.is_saved_model(filesystem.join(path, c))
      for c in children)


def newest_export(path: filesystem.PathLike) -> Tuple[Layout, Optional[int], Dict[str, str]]:
  """Where the SavedModels of the newest export under `path` are.

  What `inspect` and `verify` look at for a path that is not itself a
  SavedModel: for a base of numbered versions, the newest; for a per-mode
  base, the newest version that every mode directory holds
  (`Layout.newest_complete_version`); for a per-mode `export_dir=`, its mode
  directories.

  Args:
    path: str, bytes or os.PathLike, as for `find_layout`.

  Returns:
    (layout, version or None, the `Layout.saved_model_dirs` of that version).

  Raises:
    errors.NotASavedModelError: `path` holds no export, or both layouts.
  """
  found = find_layout(path)
  version = found.newest_complete_version()
  return found, version, found.saved_model_dirs(version)


def describe(found: Layout, version: Optional[int]) -> str:
  """One line saying which layout `found` is and which export is chosen."""
  if found.kind == SHARED:
    if version is None:
      return 'shared layout: one SavedModel'
    return (f'shared layout: versions {list(found.versions)}, newest '
            f'{version}')
  dirs = ', '.join(MODE_DIRS[m] for m in found.mode_dirs)
  if version is None:
    return f'per-mode layout (export_dir=): mode directories {dirs}'
  return (f'per-mode layout: versions {list(found.versions)}, newest complete '
          f'{version}; mode directories {dirs}')
