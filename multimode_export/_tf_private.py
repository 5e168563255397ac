"""Every use of a private or semi-public TensorFlow / estimator name.

Nothing else in the package imports from `tensorflow.python` or
`tensorflow_estimator.python`, or touches an underscore attribute of an
Estimator. Each entry says the versions it was checked against; the test
`tests/tf_private_test.py` fails loudly when one disappears.

Checked against: tensorflow 2.15.1 with tensorflow-estimator 2.15.0, and the
same names exist in 2.13 and 2.14.
"""

import contextlib
from typing import Any, Iterator, List, Mapping, Optional, Sequence, Set, Tuple

import tensorflow as tf

# Semi-public export helpers: the estimator's own "export_lib" re-exports them
# from tensorflow.python.saved_model.model_utils (2.13-2.15).
from tensorflow_estimator.python.estimator.export import export_lib
# tf.train.Checkpoint used as a Scaffold saver must be turned into a
# name-based Saver over its frozen saveables (2.13-2.15).
from tensorflow.python.checkpoint import checkpoint as _trackable_util
from tensorflow.python.checkpoint import graph_view as _graph_view
# The SavedModel fingerprint, computed in C++ from a directory's
# saved_model.pb and variables index; no public function computes it
# (2.13: CreateFingerprintDef(saved_model_bytes, export_dir); 2.14-2.15:
# CreateFingerprintDef(export_dir)).
from tensorflow.python.saved_model.pywrap_saved_model import fingerprinting as _fingerprinting
# Running the raw checkpoint I/O ops eagerly even when the caller disabled v2
# behaviour (2.13-2.15).
from tensorflow.python.eager import context as _context
# Whether an op type is defined (the safety scan's "unknown op"); the public
# tf.raw_ops lists only ops with Python wrappers (2.13-2.15).
from tensorflow.python.framework import op_def_registry as _op_def_registry
# A directory's children without the `is_directory` call that
# tf.io.gfile.listdir makes first (two requests more per listing on S3 and
# GCS) (2.13-2.15).
from tensorflow.python.lib.io import _pywrap_file_io
# TF2 SavedModels written without reading variable values (saved_model/
# _without_values.py): a resource variable with a dtype and a shape but no
# value (no memory), and `tf.saved_model.save` returning the saved objects in
# node-id order. Checked against 2.13.1, 2.15.1 and 2.21.0.
from tensorflow.python.ops import resource_variable_ops as _resource_variable_ops
from tensorflow.python.saved_model import save as _saved_model_save
# Cutting one function out of a `tf.compat.v1.wrap_function` graph with only
# the captures it reads: `WrappedFunction.prune` hands every function all of
# the graph's captures (2.13-2.15). Used by the TF2 conversion (tf2/).
from tensorflow.python.eager import lift_to_graph as _lift_to_graph
from tensorflow.python.eager import wrap_function as _wrap_function
from tensorflow.python.framework import func_graph as _func_graph
# A trackable object whose attributes (lists of variables, functions) are
# saved as they are; tf.Module's `variables` is a read-only property
# (2.13-2.15; what tf.saved_model.load returns for a TF1 SavedModel).
from tensorflow.python.trackable import autotrackable as _autotrackable

export_outputs_for_mode = export_lib.export_outputs_for_mode
build_all_signature_defs = export_lib.build_all_signature_defs
SupervisedInputReceiver = export_lib.SupervisedInputReceiver
UnsupervisedInputReceiver = export_lib.UnsupervisedInputReceiver
ServingInputReceiver = export_lib.ServingInputReceiver
TensorServingInputReceiver = export_lib.TensorServingInputReceiver

# Names the test checks, as (object, attribute) pairs resolved lazily.
ESTIMATOR_PRIVATE_ATTRIBUTES = (
    '_call_model_fn',
    '_create_and_assert_global_step',
    '_config',
    '_session_config',
    '_warm_start_settings',
)


def call_model_fn(estimator: Any, features: Any, labels: Any,
                  mode: str) -> Any:
  """Calls the estimator's model_fn the way Estimator itself does.

  `Estimator._call_model_fn` passes only the arguments the model_fn accepts
  (labels, mode, params, config) and validates the returned EstimatorSpec.
  Checked against tensorflow-estimator 2.13-2.15.
  """
  return estimator._call_model_fn(  # pylint: disable=protected-access
      features=features, labels=labels, mode=mode, config=estimator.config)


