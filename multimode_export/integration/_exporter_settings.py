"""`MultiModeExporter`'s own arguments, validated once into frozen settings.

The export options it passes on (`assets_extra`, `as_text`, the keyword
options) are `_options.ExportOptions`; what only the exporter uses (its
name, the receivers, garbage collection, best mode, the layout, where
versions go) is an `ExporterSettings`, built by `settings_from_arguments`,
which raises on the first bad argument.
"""

import dataclasses
import inspect
from typing import Callable, Dict, FrozenSet, Mapping, Optional, Tuple

import tensorflow as tf

from multimode_export import _filesystem as filesystem
from multimode_export import errors
from multimode_export.graph import _modes as modes_lib
from multimode_export.publishing import _gc as export_gc
from multimode_export.publishing import _layout as layout_lib

_COMPARE_ARGS = ('best_eval_result', 'current_eval_result')
TagSets = FrozenSet[FrozenSet[str]]


@dataclasses.dataclass(frozen=True)
class ExporterSettings:
  """What a `MultiModeExporter` does besides exporting; see its arguments.

  Attributes:
    name: the exporter's name.
    receivers: mode -> receiver fn, normalized (a copy of the caller's).
    exports_to_keep: how many exports garbage collection keeps; None: all.
    compare_fn: None (latest mode) or the best-mode comparison.
    event_file_pattern: best mode: event files relative to `model_dir`.
    tags: mode -> tag set (tuples), or None for the default tags.
    layout: `layout_lib.SHARED` or `layout_lib.PER_MODE`.
    reuse_graphs: whether later exports reuse the first export's graphs.
    export_dir_base: where versions are published, or None for the path
      `train_and_evaluate` passes (`<model_dir>/export/<name>`).
  """
  name: str
  receivers: Mapping[str, Callable[[], object]]
  exports_to_keep: Optional[int]
  compare_fn: Optional[Callable[..., bool]]
  event_file_pattern: Optional[str]
  tags: Optional[Mapping[str, Tuple[str, ...]]]
  layout: str
  reuse_graphs: bool
  export_dir_base: Optional[str]

  def base_for(self, export_path: filesystem.PathLike) -> str:
    """Where versions go, given the path `train_and_evaluate` passes."""
    if self.export_dir_base is not None:
      return self.export_dir_base
    return filesystem.as_str(export_path)

  def own_tag_sets(self) -> TagSets:
    """The tag sets of one shared-layout export of this exporter."""
    return export_gc.tag_sets(
        modes_lib.tags_for(m, self.tags) for m in self.receivers)

  def own_tag_sets_by_dir(self) -> Dict[str, TagSets]:
    """Per-mode layout: mode directory -> its one tag set, publishing order."""
    return {layout_lib.MODE_DIRS[m]: export_gc.tag_sets(
        [modes_lib.tags_for(m, self.tags)])
            for m in modes_lib.MODE_ORDER if m in self.receivers}


def check_compare_fn(compare_fn: Callable[..., bool]) -> None:
  """Raises unless `compare_fn` takes (best_eval_result, current_eval_result).

  Raises:
    TypeError: not callable.
    ValueError: other required parameters, or these missing.
  """
  if not callable(compare_fn):
    raise TypeError(f'compare_fn: expected a callable, got {compare_fn!r}')
  try:
    params = inspect.signature(compare_fn).parameters
  except (TypeError, ValueError):
    return  # a builtin or C callable: trust it
  if any(p.kind == p.VAR_KEYWORD for p in params.values()):
    return
  missing = [a for a in _COMPARE_ARGS if a not in params]
  extra = [n for n, p in params.items() if n not in _COMPARE_ARGS and
           p.default is p.empty and p.kind != p.VAR_POSITIONAL]
  if missing or extra:
    raise ValueError(
        f'compare_fn: expected a function of (best_eval_result, '
        f'current_eval_result), got {compare_fn!r} with parameters '
        f'{list(params)}')


