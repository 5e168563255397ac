"""The converted model's functions, cut out of the merged graph.

- one serving function per signature of the serve graph (keyword inputs
  named as in the signature, a dict of its outputs);
- `train_step(**inputs)` -> `{'loss': ...}`: the train signature's inputs,
  its loss, and the train op, run once per call (the loss is the one of the
  step, before the update, as `sess.run([loss, train_op])` returns it);
- `eval_update(**inputs)`, `eval_result()`, `eval_reset()`: the eval
  signature's `metrics/<name>/update_op` and `/value` outputs, and the
  initializers of the metric accumulators;
- one init function per mode: its main op, with the asset paths as inputs.

Each function captures only the variables it reads or writes.
"""

import dataclasses
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import tensorflow as tf
from tensorflow.core.framework import variable_pb2

from multimode_export import errors
from multimode_export.saved_model import _format
from multimode_export.tf2 import _graph_merge
from multimode_export.tf2 import _source

ModeKeys = tf.estimator.ModeKeys
_TRAIN_SIGNATURE, _EVAL_SIGNATURE, _LOSS = 'train', 'eval', 'loss'
_METRICS, _UPDATE, _VALUE = 'metrics/', '/update_op', '/value'


@dataclasses.dataclass(frozen=True)
class Initializer:
  """One mode's main op as a function of its asset paths.

  Attributes:
    function: called with `asset_paths` as keyword arguments.
    asset_paths: keyword -> the asset's file in the source export.
  """
  function: Any
  asset_paths: Mapping[str, str]


@dataclasses.dataclass(frozen=True)
class Functions:
  """What the converted model exposes.

  Attributes:
    signatures: signature key -> function, with its method name.
    method_names: signature key -> the source signature's method name.
    train_step: or None without a train graph.
    eval_update, eval_result, eval_reset: or None without an eval graph.
    initializers: one per mode with a main op.
  """
  signatures: Mapping[str, Any]
  method_names: Mapping[str, str]
  train_step: Optional[Any]
  eval_update: Optional[Any]
  eval_result: Optional[Any]
  eval_reset: Optional[Any]
  initializers: Tuple[Initializer, ...]


def _feeds(export_dir: str, merged, mode: str, signature_key: str,
           signature_def) -> List[Tuple[str, tf.Tensor]]:
  feeds = []
  for key in sorted(signature_def.inputs):
    info = signature_def.inputs[key]
    if info.WhichOneof('encoding') != 'name':
      raise errors.ConversionError(
          export_dir, f'{signature_key}:{key}',
          f'input {key!r} of signature {signature_key!r} (mode {mode!r}) is '
          f'a {info.WhichOneof("encoding")} tensor; only dense inputs are '
          'converted')
    feeds.append((key, merged.tensor(mode, info.name)))
  names = [info.name for info in signature_def.inputs.values()]
  if len(set(names)) != len(names):
    raise errors.ConversionError(
        export_dir, signature_key,
        f'signature {signature_key!r} (mode {mode!r}) lists one tensor under '
        'several input keys, as TFMA eval graphs do; a TF2 function cannot '
        'take it twice')
  return feeds


def _signature(source: _source.Source, mode: str, key: str):
  part = source.part(mode)
  signatures = part.meta_graph_def.signature_def
  if key not in signatures:
    raise errors.ConversionError(
        source.export_dir, key, f'the {mode!r} graph has no {key!r} '
        f'signature (it has {sorted(signatures)})')
  return signatures[key]


def _serving(source, merged) -> Tuple[Dict[str, Any], Dict[str, str]]:
  part = source.part(ModeKeys.PREDICT)
  if part is None:
    return {}, {}
  functions, methods = {}, {}
  for key, signature_def in sorted(part.meta_graph_def.signature_def.items()):
    if key.startswith('__'):  # e.g. __saved_model_init_op
      continue
    feeds = _feeds(source.export_dir, merged, part.mode, key, signature_def)
    fetches = {k: merged.tensor(part.mode, v.name)
               for k, v in signature_def.outputs.items()}
    functions[key] = _graph_merge.prune(merged, f'signature_{len(functions)}',
                                        feeds, fetches)
    methods[key] = signature_def.method_name
  return functions, methods