def create_global_step(estimator: Any, graph: tf.Graph) -> tf.Variable:
  """Creates the global step the way the estimator would (2.13-2.15)."""
  return estimator._create_and_assert_global_step(graph)  # pylint: disable=protected-access


def random_seed(estimator: Any) -> Optional[int]:
  """The estimator's graph-level random seed (RunConfig.tf_random_seed)."""
  return estimator._config.tf_random_seed  # pylint: disable=protected-access


def session_config(estimator: Any) -> Optional[Any]:
  """The estimator's tf.compat.v1.ConfigProto, or None (2.13-2.15)."""
  return estimator._session_config  # pylint: disable=protected-access


def warm_start_checkpoint(estimator: Any) -> Optional[str]:
  """The warm-start checkpoint path or directory, or None (2.13-2.15)."""
  settings = estimator._warm_start_settings  # pylint: disable=protected-access
  if settings is None:
    return None
  return settings.ckpt_to_initialize_from


def is_object_checkpoint(saver: Any) -> bool:
  """Whether a Scaffold saver is an object-based `tf.train.Checkpoint`."""
  return isinstance(saver, _trackable_util.Checkpoint)


def saver_for_object_checkpoint(checkpoint: Any) -> tf.compat.v1.train.Saver:
  """A name-based sharded Saver over a Checkpoint's frozen saveables.

  This is how Estimator saves and restores a `tf.train.Checkpoint` given as
  `Scaffold(saver=...)`, so the checkpoint keys match (2.13-2.15).
  """
  saveables = _graph_view.ObjectGraphView(checkpoint).frozen_saveable_objects()
  return tf.compat.v1.train.Saver(var_list=saveables, sharded=True)


@contextlib.contextmanager
def eager_mode() -> Iterator[None]:
  """Runs the enclosed ops eagerly, also under disable_v2_behavior()."""
  with _context.eager_mode():
    yield


def is_registered_op(op_type: str) -> bool:
  """Whether the installed TensorFlow (or a loaded op library) defines an op.

  `op_def_registry.get` is the registry the graph importer consults; checked
  against TF 2.13-2.15.
  """
  return _op_def_registry.get(op_type) is not None


def list_children(path: str) -> List[str]:
  """The names in the directory `path`, as the filesystem lists them.

  Unlike `tf.io.gfile.listdir`, no `is_directory` check first: S3 and GCS
  answer an empty list for a prefix that holds nothing; the local
  filesystem raises NotFoundError. Checked against 2.13-2.15.
  """
  return [name.decode('utf-8') if isinstance(name, bytes) else name
          for name in _pywrap_file_io.GetChildren(path.encode('utf-8'))]


def fingerprint_def(export_dir: str, saved_model_pb: bytes) -> bytes:
  """The serialized FingerprintDef TF computes for `export_dir`'s files.

  `export_dir` holds `saved_model.pb` (whose bytes are `saved_model_pb`) and
  optionally `variables/variables.index`. Checked against 2.13-2.15.
  """
  try:
    return _fingerprinting.CreateFingerprintDef(export_dir)
  except TypeError:  # TF 2.13 takes the proto's bytes too.
    return _fingerprinting.CreateFingerprintDef(saved_model_pb, export_dir)


def uninitialized_variable(shape: Any, dtype: tf.DType, name: str,
                           trainable: bool = True) -> tf.Variable:
  """A resource variable with a dtype and a shape, and no value (no memory).

  Its handle exists, so functions can capture it and `tf.saved_model.save`
  tracks it; it holds nothing until something assigns or restores it.
  `resource_variable_ops.UninitializedVariable` (2.13.1, 2.15.1, 2.21.0).
  """
  return _resource_variable_ops.UninitializedVariable(
      shape=shape, dtype=dtype, name=name, trainable=trainable)


