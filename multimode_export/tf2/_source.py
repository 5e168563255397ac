"""The export being converted: its modes, their MetaGraphDefs and directories.

Either layout is accepted: a shared export (one SavedModel, a MetaGraphDef per
mode, told apart by their default tags) or a per-mode group (a SavedModel per
mode directory). The newest export is taken from a base of versions, as
`inspect` and `verify` do.
"""

import dataclasses
from typing import Dict, Optional, Tuple

import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2

from multimode_export import _filesystem as filesystem
from multimode_export import errors
from multimode_export.graph import _modes as modes_lib
from multimode_export.publishing import _layout as layout_lib
from multimode_export.saved_model import _format

ModeKeys = tf.estimator.ModeKeys
_MODE_OF_TAGS = {tuple(sorted(tags)): mode
                 for mode, tags in modes_lib.DEFAULT_TAGS.items()}


@dataclasses.dataclass(frozen=True)
class Part:
  """One mode of the source export.

  Attributes:
    mode: a `tf.estimator.ModeKeys` value.
    export_dir: the SavedModel directory holding it (its `variables/`,
      `assets/`).
    meta_graph_def: its MetaGraphDef.
  """
  mode: str
  export_dir: str
  meta_graph_def: meta_graph_pb2.MetaGraphDef


@dataclasses.dataclass(frozen=True)
class Source:
  """The modes of one export, the variables carrier first.

  Attributes:
    export_dir: the path the caller gave.
    parts: one Part per mode, in `MODE_ORDER` (TRAIN, EVAL, PREDICT): the
      first is the carrier, whose variables every other mode shares.
  """
  export_dir: str
  parts: Tuple[Part, ...]

  @property
  def primary(self) -> Part:
    return self.parts[0]

  def part(self, mode: str) -> Optional[Part]:
    return next((p for p in self.parts if p.mode == mode), None)


def _shared_parts(export_dir: str, saved_model_dir: str) -> Dict[str, Part]:
  parts = {}
  for meta_graph_def in _format.read_saved_model(saved_model_dir).meta_graphs:
    tags = _format.tags_of(meta_graph_def)
    mode = _MODE_OF_TAGS.get(tags)
    if mode is None:
      raise errors.ConversionError(
          export_dir, list(tags), 'a MetaGraphDef with a tag set other than '
          f'the default ones {sorted(_MODE_OF_TAGS)}: its mode is unknown')
    parts[mode] = Part(mode, saved_model_dir, meta_graph_def)
  return parts


def _per_mode_parts(export_dir: str, dirs: Dict[str, str]) -> Dict[str, Part]:
  parts = {}
  for mode, saved_model_dir in dirs.items():
    meta_graphs = _format.read_saved_model(saved_model_dir).meta_graphs
    if len(meta_graphs) != 1:
      raise errors.ConversionError(
          export_dir, saved_model_dir,
          f'a mode directory with {len(meta_graphs)} MetaGraphDefs, not 1')
    parts[mode] = Part(mode, saved_model_dir, meta_graphs[0])
  return parts


def read_source(export_dir: filesystem.PathLike) -> Source:
  """Finds the export at `export_dir` and reads its MetaGraphDefs.

  Raises:
    errors.NotASavedModelError: no export there.
    errors.ConversionError: a MetaGraphDef whose mode cannot be told.
  """
  export_dir = filesystem.as_str(export_dir)
  found, _, dirs = layout_lib.newest_export(export_dir)
  if not dirs:
    raise errors.NotASavedModelError(export_dir, 'it holds no complete export')
  if found.kind == layout_lib.SHARED:
    parts = _shared_parts(export_dir, dirs[layout_lib.SHARED])
  else:
    parts = _per_mode_parts(export_dir, dirs)
  ordered = tuple(parts[m] for m in modes_lib.ordered_modes(parts))
  return Source(export_dir, ordered)
