"""Loading and running one tag set of a SavedModel, for `verify`.

The checks that run the export's graphs (see `_verification` for the whole
list): `tf1_load` and each `tf1_signature:<key>` in a TF1 Session, with the
serving checks (`raw_matches:<key>`, `warmup`) and one `train_step`; then
`tf2_load` and each `tf2_signature:<key>` with `tf.saved_model.load` (or
`loading.load_tag_set`'s import). Each signature runs on synthetic inputs
(`_synthetic_inputs`); a failing check stops only those that depend on it.
"""

import dataclasses
import gc
from typing import Dict, Optional, Tuple

import numpy as np
import tensorflow as tf

from multimode_export import _tf_private
from multimode_export import loading
from multimode_export.checks import _object_functions as object_functions
from multimode_export.checks import _report as report_lib
from multimode_export.checks import _serving_checks as serving_checks
from multimode_export.checks import _synthetic_inputs as synthetic_inputs
from multimode_export.checks import _wording as wording
from multimode_export.saved_model import _format
from multimode_export.saved_model import _object_graph

_TRAINING_METHOD = 'tensorflow/supervised/training'
# SavedModels written by tf.saved_model.save keep their init op here.
_INIT_OP_SIGNATURE_KEY = '__saved_model_init_op'


def _check_output_shapes(signature_def, values: Dict[str, object]) -> None:
  for key, value in values.items():
    expected = tf.TensorShape(signature_def.outputs[key].tensor_shape)
    actual = np.shape(value)
    if not expected.is_compatible_with(actual):
      raise report_lib.CheckFailed(
          f'output {key!r} has shape {list(actual)}, the signature says '
          f'{expected}')


def _named_outputs(signature_def) -> Dict[str, str]:
  return {k: v.name for k, v in signature_def.outputs.items()
          if v.WhichOneof('encoding') == 'name'}


def _run_tf1_signature(session, signature_def, feeds, index) -> str:
  feed = synthetic_inputs.tensor_feeds(signature_def, feeds)
  values = session.run(_named_outputs(signature_def), feed)
  _check_output_shapes(signature_def, values)
  inputs = synthetic_inputs.describe(signature_def, index, feeds)
  return (f'{signature_def.method_name or "no method"}: '
          f'{inputs or "no inputs"} -> {wording.count(len(values), "output")}')


def _plain_inputs(signature_def) -> bool:
  """Whether every input is a tensor of its own (no composite, no repeat)."""
  return (all(i.WhichOneof('encoding') == 'name'
              for i in signature_def.inputs.values()) and
          not loading.repeats_input_tensors(signature_def))


def _run_tf2_signature(loaded, key, signature_def, feeds) -> str:
  if key in loaded.signatures and _plain_inputs(signature_def):
    args = {k: tf.constant(v, dtype=signature_def.inputs[k].dtype)
            for k, v in feeds.items()}
    outputs = loaded.signatures[key](**args)
    how = 'ran'
  else:
    by_name = synthetic_inputs.tensor_feeds(signature_def, feeds)
    function = loaded.prune(feeds=list(by_name),
                            fetches=_named_outputs(signature_def))
    outputs = function(*[tf.constant(v) for v in by_name.values()])
    how = f'pruned with {wording.count(len(by_name), "unique feed")}, ran'
  values = {k: v.numpy() for k, v in outputs.items()
            if k in signature_def.outputs and hasattr(v, 'numpy')}
  _check_output_shapes(signature_def, values)
  return f'{how} -> {wording.count(len(outputs), "output")}'


def _training_signature_key(meta_graph_def) -> Optional[str]:
  """The signature whose inputs feed the train op."""
  signatures = {k: v for k, v in meta_graph_def.signature_def.items()
                if k != _INIT_OP_SIGNATURE_KEY}
  for key in sorted(signatures):
    if signatures[key].method_name == _TRAINING_METHOD:
      return key
  for key in ('train', tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY):
    if key in signatures:
      return key
  with_loss = [k for k in sorted(signatures) if 'loss' in signatures[k].outputs]
  return with_loss[0] if with_loss else (min(signatures) if signatures else None)


@dataclasses.dataclass(frozen=True)
class Graph:
  """One MetaGraphDef under verification and its synthetic feeds."""
  export_dir: str
  meta_graph_def: object
  tags: Tuple[str, ...]
  index: synthetic_inputs.GraphIndex
  feeds: Dict[str, Dict[str, object]]  # signature key -> input feeds
  # The root object's functions: a TF2 object-based SavedModel, loaded
  # without tags, whose functions run once each (else ()).
  functions: Tuple[_object_graph.ObjectFunction, ...] = ()

  @property
  def signatures(self):
    return self.meta_graph_def.signature_def


def prepare(export_dir: str, meta_graph_def,
             recorder: report_lib.Recorder) -> Graph:
  """Builds feeds per signature; one none can be built for is reported."""
  tags = _format.tags_of(meta_graph_def)
  index = synthetic_inputs.GraphIndex(meta_graph_def.graph_def)
  feeds = {}
  for key in sorted(meta_graph_def.signature_def):
    if key == _INIT_OP_SIGNATURE_KEY:
      continue  # TF2's initializer, run by the loaders, not a signature.
    try:
      feeds[key] = synthetic_inputs.signature_feeds(
          meta_graph_def.signature_def[key], index)
    except synthetic_inputs.UnsupportedInputError as e:
      recorder.fail(f'inputs:{key}', tags,
                    f'cannot build synthetic inputs: {e}')
  return Graph(export_dir, meta_graph_def, tags, index, feeds,
               _object_graph.root_functions(meta_graph_def))


