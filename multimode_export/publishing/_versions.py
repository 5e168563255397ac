"""Version numbers of published exports: what counts as one, and the next.

A published export is a child of its base whose name is all digits (what
model servers poll for). A version number is the Unix time of the export,
or one more than the newest existing version if that is larger, so numbers
always increase and the highest is the newest. Every scanner of versions in
the package (publishing, layouts, garbage collection) uses this module.
"""

import time
from typing import Iterable, List

from multimode_export import _filesystem as filesystem
from multimode_export.saved_model import _format


def is_version(name: str) -> bool:
  """Whether a directory entry's name is a version number."""
  return name.rstrip('/').isdigit()


def version_numbers(export_dir_base: str) -> List[int]:
  """Every version number under `export_dir_base`, published or not, ascending.

  Includes versions still being published file by file on a remote
  filesystem (see `complete_versions` for those a reader may use).
  """
  names = filesystem.listdir(export_dir_base)
  return sorted(int(n.rstrip('/')) for n in names if is_version(n))


def complete_versions(export_dir_base: str) -> List[int]:
  """The versions under `export_dir_base` holding a SavedModel proto.

  A version is complete once its `saved_model.pb` exists: publishing moves
  that file last on every filesystem.
  """
  return [v for v in version_numbers(export_dir_base)
          if _format.is_saved_model(version_dir(export_dir_base, v))]


def version_dir(export_dir_base: str, version: int) -> str:
  """The directory of `version` under `export_dir_base`."""
  return filesystem.join(export_dir_base, str(version))


def next_version(export_dir_bases: Iterable[str]) -> int:
  """The version number for a new export over one or more bases.

  Args:
    export_dir_bases: the directories whose versions the new one must
      exceed (one base; or every mode directory of a per-mode base, so all
      modes of one export share one number).

  Returns:
    The current Unix time, or one more than the newest version if larger.
  """
  newest = max((v for base in export_dir_bases for v in version_numbers(base)),
               default=-1)
  return max(int(time.time()), newest + 1)
