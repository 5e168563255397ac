"""The Session-free SavedModel builder: one tagged MetaGraphDef per mode.

`MetaGraphBuilder` plays the part of the stock export's
`tf.compat.v1.saved_model.Builder` plus `Estimator._add_meta_graph_for_mode`:
it receives every mode through its internal `_add_meta_graph_for_mode`, once
per mode (receiver fn -> model_fn -> signatures, saver, main op, train op and
asset collections), and assembles the SavedModel proto. Unlike the stock
builder it reads no checkpoint value and writes no file: which graph carries
`variables/` is decided by `_modes.choose_variables_carrier` and handed to
the writer explicitly. It is not a member of the mixin: `Estimator` has its
own `_add_meta_graph_for_mode`, which stock `export_saved_model` calls.
"""

import contextlib
import dataclasses
import logging as std_logging
import os
from typing import (Callable, Dict, Iterator, Mapping, Optional, Sequence,
                    Tuple)

import numpy as np
import tensorflow as tf
from google.protobuf import any_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from absl import logging
from tensorflow.core.protobuf import saved_model_pb2

from multimode_export import _tf_private
from multimode_export import errors
from multimode_export.graph import _importable as importable
from multimode_export.graph import _raw_signatures as raw_signatures_lib
from multimode_export.graph import _saver_spec as saver_spec
from multimode_export.saved_model import _format as saved_model_format

ModeKeys = tf.estimator.ModeKeys

# What TF's export_utils logs for a signature map without serving_default.
_NO_DEFAULT_SIGNATURE = 'Export includes no default signature!'

_SUPERVISED_RECEIVERS = (_tf_private.SupervisedInputReceiver,
                         _tf_private.UnsupervisedInputReceiver)
_ANY_RECEIVER = _SUPERVISED_RECEIVERS + (
    _tf_private.ServingInputReceiver, _tf_private.TensorServingInputReceiver)


class AssetTable:
  """Names asset files uniquely across all MetaGraphDefs of one SavedModel.

  The same source file gets the same name in every mode; different files
  with the same basename get `name_1`, `name_2`, ...
  """

  def __init__(self):
    self._sources: Dict[str, str] = {}  # name in assets/ -> source path

  def name_for(self, source: str) -> str:
    base = os.path.basename(source)
    name, i = base, 0
    while name in self._sources and self._sources[name] != source:
      i += 1
      name = f'{base}_{i}'
    self._sources[name] = source
    return name

  @property
  def files(self) -> Dict[str, str]:
    """Asset name -> source path, for everything named so far."""
    return dict(self._sources)


@dataclasses.dataclass(frozen=True)
class ModeGraph:
  """One mode's graph, ready to be written into a SavedModel.

  Attributes:
    mode: the ModeKeys value.
    meta_graph_def: the tagged MetaGraphDef with its signatures.
    variables: checkpoint entries the graph's saver restores, or None when
      the saver cannot be read from the graph (Session fallback needed).
    graph: the live graph, kept for the Session fallback.
    saver: the live saver, kept for the Session fallback.
    constants: entries the saver writes from graph constants without ever
      restoring them (a `tf.train.Checkpoint` saver's object graph).
  """
  mode: str
  meta_graph_def: tf.compat.v1.MetaGraphDef
  variables: Optional[Dict[str, saver_spec.VariableSpec]]
  graph: tf.Graph
  saver: tf.compat.v1.train.Saver
  constants: Dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

  @property
  def tags(self) -> Tuple[str, ...]:
    return tuple(self.meta_graph_def.meta_info_def.tags)


class _DropMessage(std_logging.Filter):
  """Drops one exact message from a logger."""

  def __init__(self, message: str):
    super().__init__()
    self._message = message

  def filter(self, record: std_logging.LogRecord) -> bool:
    return record.getMessage() != self._message


@contextlib.contextmanager
def _no_default_signature_warning(mode: str) -> Iterator[None]:
  """Silences TF's "no default signature" warning for TRAIN and EVAL.

  Their graphs have a `train` / `eval` signature and no serving default by
  design; only a PREDICT graph without one deserves the warning.
  """
  if mode == ModeKeys.PREDICT:
    yield
    return
  dropped = _DropMessage(_NO_DEFAULT_SIGNATURE)
  tf.get_logger().addFilter(dropped)
  try:
    yield
  finally:
    tf.get_logger().removeFilter(dropped)


def _with_detail(e: BaseException, detail: str) -> str:
  """`e`'s own message first (code may match it), then ours."""
  return f'{e} ({detail})' if str(e) else detail


