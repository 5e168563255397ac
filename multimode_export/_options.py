"""The keyword options of every export entry point, defined once.

`export_all_saved_models`, `export_saved_models_per_mode`, the mixin's
methods and `MultiModeExporter` all take these; each builds one frozen
`ExportOptions` from its arguments (`ExportOptions.from_arguments`) and
passes it down, so an option is named, defaulted and documented here and in
the public signatures only.
"""

import dataclasses
from typing import Any, Iterable, Mapping, Optional, Sequence

from multimode_export import _filesystem as filesystem


@dataclasses.dataclass(frozen=True)
class ExportOptions:
  """How to export; see `multimode_export.export_all_saved_models`.

  Attributes:
    assets_extra: destination (relative to `assets.extra/`) -> source file.
    as_text: write `saved_model.pbtxt` instead of `saved_model.pb`.
    checkpoint_path: the checkpoint to export; None for the latest.
    strip_default_attrs: remove default-valued attributes from the graphs.
    allow_links: let `variables/` reflink or hard-link checkpoint files.
    clear_devices: drop device placements.
    tags: mode -> tag set, replacing the default tags.
    verify: verify before publishing.
    export_dir: publish at this fixed directory instead of a version.
    overwrite: with `export_dir`, replace an existing export there.
    raw_signatures: add `raw:<key>` signatures to the serve graph.
    warmup_requests: True or a list of inputs for TF Serving warmup records.
    warmup_signatures: the serving signatures the records warm up.
    tf2: also write the export's TF2 form (`convert_to_tf2`) into it
      before publishing (see `publishing/_layout.TF2_FORM_DIR`).
    durable: on a local filesystem, sync the export before and after
      publishing it, so that it survives a machine crash.
    chunk_bytes: memory bound of a streamed `variables/` (internal tuning,
      not a public argument).
  """
  assets_extra: Optional[Mapping[str, Any]] = None
  as_text: bool = False
  checkpoint_path: Optional[filesystem.PathLike] = None
  strip_default_attrs: bool = False
  allow_links: bool = True
  clear_devices: bool = False
  tags: Optional[Mapping[str, Iterable[str]]] = None
  verify: bool = False
  export_dir: Optional[filesystem.PathLike] = None
  overwrite: bool = False
  raw_signatures: bool = False
  warmup_requests: Any = None
  warmup_signatures: Optional[Sequence[str]] = None
  tf2: bool = False
  durable: bool = True
  chunk_bytes: int = 256 << 20

  @classmethod
  def from_arguments(cls, arguments: Mapping[str, Any]) -> 'ExportOptions':
    """The options among a public function's arguments (its `locals()`)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in arguments.items() if k in names})

  def replace(self, **changes: Any) -> 'ExportOptions':
    """A copy with `changes` applied."""
    return dataclasses.replace(self, **changes)
