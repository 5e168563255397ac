"""Whether loading a tag set fits `verify`'s memory budget.

Loading a tag set restores every variable its saver names into memory, so
its size is known from metadata before anything is loaded: the graph's
restore op names the checkpoint keys (`saver_spec.required_variables`) and
the export's index their sizes. A tag set over the budget is not loaded;
its variables' bytes are still checked against their crc32c by the
whole-export `variables` check, which reads through a bounded buffer.
"""

from typing import Optional

import tensorflow as tf

from multimode_export.graph import _saver_spec as saver_spec
from multimode_export.saved_model import _format
from multimode_export.variables import _bundle_index as bundle_index

GIB = 1 << 30


def check_budget(max_load_gib: Optional[float]) -> None:
  """Raises ValueError unless `max_load_gib` is None or a positive number."""
  if max_load_gib is None:
    return
  if (isinstance(max_load_gib, bool) or
      not isinstance(max_load_gib, (int, float)) or not max_load_gib > 0):
    raise ValueError('max_load_gib: expected a positive number of GiB or '
                     f'None, got {max_load_gib!r}')


def restored_bytes(export_dir: str, meta_graph_def) -> int:
  """Bytes of variable data loading `meta_graph_def` restores.

  A saver that cannot be read from the graph counts as restoring every
  variable of the export.
  """
  if (not meta_graph_def.saver_def.restore_op_name or
      not _format.has_variables(export_dir)):
    return 0
  _, entries = bundle_index.read(
      _format.variables_prefix(export_dir) + '.index')
  sizes = bundle_index.variable_bytes(entries)
  try:
    needed = saver_spec.required_variables(meta_graph_def)
  except saver_spec.UnsupportedSaverError:
    return sum(sizes.values())
  return sum(sizes.get(name, 0) for name in needed)


def over_budget(export_dir: str, meta_graph_def,
                max_load_gib: Optional[float]) -> Optional[str]:
  """Why loading `meta_graph_def` is skipped, or None when it fits."""
  if max_load_gib is None:
    return None
  try:
    size = restored_bytes(export_dir, meta_graph_def)
  except (bundle_index.IndexFormatError, tf.errors.OpError) as e:
    return f'not loaded: its size is unknown, the index is unreadable ({e})'
  if size <= max_load_gib * GIB:
    return None
  return (f'not loaded: its variables take {size / GIB:.2f} GiB, over '
          f'max_load_gib={max_load_gib:g} (their crc32c is checked by '
          '`variables`)')