def _train_step(source, merged) -> Optional[Any]:
  part = source.part(ModeKeys.TRAIN)
  if part is None:
    return None
  signature_def = _signature(source, part.mode, _TRAIN_SIGNATURE)
  train_ops = _format.collection_names(part.meta_graph_def,
                                       _format.TRAIN_OP_COLLECTION)
  if _LOSS not in signature_def.outputs or not train_ops:
    raise errors.ConversionError(
        source.export_dir, _TRAIN_SIGNATURE,
        f'the train graph lacks a loss output or a train op '
        f'({_format.TRAIN_OP_COLLECTION})')
  feeds = _feeds(source.export_dir, merged, part.mode, _TRAIN_SIGNATURE,
                 signature_def)
  loss = merged.tensor(part.mode, signature_def.outputs[_LOSS].name)
  ops = [merged.graph.as_graph_element(merged.name(part.mode, n))
         for n in train_ops]
  return _graph_merge.prune(merged, 'train_step', feeds, {_LOSS: loss}, ops)


def _metric_names(signature_def) -> List[str]:
  return sorted(k[len(_METRICS):-len(_UPDATE)] for k in signature_def.outputs
                if k.startswith(_METRICS) and k.endswith(_UPDATE))


def _eval(source, merged) -> Tuple[Optional[Any], ...]:
  part = source.part(ModeKeys.EVAL)
  if part is None:
    return None, None, None
  signature_def = _signature(source, part.mode, _EVAL_SIGNATURE)
  names = _metric_names(signature_def)
  outputs = signature_def.outputs

  def tensors(suffix):
    return {n: merged.tensor(part.mode, outputs[_METRICS + n + suffix].name)
            for n in names}

  feeds = _feeds(source.export_dir, merged, part.mode, _EVAL_SIGNATURE,
                 signature_def)
  update = _graph_merge.prune(merged, 'eval_update', feeds, tensors(_UPDATE))
  result = _graph_merge.prune(merged, 'eval_result', [], tensors(_VALUE))
  collections = part.meta_graph_def.collection_def
  local_key = tf.compat.v1.GraphKeys.LOCAL_VARIABLES
  mine = {merged.name(part.mode, variable_pb2.VariableDef.FromString(
      v).variable_name) for v in (collections[local_key].bytes_list.value
                                  if local_key in collections else ())}
  accumulators = [v for v in merged.graph.get_collection(
      tf.compat.v1.GraphKeys.LOCAL_VARIABLES) if v.name in mine]
  reset = _graph_merge.prune(merged, 'eval_reset', [], {},
                             [v.initializer for v in accumulators])
  return update, result, reset


def _initializers(source, merged) -> Tuple[Initializer, ...]:
  found = []
  for part in source.parts:
    names = _format.main_op_names(part.meta_graph_def)
    if not names:
      continue
    assets = _format.asset_files(part.meta_graph_def)
    feeds = [(f'asset_{i}', merged.tensor(part.mode, tensor))
             for i, (tensor, _) in enumerate(assets)]
    paths = {f'asset_{i}': tf.io.gfile.join(part.export_dir, 'assets', name)
             for i, (_, name) in enumerate(assets)}
    ops = [merged.graph.as_graph_element(merged.name(part.mode, n))
           for n in names]
    function = _graph_merge.prune(merged, f'init_{part.mode}', feeds, {}, ops)
    found.append(Initializer(function, paths))
  return tuple(found)


def cut_functions(source: _source.Source,
                  merged: _graph_merge.MergedGraph) -> Functions:
  """Every function of the converted model.

  Raises:
    errors.ConversionError: a signature input that is not a dense tensor, a
      train graph without loss or train op, a missing train/eval signature.
  """
  signatures, methods = _serving(source, merged)
  update, result, reset = _eval(source, merged)
  return Functions(signatures, methods, _train_step(source, merged), update,
                   result, reset, _initializers(source, merged))


def restore_from_source(source: _source.Source,
                        merged: _graph_merge.MergedGraph) -> None:
  """Gives the variables the source checkpoint's values (the reference path).

  Every mode's saver runs, the carrier's last; then every main op.
  """
  for part in reversed(source.parts):
    saver_def = merged.saver_defs.get(part.mode)
    if saver_def is None or not saver_def.restore_op_name:
      continue
    restore = merged.wrapped.prune(
        feeds=[saver_def.filename_tensor_name],
        fetches=[merged.graph.as_graph_element(saver_def.restore_op_name)])
    restore(tf.constant(_format.variables_prefix(part.export_dir)))


def run_initializers(functions: Functions) -> None:
  """Runs every mode's main op once, with the source's asset paths."""
  for initializer in functions.initializers:
    initializer.function(**{k: tf.constant(v)
                            for k, v in initializer.asset_paths.items()})
