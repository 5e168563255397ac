"""Validating and copying `assets_extra` into `assets.extra/`.

Destinations are confined to `assets.extra/`: absolute paths, `..` escapes
and empty names are refused, and every source must exist, all before
anything is written.
"""

import os
import posixpath
from typing import Dict, Mapping, Optional

import tensorflow as tf

from multimode_export import _filesystem as filesystem
from multimode_export import errors

ASSETS_EXTRA_DIRECTORY = 'assets.extra'


def normalize(assets_extra: Optional[Mapping]) -> Dict[str, str]:
  """Validates `assets_extra` and returns {relative destination: source}.

  Args:
    assets_extra: None, or a mapping of destination paths relative to
      `assets.extra/` (str, bytes or PathLike) to source file paths.

  Returns:
    A new dict with normalized '/'-separated destinations.

  Raises:
    TypeError: if `assets_extra` is not a mapping.
    errors.AssetsExtraError: for an unsafe or duplicate destination, or a
      source that is not an existing file.
  """
  if assets_extra is None:
    return {}
  if not isinstance(assets_extra, Mapping):
    raise TypeError('assets_extra: expected a dict of destination -> source '
                    f'path, got {type(assets_extra).__name__}')
  out: Dict[str, str] = {}
  for dest, source in assets_extra.items():
    try:
      dest_str = filesystem.as_str(dest)
      source_str = filesystem.as_str(source)
    except TypeError as e:
      raise errors.AssetsExtraError(
          f'assets_extra[{dest!r}]: expected path strings, got '
          f'{type(dest).__name__} -> {type(source).__name__}', dest,
          source) from e
    normalized = posixpath.normpath(dest_str.replace(os.sep, '/'))
    if (not dest_str or posixpath.isabs(normalized) or '://' in dest_str or
        normalized == '.' or normalized == '..' or
        normalized.startswith('../')):
      raise errors.AssetsExtraError(
          f'assets_extra: destination {dest!r} must be a relative path inside '
          f"'{ASSETS_EXTRA_DIRECTORY}/' (no absolute path, no '..')", dest,
          source)
    if normalized in out:
      raise errors.AssetsExtraError(
          f'assets_extra: destination {dest!r} is given twice (as '
          f'{normalized!r})', dest, source)
    if not tf.io.gfile.exists(source_str) or tf.io.gfile.isdir(source_str):
      raise errors.AssetsExtraError(
          f'assets_extra[{dest!r}]: source {source_str!r} is not an existing '
          'file', dest, source)
    out[normalized] = source_str
  return out


def path_in(export_dir: str, dest: str) -> str:
  """The path of `dest` in `export_dir/assets.extra/`, its folder made."""
  target = filesystem.join(export_dir, ASSETS_EXTRA_DIRECTORY, dest)
  filesystem.makedirs(posixpath.dirname(target))
  return target


def copy_into(export_dir: str, assets_extra: Dict[str, str]) -> None:
  """Copies normalized `assets_extra` into `export_dir/assets.extra/`."""
  for dest, source in assets_extra.items():
    tf.io.gfile.copy(source, path_in(export_dir, dest))