def _run_train_step(session, graph: Graph) -> str:
  train_ops = session.graph.get_collection(
      _format.TRAIN_OP_COLLECTION)
  key = _training_signature_key(graph.meta_graph_def)
  feed, loss = {}, None
  if key is not None:
    signature_def = graph.signatures[key]
    if key not in graph.feeds:
      raise report_lib.CheckFailed(f'no synthetic inputs for signature {key!r}')
    feed = synthetic_inputs.tensor_feeds(signature_def, graph.feeds[key])
    if 'loss' in signature_def.outputs:
      loss = signature_def.outputs['loss'].name
  global_step = tf.compat.v1.train.get_global_step(session.graph)
  before = session.run(global_step) if global_step is not None else None
  fetches = {'train_ops': train_ops}
  if loss is not None:
    fetches['loss'] = loss
  values = session.run(fetches, feed)
  parts = [f'ran {wording.count(len(train_ops), "train op")}' +
           (f' on synthetic inputs of {key!r}' if key else '')]
  if loss is not None:
    value = float(np.asarray(values['loss']))
    parts.append(f'loss {value:.6g}' +
                 ('' if np.isfinite(value) else ' (not finite)'))
  if global_step is not None:
    parts.append(f'global_step {before} -> {session.run(global_step)}')
  return ', '.join(parts)


def _verify_serving(session, graph: Graph,
                    recorder: report_lib.Recorder) -> None:
  """Raw signatures against their twins, and the warmup records."""
  for raw_key, key in serving_checks.raw_twins(graph.feeds).items():
    recorder.run(f'raw_matches:{raw_key}', graph.tags,
                 lambda r=raw_key, k=key: serving_checks.run_raw_match(
                     session, graph.signatures, r, graph.feeds[k]))
  path = serving_checks.warmup_file(graph.export_dir, graph.tags)
  if path:
    recorder.run('warmup', graph.tags, lambda: serving_checks.replay_warmup(
        session, graph.meta_graph_def, path))


def verify_tf1(graph: Graph, run_train_step: bool,
                recorder: report_lib.Recorder) -> None:
  tf_graph = tf.Graph()
  with tf.compat.v1.Session(graph=tf_graph) as session:

    def load():
      with tf_graph.as_default():
        tf.compat.v1.saved_model.loader.load(session, list(graph.tags),
                                             graph.export_dir)
      signatures = set(graph.signatures) - {_INIT_OP_SIGNATURE_KEY}
      return (f'{len(tf_graph.get_operations())} ops, '
              f'{wording.count(len(signatures), "signature")}')

    if not recorder.run('tf1_load', graph.tags, load):
      return
    for key in sorted(graph.feeds):
      recorder.run(f'tf1_signature:{key}', graph.tags,
                   lambda k=key: _run_tf1_signature(
                       session, graph.signatures[k], graph.feeds[k],
                       graph.index))
    _verify_serving(session, graph, recorder)
    train_ops = _format.collection_names(
        graph.meta_graph_def, _format.TRAIN_OP_COLLECTION)
    if train_ops and run_train_step:
      recorder.run('train_step', graph.tags,
                   lambda: _run_train_step(session, graph))


def _load(graph: Graph):
  """The loaded SavedModel (without tags for a TF2 object) and a summary."""
  if graph.functions:
    loaded = tf.saved_model.load(graph.export_dir)
    names = ', '.join(f.name for f in graph.functions)
    return loaded, (f'loaded without tags: '
                    f'{wording.count(len(loaded.signatures), "signature")}, '
                    f'{wording.count(len(graph.functions), "function")} '
                    f'({names})')
  loaded = loading.load_tag_set(graph.export_dir, graph.tags)
  if isinstance(loaded, loading.ImportedGraph):
    return loaded, (
        'a signature lists one tensor under several input keys, which '
        'tf.saved_model.load cannot load: imported with wrap_function, '
        f'{wording.count(len(loaded.variables), "variable")}')
  return loaded, wording.count(len(loaded.signatures), 'signature')


def _load_and_run_tf2(graph: Graph, recorder: report_lib.Recorder) -> None:
  holder = {}

  def load():
    holder['loaded'], detail = _load(graph)
    return detail

  if not recorder.run('tf2_load', graph.tags, load):
    return
  for key in sorted(graph.feeds):
    recorder.run(f'tf2_signature:{key}', graph.tags,
                 lambda k=key: _run_tf2_signature(
                     holder['loaded'], k, graph.signatures[k], graph.feeds[k]))
  fallback = object_functions.signature_fallback(graph.feeds)
  for function in graph.functions:
    recorder.run(f'tf2_function:{function.name}', graph.tags,
                 lambda n=function.name: object_functions.run_function(
                     holder['loaded'], n, fallback))


def verify_tf2(graph: Graph, recorder: report_lib.Recorder) -> None:
  # Eager even when the caller disabled v2 behaviour: tf.saved_model.load
  # needs it.
  with _tf_private.eager_mode():
    _load_and_run_tf2(graph, recorder)
  gc.collect()  # Frees the loaded variables before the next tag set.