def _call_receiver(mode: str, receiver_fn) -> Tuple[object, Optional[str]]:
  """Calls the receiver fn; returns (receiver, why it lacks labels or None).

  A serving receiver in TRAIN or EVAL goes on to the model_fn with
  `labels=None`, as in the stock export, whose error (if any) leads ours.
  """
  try:
    receiver = receiver_fn()
  except Exception as e:  # pylint: disable=broad-except
    raise errors.ReceiverError(_with_detail(
        e, f'raised by input_receiver_fn_map[{mode!r}]: {type(e).__name__}'),
        mode, receiver_fn) from e
  allowed = _SUPERVISED_RECEIVERS if mode != ModeKeys.PREDICT else _ANY_RECEIVER
  if isinstance(receiver, allowed):
    return receiver, None
  problem = (f'input_receiver_fn_map[{mode!r}]: expected '
             f'{" or ".join(c.__name__ for c in allowed)}, got '
             f'{type(receiver).__name__}')
  if mode != ModeKeys.PREDICT and isinstance(receiver, _ANY_RECEIVER):
    return receiver, problem + (
        ' (it has no labels: use tf.estimator.experimental.'
        'build_raw_supervised_input_receiver_fn, or an '
        'UnsupervisedInputReceiver for a model that trains without labels)')
  raise errors.ReceiverError(problem, mode, receiver_fn)


def _spec_and_signatures(estimator, mode: str, receiver_fn,
                         raw_signatures: bool = False):
  """Calls the receiver fn and the model_fn; returns (spec, signatures)."""
  receiver, no_labels = _call_receiver(mode, receiver_fn)
  try:
    spec = _tf_private.call_model_fn(
        estimator, receiver.features, getattr(receiver, 'labels', None), mode)
    export_outputs = _tf_private.export_outputs_for_mode(
        mode=spec.mode, serving_export_outputs=spec.export_outputs,
        predictions=spec.predictions, loss=spec.loss,
        metrics=spec.eval_metric_ops)
    if raw_signatures and mode == ModeKeys.PREDICT:
      signatures = raw_signatures_lib.signature_defs(receiver, export_outputs)
    else:
      with _no_default_signature_warning(mode):
        signatures = _tf_private.build_all_signature_defs(
            receiver.receiver_tensors, export_outputs,
            getattr(receiver, 'receiver_tensors_alternatives', None),
            serving_only=(mode == ModeKeys.PREDICT))
  except errors.Error:
    raise
  except Exception as e:  # pylint: disable=broad-except
    if no_labels:
      raise errors.ReceiverError(_with_detail(e, no_labels), mode,
                                 receiver_fn) from e
    raise errors.ModelFnError(_with_detail(
        e, f'model_fn in mode {mode!r} failed with {type(e).__name__}'),
        mode) from e
  if no_labels:
    raise errors.ReceiverError(no_labels, mode, receiver_fn)
  return spec, signatures


def _saver_for(scaffold) -> tf.compat.v1.train.Saver:
  """The saver the model itself uses, so custom savers keep their keys."""
  if _tf_private.is_object_checkpoint(scaffold.saver):
    return _tf_private.saver_for_object_checkpoint(scaffold.saver)
  return scaffold.saver or tf.compat.v1.train.Saver(sharded=True)


def _asset_source(tensor) -> str:
  value = tf.get_static_value(tensor)
  # A scalar string constant comes back as a 0-d object ndarray.
  if isinstance(value, np.ndarray) and value.shape == ():
    value = value.item()
  if not isinstance(value, bytes):
    raise ValueError(f'asset path tensor {tensor.name} is not a constant '
                     'string')
  return value.decode('utf-8')


def _add_loader_collections(graph: tf.Graph, spec, assets: AssetTable) -> None:
  """Adds the collections SavedModel loaders read: assets, main op, train op."""
  for tensor in graph.get_collection(tf.compat.v1.GraphKeys.ASSET_FILEPATHS):
    asset_def = meta_graph_pb2.AssetFileDef(
        filename=assets.name_for(_asset_source(tensor)))
    asset_def.tensor_info.name = tensor.name
    packed = any_pb2.Any()
    packed.Pack(asset_def)
    graph.add_to_collection(saved_model_format.ASSETS_COLLECTION, packed)
  main_op = spec.scaffold.local_init_op
  if main_op is None:
    main_op = tf.compat.v1.train.Scaffold.default_local_init_op()
  graph.add_to_collection(tf.compat.v1.saved_model.MAIN_OP_KEY, main_op)
  if spec.train_op is not None:
    graph.add_to_collection(saved_model_format.TRAIN_OP_COLLECTION, spec.train_op)


