"""TF2 callables for each mode of a multi-mode SavedModel.

A TF2 program loads one tag set with `tf.saved_model.load(path, tags=[tag])`
and cuts the functions it needs out of the loaded graph with `.prune`:

- `ServingSignatures`: the serving signatures, by key;
- `TrainStep`: inputs -> loss, running the train op (one optimizer step on
  the loaded variables) on every call;
- `EvalMetrics`: `update(**inputs)` runs the metric update ops, `result()`
  reads the metric values, `reset()` zeroes the metric accumulators.

`load_mode(export_dir, mode)` returns the one for a `tf.estimator.ModeKeys`
value.

This module uses only public TensorFlow (`tf.saved_model.load`, `prune`)
and the SavedModel proto, and imports nothing else from this package: it
works unchanged in TensorFlow 2.16+, where `tf.estimator` (and therefore
the rest of this package) no longer imports. Copy it into such a project, or
follow docs/loading.md.
"""

from typing import Dict, Iterator, Mapping, Sequence, Tuple, Union

import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow.core.protobuf import saved_model_pb2

# tf.estimator.ModeKeys values -> the tag set multimode_export writes.
MODE_TAGS: Dict[str, Tuple[str, ...]] = {
    'train': ('train',),
    'eval': ('eval',),
    'infer': ('serve',),
}
# Collections the SavedModel loaders define (part of the on-disk format).
_TRAIN_OP_COLLECTION = 'saved_model_train_op'
_METRIC_VARIABLES_COLLECTION = 'metric_variables'
_LOCAL_VARIABLES_COLLECTION = 'local_variables'
_UPDATE_SUFFIX = '/update_op'
_VALUE_SUFFIX = '/value'
_METRICS_PREFIX = 'metrics/'

Tags = Union[str, Sequence[str]]


def _tag_set(tags: Tags) -> Tuple[str, ...]:
  if isinstance(tags, str):
    return (tags,)
  tags = tuple(tags)
  if not tags or not all(isinstance(t, str) and t for t in tags):
    raise ValueError(f'tags: expected a tag or a non-empty list of tags, got '
                     f'{tags!r}')
  return tags


def read_meta_graph(export_dir: str, tags: Tags
                   ) -> meta_graph_pb2.MetaGraphDef:
  """The MetaGraphDef of `export_dir` whose tag set is exactly `tags`.

  Raises:
    ValueError: `export_dir` has no SavedModel proto, or no MetaGraphDef has
      that tag set (the message lists the tag sets there are).
  """
  wanted = set(_tag_set(tags))
  saved_model = saved_model_pb2.SavedModel()
  pb = tf.io.gfile.join(export_dir, 'saved_model.pb')
  pbtxt = tf.io.gfile.join(export_dir, 'saved_model.pbtxt')
  if tf.io.gfile.exists(pb):
    with tf.io.gfile.GFile(pb, 'rb') as f:
      saved_model.ParseFromString(f.read())
  elif tf.io.gfile.exists(pbtxt):
    with tf.io.gfile.GFile(pbtxt, 'r') as f:
      text_format.Parse(f.read(), saved_model)
  else:
    raise ValueError(f'export_dir: {export_dir!r} has no saved_model.pb or '
                     'saved_model.pbtxt')
  for meta_graph_def in saved_model.meta_graphs:
    if set(meta_graph_def.meta_info_def.tags) == wanted:
      return meta_graph_def
  available = [sorted(m.meta_info_def.tags) for m in saved_model.meta_graphs]
  raise ValueError(f'tags: {export_dir!r} has no MetaGraphDef tagged '
                   f'{sorted(wanted)}; it has {available}')


def _signature(meta_graph_def, key, preferred: Sequence[str], what: str):
  signatures = meta_graph_def.signature_def
  if key is None:
    candidates = [k for k in preferred if k in signatures]
    if not candidates and len(signatures) == 1:
      candidates = list(signatures)
    if not candidates:
      raise ValueError(f'signature_key: no default {what} signature among '
                       f'{sorted(signatures)}; pass one')
    key = candidates[0]
  if key not in signatures:
    raise ValueError(f'signature_key: expected one of {sorted(signatures)}, '
                     f'got {key!r}')
  return key, signatures[key]


class _PrunedCall:
  """Keyword inputs -> the pruned function's flat positional arguments."""

  def __init__(self, loaded, signature_def, fetches):
    self._loaded = loaded  # Owns the variables the pruned function uses.
    self.input_keys: Tuple[str, ...] = tuple(sorted(signature_def.inputs))
    self._dtypes = [tf.as_dtype(signature_def.inputs[k].dtype)
                    for k in self.input_keys]
    self._function = loaded.prune(
        feeds=[signature_def.inputs[k].name for k in self.input_keys],
        fetches=fetches)

  def call(self, inputs: Mapping[str, object]):
    if set(inputs) != set(self.input_keys):
      raise TypeError(f'expected inputs {list(self.input_keys)}, got '
                      f'{sorted(inputs)}')
    return self._function(*[tf.convert_to_tensor(inputs[k], dtype=d)
                            for k, d in zip(self.input_keys, self._dtypes)])


class ServingSignatures(Mapping):
  """The signatures of a loaded tag set, by key (a read-only mapping).

  Each value is the loaded ConcreteFunction: call it with keyword inputs
  named as in the signature; it returns a dict of outputs.
  """

  def __init__(self, export_dir: str, tags: Tags = MODE_TAGS['infer']):
    self.tags = _tag_set(tags)
    read_meta_graph(export_dir, self.tags)  # A clear error for wrong tags.
    self._loaded = tf.saved_model.load(export_dir, tags=list(self.tags))
    self._signatures = dict(self._loaded.signatures)

  def __getitem__(self, key: str):
    return self._signatures[key]

  def __iter__(self) -> Iterator[str]:
    return iter(self._signatures)

  def __len__(self) -> int:
    return len(self._signatures)