def save_and_return_nodes(obj: Any, export_dir: str, signatures: Any = None,
                          options: Optional[tf.saved_model.SaveOptions] = None
                          ) -> List[Any]:
  """`tf.saved_model.save`, returning the saved objects in node-id order.

  Node i of the list is node i of the SavedModel's object graph, and of
  the object graph stored in its checkpoint (the loader matches them by
  id). `save.save_and_return_nodes` is what `tf.saved_model.save` calls
  (2.13.1, 2.15.1, 2.21.0).
  """
  nodes, _ = _saved_model_save.save_and_return_nodes(
      obj, export_dir, signatures=signatures, options=options)
  return list(nodes)
def _reachable_captures(graph: Any, targets: Sequence[Any],
                        feeds: Sequence[tf.Tensor]) -> Set[int]:
  """ids of the graph's internal captures that `targets` depend on.

  The walk follows data and control inputs and stops at fed tensors.
  """
  captures = {id(t) for t in graph.internal_captures}
  fed = {id(t) for t in feeds}
  used, seen = set(), set()
  stack = [t if isinstance(t, tf.Operation) else t.op for t in targets]
  while stack:
    op = stack.pop()
    if id(op) in seen:
      continue
    seen.add(id(op))
    for tensor in op.inputs:
      if id(tensor) in captures:
        used.add(id(tensor))
      elif id(tensor) not in fed:
        stack.append(tensor.op)
    stack.extend(op.control_inputs)
  return used


def prune_with_own_captures(
    wrapped: Any, feeds: Sequence[Tuple[str, tf.Tensor]],
    fetches: Mapping[str, tf.Tensor], control_outputs: Sequence[Any],
    name: str) -> Any:
  """A function cut out of a wrap_function graph, capturing only what it reads.

  What `WrappedFunction.prune` does, except that the new function captures
  just the variables (and other captured resources) its fetches depend on;
  prune attaches every capture of the whole graph to every function, so a
  serving function would carry the optimizer's slots as inputs. It is
  called with the feed keys as keyword arguments and returns a dict.
  Checked against TF 2.13-2.15 (`lift_to_graph`, `FuncGraph`,
  `WrappedFunction`, whose `prune` it follows).

  Args:
    wrapped: the `tf.compat.v1.wrap_function` result.
    feeds: (keyword, tensor of `wrapped.graph`) pairs, in call order.
    fetches: output key -> tensor of `wrapped.graph`.
    control_outputs: operations that must run on every call (a train op).
    name: the function's name.

  Returns:
    A ConcreteFunction (a `WrappedFunction`).
  """
  graph = wrapped.graph
  # The outputs in the order nest flattens the structured dict: sorted keys.
  fetches = dict(sorted(fetches.items()))
  feed_tensors = [t for _, t in feeds]
  targets = list(fetches.values()) + list(control_outputs)
  used = _reachable_captures(graph, targets, feed_tensors)
  captures = [(e, i) for e, i in graph.captures if id(i) in used]
  with graph.as_default():
    pruned = _func_graph.FuncGraph(name)
  lift_map = _lift_to_graph.lift_to_graph(
      targets, pruned, sources=feed_tensors + [i for _, i in captures],
      base_graph=graph)
  pruned.outputs.extend(lift_map[t] for t in fetches.values())
  pruned.control_outputs.extend(lift_map[op] for op in control_outputs)
  pruned.inputs.extend(lift_map[t] for t in feed_tensors)
  for external, internal in captures:
    pruned.add_capture(external, lift_map[internal])
  for function in graph._functions.values():  # pylint: disable=protected-access
    pruned._add_function(function)  # pylint: disable=protected-access
  handles = {id(e) for e, _ in captures}
  pruned.variables = [v for v in graph.variables if id(v.handle) in handles]
  pruned.structured_outputs = {k: lift_map[t] for k, t in fetches.items()}
  pruned.structured_input_signature = ((), {
      key: tf.TensorSpec(t.shape, t.dtype, name=key) for key, t in feeds})
  function = _wrap_function.WrappedFunction(
      pruned, variable_holder=wrapped._variable_holder)  # pylint: disable=protected-access
  function._num_positional_args = 0  # pylint: disable=protected-access
  function._arg_keywords = [key for key, _ in feeds]  # pylint: disable=protected-access
  return function


def trackable_object() -> Any:
  """An empty object whose attributes `tf.saved_model.save` tracks as set.

  `tf.Module` would do, but its `variables` and `trainable_variables` are
  read-only properties; the converted model sets them (2.13-2.15).
  """
  return _autotrackable.AutoTrackable()
