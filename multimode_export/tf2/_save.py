"""Writing the converted model: the step that produces `variables/`.

`SaveRequest` holds everything a writer needs; `load_and_save` is the
reference writer: it restores every variable's value from the source
checkpoint into memory, runs the main ops, and lets `tf.saved_model.save`
write `saved_model.pb` and the TF2 checkpoint. A writer that produces the
same files without reading the values (a new bundle index over the source's
data) can take its place: `_convert.convert_with(..., save_fn)`.
"""

import dataclasses
from typing import Any, Callable, Mapping

import tensorflow as tf

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
