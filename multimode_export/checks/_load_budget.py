"""Whether loading a tag set fits `verify`'s memory budget.

Loading a tag set restores every variable its saver names into memory, so
its size is known from metadata before anything is loaded: the graph's
restore op names the checkpoint keys (`saver_spec.required_variables`) and
the export's index their sizes. A tag set over the budget is not loaded;
its variables' bytes are still checked against their crc32c by the
whole-export `variables` check, which reads through a bounded buffer.

The tag sets that are loaded are loaded in a child process (`_sandbox`)
under the budgets defined here: a time limit per check (`timeout`) and a
memory cap derived from `max_load_gib` (`memory_cap`).
"""

from typing import Optional

import tensorflow as tf

from multimode_export.graph import _saver_spec as saver_spec
from multimode_export.saved_model import _format
from multimode_export.variables import _bundle_index as bundle_index

GIB = 1 << 30
DEFAULT_TIMEOUT = 300.0  # seconds per check that loads or runs a tag set
# The loading process's memory cap: TensorFlow itself and the graphs, plus
# the variables up to three times (TF1 load, TF2 load, a train step's
# updates), before the allocator returns what a finished load freed.
_BASE_CAP = 2 * GIB
_COPIES = 3
_DEFAULT_CAP_FRACTION = 0.8  # of the machine's memory, without max_load_gib


def check_budget(max_load_gib: Optional[float]) -> None:
  """Raises ValueError unless `max_load_gib` is None or a positive number."""
  if max_load_gib is None:
    return
  if (isinstance(max_load_gib, bool) or
      not isinstance(max_load_gib, (int, float)) or not max_load_gib > 0):
    raise ValueError('max_load_gib: expected a positive number of GiB or '
                     f'None, got {max_load_gib!r}')


def check_timeout(timeout: float) -> None:
  """Raises ValueError unless `timeout` is a positive number of seconds."""
  if (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or
      not timeout > 0):
    raise ValueError(f'timeout: expected a positive number of seconds, got '
                     f'{timeout!r}')


def _machine_memory() -> Optional[int]:
  try:
    with open('/proc/meminfo', 'rb') as f:
      for line in f:
        if line.startswith(b'MemTotal:'):
          return int(line.split()[1]) * 1024
  except (OSError, ValueError, IndexError):
    pass
  return None


def memory_cap(max_load_gib: Optional[float]) -> Optional[int]:
  """Bytes the process loading tag sets may hold; None: not capped.

  With `max_load_gib`: 2 GiB plus three times `max_load_gib`; without it,
  80% of the machine's memory (so a runaway graph is stopped before the
  machine's OOM killer picks a process), or None where that is unknown.
  """
  if max_load_gib is not None:
    return int(_BASE_CAP + _COPIES * max_load_gib * GIB)
  total = _machine_memory()
  return int(total * _DEFAULT_CAP_FRACTION) if total else None


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
