"""Writing the converted model: the step that produces `variables/`.

`SaveRequest` holds everything a writer needs. Two writers produce the same
files (`tests/tf2_without_loading_test.py` compares them):

- `save_without_loading`, the default: the variables keep no value (the
  ones `wrap_function` lifts have none); only the main ops run (tables,
  metric accumulators: the values a TF2 checkpoint stores beside the
  variables). `saved_model/_without_values` then has `tf.saved_model.save`
  write `saved_model.pb` and a checkpoint without the variables' values, and
  adds each variable's key pointing at its source checkpoint entry's
  extents (the data shards linked or copied, never read).
- `load_and_save`, the reference: it restores every variable's value from
  the source checkpoint into memory, runs the main ops, and lets
  `tf.saved_model.save` write everything. Its memory and time grow with the
  checkpoint (benchmarks/convert_cost.py measures both on a 3 GiB export).

Another writer can take their place: `_convert.convert_with(..., save_fn)`.
"""

import dataclasses
from typing import Any, Callable, Dict, List, Mapping, Tuple

import tensorflow as tf

from multimode_export import _filesystem as filesystem
from multimode_export import errors
from multimode_export.saved_model import _format
from multimode_export.saved_model import _without_values as without_values
from multimode_export.tf2 import _functions
from multimode_export.tf2 import _graph_merge
from multimode_export.tf2 import _source
from multimode_export.tf2 import _variable_map


@dataclasses.dataclass(frozen=True)
class SaveRequest:
  """What to write, and where.

  Attributes:
    root: the object to save (`_model.build_root`).
    signatures: signature key -> function, for `tf.saved_model.save`.
    path: the (staging) directory to write the SavedModel into.
    source: the export being converted.
    merged: its graphs imported into one; the variables are
      `merged.graph.variables`, each lifted from a carrier variable node.
    plan: for each carrier variable node, its source checkpoint entry.
    functions: the functions, initializers included.
  """
  root: Any
  signatures: Mapping[str, Any]
  path: str
  source: _source.Source
  merged: _graph_merge.MergedGraph
  plan: _variable_map.VariablePlan
  functions: _functions.Functions


SaveFn = Callable[[SaveRequest], None]


def load_and_save(request: SaveRequest) -> None:
  """Restores the values into memory and saves with `tf.saved_model.save`."""
  _functions.restore_from_source(request.source, request.merged)
  _functions.run_initializers(request.functions)
  tf.saved_model.save(request.root, request.path,
                      signatures=dict(request.signatures))


def _carrier_variables(request: SaveRequest) -> Mapping[str, List[Any]]:
  """Variable node name -> the lifted variables of that name.

  `wrap_function` lifts each variable under its node's name, and the carrier
  mode is imported without a name scope.
  """
  variables: Dict[str, List[Any]] = {}
  for variable in request.merged.graph.variables:
    variables.setdefault(variable.name.rsplit(':', 1)[0], []).append(variable)
  return variables


def _sources(request: SaveRequest) -> List[Tuple[Any, Tuple[str, str]]]:
  """(lifted variable, (checkpoint key, slice spec)) per carrier variable."""
  variables = _carrier_variables(request)
  entries = request.plan.checkpoint_entries
  unmatched = sorted(n for n in entries if len(variables.get(n, ())) != 1)
  if unmatched:
    raise errors.ConversionError(
        request.source.export_dir, unmatched[0],
        f'the carrier restores variable nodes {unmatched} that the merged '
        'graph does not hold as exactly one variable each')
  return [(variables[node][0], entry)
          for node, entry in sorted(entries.items())]


def save_without_loading(request: SaveRequest) -> None:
  """Saves with every variable's value indexed from the source, not read.

  Raises:
    errors.ConversionError: a variable has no source entry, or its entry is
      of another dtype or shape, or is not stored as one tensor (the
      message of `without_values.WithoutValuesError` says which).
    errors.PublishError: reading the source's files or writing the new ones
      failed (e.g. a data shard of the source is missing).
  """
  sources = _sources(request)
  _functions.run_initializers(request.functions)
  source_prefix = _format.variables_prefix(request.source.primary.export_dir)
  try:
    without_values.save_without_values(
        request.root, request.path, source_prefix, sources,
        signatures=dict(request.signatures))
  except without_values.WithoutValuesError as e:
    raise errors.ConversionError(request.source.export_dir, source_prefix,
                                 str(e)) from e
  except tf.errors.OpError as e:
    raise errors.PublishError(
        f'writing the TF2 SavedModel over the checkpoint {source_prefix!r} '
        f'failed: {type(e).__name__}: {e.message}',
        filesystem.parent(request.path) or request.path) from e