class MetaGraphBuilder:
  """Builds the MetaGraphDefs of one SavedModel, sharing one asset table.

  Args:
    estimator: the tf.estimator.Estimator whose model_fn is called.
    strip_default_attrs: strip default-valued attributes from the graphs.
    clear_devices: drop device placements from the graphs.
    raw_signatures: for PREDICT, add raw-tensor signatures beside the
      tf.Example ones (see `graph/_raw_signatures.py`).
  """

  def __init__(self, estimator, *, strip_default_attrs: bool = False,
               clear_devices: bool = False, raw_signatures: bool = False):
    self._estimator = estimator
    self._raw_signatures = raw_signatures
    self._strip_default_attrs = strip_default_attrs
    self._clear_devices = clear_devices
    self._assets = AssetTable()
    self._graphs: Dict[str, ModeGraph] = {}

  def add_modes(self, receivers: Mapping[str, Callable[[], object]],
                tags: Mapping[str, Tuple[str, ...]]) -> None:
    """Adds each mode's MetaGraphDef, in the order of `receivers`.

    Args:
      receivers: mode -> receiver fn (a normalized receiver map).
      tags: mode -> the MetaGraphDef's tag set.

    Raises:
      See `_add_meta_graph_for_mode`.
    """
    for mode, receiver_fn in receivers.items():
      logging.info('Building the %s graph', mode)
      self._add_meta_graph_for_mode(mode, receiver_fn, tags[mode])

  @property
  def graphs(self) -> Tuple[ModeGraph, ...]:
    """The built graphs, in the order they were added."""
    return tuple(self._graphs.values())

  @property
  def assets(self) -> Dict[str, str]:
    """Asset name in `assets/` -> source file, over all graphs."""
    return self._assets.files

  def _add_meta_graph_for_mode(self, mode: str, receiver_fn,
                               tags: Tuple[str, ...]) -> ModeGraph:
    """Builds `mode`'s graph into a tagged MetaGraphDef and keeps it.

    Raises:
      errors.ReceiverError: the receiver fn raised or returned the wrong type.
      errors.ModelFnError: the model_fn raised or its outputs cannot be
        exported for this mode.
      errors.UnloadableGraphError: the MetaGraphDef would not import into a
        fresh graph.
    """
    graph = tf.Graph()
    with graph.as_default():
      _tf_private.create_global_step(self._estimator, graph)
      tf.compat.v1.set_random_seed(_tf_private.random_seed(self._estimator))
      spec, signatures = _spec_and_signatures(
          self._estimator, mode, receiver_fn, self._raw_signatures)
      saver = _saver_for(spec.scaffold)
      _add_loader_collections(graph, spec, self._assets)
      meta_graph_def = saver.export_meta_graph(
          clear_devices=self._clear_devices,
          strip_default_attrs=self._strip_default_attrs)
    meta_graph_def.meta_info_def.tags.extend(tags)
    for key, signature in signatures.items():
      meta_graph_def.signature_def[key].CopyFrom(signature)
    dropped = importable.drop_unnamed_saveables(meta_graph_def)
    if dropped:
      logging.info('%s graph: dropped saveable_objects entries that name no '
                   'node (they would break its import): %s', mode, dropped)
    importable.check_importable(mode, meta_graph_def)
    variables, constants = _read_saver(mode, saver, meta_graph_def)
    self._graphs[mode] = ModeGraph(mode, meta_graph_def, variables, graph,
                                   saver, constants)
    return self._graphs[mode]


def _read_saver(mode: str, saver, meta_graph_def):
  """(variables, constants) of the saver, or (None, {}) for the Session path.

  Only a saver whose behaviour the graph fully describes takes the
  Session-free path: exactly `tf.compat.v1.train.Saver` (which a
  `tf.train.Checkpoint` becomes, see `_saver_for`) with a readable restore
  op. Any other saver object (a subclass, a wrapper) is the user's code:
  it is called as the stock export calls it (restore, save).
  """
  if type(saver) is not tf.compat.v1.train.Saver:  # pylint: disable=unidiomatic-typecheck
    logging.info('%s graph: custom saver %s: variables/ goes through its '
                 'restore and save', mode, type(saver).__name__)
    return None, {}
  try:
    restored = saver_spec.required_variables(meta_graph_def)
    return restored, saver_spec.saved_constants(meta_graph_def, restored)
  except saver_spec.UnsupportedSaverError:
    return None, {}


def saved_model_proto(graphs: Sequence[ModeGraph]
                     ) -> saved_model_pb2.SavedModel:
  """The SavedModel proto holding `graphs`' MetaGraphDefs, in order."""
  saved_model = saved_model_pb2.SavedModel(
      saved_model_schema_version=tf.saved_model.SAVED_MODEL_SCHEMA_VERSION)
  for graph in graphs:
    saved_model.meta_graphs.add().CopyFrom(graph.meta_graph_def)
  return saved_model
