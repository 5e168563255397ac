"""The object `tf.saved_model.save` writes: functions, variables, assets.

The loaded root has the signatures (`loaded.signatures`), `train_step`,
`eval_update`, `eval_result`, `eval_reset` (for the modes the source has),
`serve(features)` (the default signature with one dict argument, for Keras
3's `TFSMLayer`, which passes a single positional argument), `variables`,
`trainable_variables` and `local_variables` (the metric accumulators). The
main ops run on every load through one `TrackableResource` per mode, with
the model's own `assets/` files.
"""

from typing import Any, Dict, Mapping, Optional

import tensorflow as tf

from multimode_export import _tf_private
from multimode_export.tf2 import _functions
from multimode_export.tf2 import _graph_merge

# Preferred default signatures for `serve`, in order.
_DEFAULT_SIGNATURES = ('serving_default', 'predict')


class _ModeInitializer(tf.saved_model.experimental.TrackableResource):
  """Runs one mode's main op (tables, local variables) when loaded."""

  def __init__(self, function: Any, assets: Mapping[str, tf.saved_model.Asset]):
    super().__init__()
    self._function = function
    self._assets = dict(assets)

  def _create_resource(self):
    # No resource of its own; the loader wants a tensor.
    return tf.constant(1.0)

  def _initialize(self):
    return self._function(**{k: a.asset_path for k, a in self._assets.items()})


def default_signature_key(signatures: Mapping[str, Any]) -> Optional[str]:
  """The signature `serve` calls: serving_default, predict, or the only one."""
  for key in _DEFAULT_SIGNATURES:
    if key in signatures:
      return key
  return next(iter(signatures)) if len(signatures) == 1 else None


def _dict_endpoint(signature: Any) -> Any:
  """The signature as a tf.function of one dict of inputs."""
  _, specs = signature.structured_input_signature

  @tf.function(input_signature=[dict(specs)])
  def serve(features):
    return signature(**features)

  return serve


def _variables(merged: _graph_merge.MergedGraph):
  """(global, trainable, local) lifted variables.

  `wrap_function` replaces the graph's variables by the lifted ones in the
  global and local collections only; trainability is read by name.
  """
  keys = tf.compat.v1.GraphKeys
  graph = merged.graph
  global_variables = list(graph.get_collection(keys.GLOBAL_VARIABLES))
  trainable = {v.name for v in graph.get_collection(keys.TRAINABLE_VARIABLES)}
  return (global_variables,
          [v for v in global_variables if v.name in trainable],
          list(graph.get_collection(keys.LOCAL_VARIABLES)))


def build_root(merged: _graph_merge.MergedGraph,
               functions: _functions.Functions) -> Any:
  """The object to save; its signatures go to `tf.saved_model.save`."""
  root = _tf_private.trackable_object()
  variables, trainable, local = _variables(merged)
  root.variables = variables
  root.trainable_variables = trainable
  root.local_variables = local
  for name in ('train_step', 'eval_update', 'eval_result', 'eval_reset'):
    function = getattr(functions, name)
    if function is not None:
      setattr(root, name, function)
  key = default_signature_key(functions.signatures)
  if key is not None:
    root.serve = _dict_endpoint(functions.signatures[key])
  assets: Dict[str, tf.saved_model.Asset] = {}
  initializers = []
  for initializer in functions.initializers:
    mine = {}
    for keyword, path in initializer.asset_paths.items():
      mine[keyword] = assets.setdefault(path, tf.saved_model.Asset(path))
    initializers.append(_ModeInitializer(initializer.function, mine))
  root.assets = list(assets.values())
  root.initializers = initializers
  return root