def check_export_dir_base(value: object) -> Optional[str]:
  """`export_dir_base` as a directory path, checked without any I/O.

  Returns:
    None for None; else the path as str, without a trailing '/' (a bucket
    root keeps its own: 's3://bucket/').

  Raises:
    TypeError: not str, bytes or os.PathLike.
    ExportDirError: empty, a URL without a bucket, or a scheme no
      filesystem is registered for (e.g. `s3://` before `import
      tensorflow_io`, or a typo).
  """
  if value is None:
    return None
  try:
    path = filesystem.as_str(value)
  except TypeError as e:
    raise TypeError(f'export_dir_base: expected None, str, bytes or '
                    f'os.PathLike, got {value!r}') from e
  if not path:
    raise errors.ExportDirError(
        f'export_dir_base: expected a non-empty path, got {value!r}', path)
  try:
    path = filesystem.dir_path(path)
  except ValueError as e:
    raise errors.ExportDirError(f'export_dir_base: {e}', path) from e
  scheme = path.split('://', 1)[0] if '://' in path else ''
  registered = tf.io.gfile.get_registered_schemes()
  if scheme not in registered:
    raise errors.ExportDirError(
        f'export_dir_base: no TensorFlow filesystem is registered for '
        f'{scheme}:// (registered: '
        f'{sorted(s + "://" for s in registered if s)}), got {path!r}; '
        f"for s3:// and hdfs:// 'import tensorflow_io' first", path)
  return path


def _check_name(name: object) -> None:
  if not isinstance(name, str) or not name:
    raise ValueError(f'name: expected a non-empty str, got {name!r}')
  if '/' in name or name in ('.', '..'):
    raise ValueError(f"name: expected a directory name without '/', got "
                     f'{name!r}')


def _check_scalars(exports_to_keep, layout, event_file_pattern,
                   reuse_graphs) -> None:
  if exports_to_keep is not None and (
      isinstance(exports_to_keep, bool) or
      not isinstance(exports_to_keep, int) or exports_to_keep <= 0):
    raise ValueError(f'exports_to_keep: expected a positive int or None, got '
                     f'{exports_to_keep!r}')
  if layout not in (layout_lib.SHARED, layout_lib.PER_MODE):
    raise ValueError(f"layout: expected 'shared' or 'per_mode', got "
                     f'{layout!r}')
  if event_file_pattern is not None and (
      not isinstance(event_file_pattern, str) or not event_file_pattern):
    raise ValueError(f'event_file_pattern: expected a non-empty str or None, '
                     f'got {event_file_pattern!r}')
  if not isinstance(reuse_graphs, bool):
    raise TypeError(f'reuse_graphs: expected True or False, got '
                    f'{reuse_graphs!r}')


def check_tf2(tf2: object, tags: Optional[Mapping[str, object]]) -> None:
  """Validates `tf2`: a bool; True needs the default tag sets.

  `convert_to_tf2` tells the modes apart by their default tags.
  """
  if not isinstance(tf2, bool):
    raise TypeError(f'tf2: expected True or False, got {tf2!r}')
  if not tf2 or tags is None:
    return
  changed = {mode: sorted(tags[mode]) for mode in sorted(tags)
             if sorted(tags[mode]) != sorted(modes_lib.DEFAULT_TAGS[mode])}
  if changed:
    raise ValueError(
        f'tags: tf2=True needs the default tag sets, which convert_to_tf2 '
        f'tells the modes apart by; got {changed!r}')


def settings_from_arguments(
    name: str,
    input_receiver_fn_map: Mapping[str, Callable[[], object]],
    exports_to_keep: Optional[int],
    compare_fn: Optional[Callable[..., bool]],
    event_file_pattern: Optional[str],
    tags: Optional[Mapping[str, object]],
    layout: str,
    reuse_graphs: bool,
    export_dir_base: Optional[filesystem.PathLike]) -> ExporterSettings:
  """Validates `MultiModeExporter`'s own arguments; see its docstring.

  Raises:
    The errors `MultiModeExporter` documents, naming the argument.
  """
  _check_name(name)
  receivers = modes_lib.normalize_receiver_map(input_receiver_fn_map)
  _check_scalars(exports_to_keep, layout, event_file_pattern, reuse_graphs)
  if compare_fn is not None:
    check_compare_fn(compare_fn)
  modes_lib.check_tags(tags, receivers)
  return ExporterSettings(
      name=name, receivers=receivers, exports_to_keep=exports_to_keep,
      compare_fn=compare_fn, event_file_pattern=event_file_pattern,
      tags=({m: tuple(t) for m, t in tags.items()} if tags is not None
            else None),
      layout=layout, reuse_graphs=reuse_graphs,
      export_dir_base=check_export_dir_base(export_dir_base))
