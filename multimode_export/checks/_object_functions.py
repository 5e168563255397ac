"""Running each function of a loaded TF2 object once, for `verify`.

A SavedModel with root functions (`saved_model/_object_graph`: the TF2 form
`convert_to_tf2` writes has `train_step`, `eval_update`, `eval_result`,
`eval_reset` and `serve`) is loaded without tags; each function then runs
once on synthetic inputs built from its first concrete function's input
signature and graph (`_synthetic_inputs`: a string input a ParseExample op
of that graph reads gets `tf.Example`s). A string input no parser of the
function's own graph reads (`serve(features)` calls the signature's function)
gets the feed of a signature input of the same key, when there is one.
Everything runs in memory: `train_step` changes the loaded variables only.
"""

from typing import Any, Dict, Mapping, Tuple

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2

from multimode_export.checks import _report as report_lib
from multimode_export.checks import _synthetic_inputs as synthetic_inputs
from multimode_export.checks import _wording as wording

# Lines of a function's error message that say nothing about the error.
_NOISE = ('Graph execution error', 'Detected at node', '<stack traces')


def _concrete(function: Any) -> Any:
  """The first concrete function of a restored function (or itself)."""
  concrete = getattr(function, 'concrete_functions', None)
  if concrete is None:
    return function
  if not concrete:
    raise report_lib.CheckFailed('the function has no concrete function')
  return concrete[0]


def _leaves(structure: Any, path: Tuple[str, ...] = ()):
  """(path, leaf) pairs in `tf.nest.flatten` order (dicts by sorted key)."""
  if isinstance(structure, Mapping):
    for key in sorted(structure):
      yield from _leaves(structure[key], path + (str(key),))
  elif isinstance(structure, (list, tuple)):
    for i, item in enumerate(structure):
      yield from _leaves(item, path + (f'arg{i}',))
  else:
    yield path, structure


def _signature(concrete: Any) -> Tuple[meta_graph_pb2.SignatureDef, Any, list]:
  """A SignatureDef of the function's inputs, its structure and input keys."""
  structure = concrete.structured_input_signature
  # The outer (args, kwargs) pair is no part of an input's path.
  leaves = [(path[1:], spec) for path, spec in _leaves(structure)]
  signature_def = meta_graph_pb2.SignatureDef()
  keys = []
  for (path, spec), tensor in zip(leaves, concrete.inputs):
    if not isinstance(spec, tf.TensorSpec):
      raise synthetic_inputs.UnsupportedInputError(
          f'input {"/".join(path)!r} is a {type(spec).__name__}')
    key = path[-1]
    if key in signature_def.inputs:
      key = '/'.join(path)
    info = signature_def.inputs[key]
    info.name = tensor.name
    info.dtype = spec.dtype.as_datatype_enum
    info.tensor_shape.CopyFrom(spec.shape.as_proto())
    keys.append(key)
  return signature_def, structure, keys


def _feeds(concrete: Any, fallback: Mapping[str, object]):
  signature_def, structure, keys = _signature(concrete)
  index = synthetic_inputs.GraphIndex(concrete.graph.as_graph_def())
  feeds = synthetic_inputs.signature_feeds(signature_def, index)
  for key in keys:
    info = signature_def.inputs[key]
    value = fallback.get(key)
    if (info.dtype == tf.string.as_datatype_enum and value is not None and
        np.asarray(value).dtype == object and
        index.example_features(info.name) is None):
      feeds[key] = value
  values = [tf.constant(feeds[k], dtype=signature_def.inputs[k].dtype)
            for k in keys]
  args, kwargs = tf.nest.pack_sequence_as(structure, values)
  return args, kwargs, synthetic_inputs.describe(signature_def, index, feeds)


def _outcome(outputs: Any) -> str:
  flat = tf.nest.flatten(outputs)
  text = wording.count(len(flat), 'output')
  if isinstance(outputs, Mapping) and 'loss' in outputs:
    loss = float(np.asarray(outputs['loss']))
    text += f', loss {loss:.6g}' + ('' if np.isfinite(loss) else
                                    ' (not finite)')
  return text


def _op_error_line(message: str) -> str:
  """The line of an eager error's message that says what went wrong."""
  lines = [line.strip() for line in message.splitlines()
           if line.strip() and not line.startswith(_NOISE)]
  return lines[0][:300] if lines else message[:300]


def run_function(loaded: Any, name: str,
                 fallback: Mapping[str, object]) -> str:
  """Runs `loaded.<name>` once on synthetic inputs; describes the run.

  Args:
    loaded: the object `tf.saved_model.load` returned.
    name: the function's attribute name.
    fallback: input key -> a feed, for string inputs no parser reads.

  Raises:
    report_lib.CheckFailed: no inputs can be built, or the run failed.
  """
  function = getattr(loaded, name, None)
  if function is None:
    raise report_lib.CheckFailed(f'the loaded object has no {name!r}')
  concrete = _concrete(function)
  try:
    args, kwargs, described = _feeds(concrete, fallback)
  except synthetic_inputs.UnsupportedInputError as e:
    raise report_lib.CheckFailed(f'cannot build synthetic inputs: {e}') from e
  try:
    outputs = function(*args, **kwargs)
  except tf.errors.OpError as e:
    raise report_lib.CheckFailed(
        f'{type(e).__name__}: {_op_error_line(e.message)}') from e
  return f'ran on {described or "no inputs"} -> {_outcome(outputs)}'


def signature_fallback(feeds: Mapping[str, Mapping[str, object]]
                      ) -> Dict[str, object]:
  """Input key -> the first signature's feed for it (signatures by key)."""
  fallback: Dict[str, object] = {}
  for key in sorted(feeds):
    for input_key, value in feeds[key].items():
      fallback.setdefault(input_key, value)
  return fallback