class TrainStep:
  """One training step of the exported train graph per call.

  `step(**inputs)` feeds the training signature's inputs (features and
  labels, named as in the signature), runs the train op once and returns
  the loss computed in that step (before the update, as `sess.run([loss,
  train_op])` does). The variables live in this object: later calls continue
  from the updated values; `variables` exposes them, e.g. to save with
  `tf.train.Checkpoint` or to copy into a serving graph.
  """

  def __init__(self, export_dir: str, tags: Tags = MODE_TAGS['train'],
               signature_key: str = None, loss_key: str = 'loss'):
    self.tags = _tag_set(tags)
    meta_graph_def = read_meta_graph(export_dir, self.tags)
    self.signature_key, signature_def = _signature(
        meta_graph_def, signature_key, ('train',), 'training')
    if loss_key not in signature_def.outputs:
      raise ValueError(f'loss_key: signature {self.signature_key!r} has '
                       f'outputs {sorted(signature_def.outputs)}, not '
                       f'{loss_key!r}')
    collections = meta_graph_def.collection_def
    if (_TRAIN_OP_COLLECTION not in collections or
        not collections[_TRAIN_OP_COLLECTION].node_list.value):
      raise ValueError(f'tags: the MetaGraphDef tagged {list(self.tags)} of '
                       f'{export_dir!r} has no train op '
                       f'({_TRAIN_OP_COLLECTION} collection)')
    loaded = tf.saved_model.load(export_dir, tags=list(self.tags))
    train_ops = loaded.graph.get_collection(_TRAIN_OP_COLLECTION)
    self._call = _PrunedCall(
        loaded, signature_def,
        [signature_def.outputs[loss_key].name] + list(train_ops))
    self.input_keys = self._call.input_keys
    self.variables = tuple(loaded.variables)

  def __call__(self, **inputs) -> tf.Tensor:
    return self._call.call(inputs)[0]


class EvalMetrics:
  """The exported eval graph's streaming metrics.

  `update(**inputs)` runs every metric's update op on one batch and returns
  the updated values; `result()` returns the metric values accumulated so
  far; `reset()` zeroes the accumulators. Metric names are the
  `eval_metric_ops` keys (the signature outputs `metrics/<name>/update_op`
  and `metrics/<name>/value`).
  """

  def __init__(self, export_dir: str, tags: Tags = MODE_TAGS['eval'],
               signature_key: str = None):
    self.tags = _tag_set(tags)
    meta_graph_def = read_meta_graph(export_dir, self.tags)
    self.signature_key, signature_def = _signature(
        meta_graph_def, signature_key, ('eval',), 'eval')
    outputs = signature_def.outputs
    names = sorted(k[len(_METRICS_PREFIX):-len(_UPDATE_SUFFIX)]
                   for k in outputs if k.startswith(_METRICS_PREFIX) and
                   k.endswith(_UPDATE_SUFFIX))
    if not names:
      raise ValueError(f'signature {self.signature_key!r} has no '
                       f'metrics/<name>/update_op outputs: {sorted(outputs)}')
    self.metric_names: Tuple[str, ...] = tuple(names)
    loaded = tf.saved_model.load(export_dir, tags=list(self.tags))

    def tensor(name, suffix):
      return outputs[_METRICS_PREFIX + name + suffix].name

    self._update = _PrunedCall(
        loaded, signature_def, {n: tensor(n, _UPDATE_SUFFIX) for n in names})
    self._value = loaded.prune(
        feeds=[], fetches={n: tensor(n, _VALUE_SUFFIX) for n in names})
    accumulators = (
        loaded.graph.get_collection(_METRIC_VARIABLES_COLLECTION) or
        loaded.graph.get_collection(_LOCAL_VARIABLES_COLLECTION))
    self._reset = (loaded.prune(feeds=[], fetches=[
        v.initializer for v in accumulators]) if accumulators else None)
    self.input_keys = self._update.input_keys

  def update(self, **inputs) -> Dict[str, tf.Tensor]:
    """Runs every metric's update op on one batch; returns the new values."""
    return self._update.call(inputs)

  def result(self) -> Dict[str, tf.Tensor]:
    """The metric values accumulated since the last reset."""
    return self._value()

  def reset(self) -> None:
    """Zeroes the metrics' accumulators."""
    if self._reset is not None:
      self._reset()


def load_mode(export_dir: str, mode: str, tags: Tags = None
             ) -> Union[TrainStep, EvalMetrics, ServingSignatures]:
  """The TF2 callables for one mode of a multi-mode export.

  Args:
    export_dir: the SavedModel directory.
    mode: a `tf.estimator.ModeKeys` value: 'train' -> TrainStep, 'eval' ->
      EvalMetrics, 'infer' (PREDICT) -> ServingSignatures.
    tags: the tag set, if the export used custom tags.

  Raises:
    ValueError: unknown mode, no MetaGraphDef with the tags, or the graph
      lacks what the mode needs (train op, metrics).
  """
  if mode not in MODE_TAGS:
    raise ValueError(f'mode: expected one of {sorted(MODE_TAGS)} '
                     f"(tf.estimator.ModeKeys; PREDICT is 'infer'), got "
                     f'{mode!r}')
  tags = MODE_TAGS[mode] if tags is None else tags
  if mode == 'train':
    return TrainStep(export_dir, tags)
  if mode == 'eval':
    return EvalMetrics(export_dir, tags)
  return ServingSignatures(export_dir, tags)
