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

Inputs the graph computes itself need not be fed: only those that are
placeholders are required (e.g. TFMA's eval graphs list the parsed
`features/<k>`, `labels`, `input_refs` and `tfma/version` as inputs next to
the serialized `inputs/examples` they are computed from). A sparse input
takes a `tf.SparseTensor`, a ragged one a `tf.RaggedTensor`; a tensor listed
under several keys is fed once. `tf.saved_model.load` cannot load a graph
whose signature lists one tensor under several keys (all TFMA eval graphs):
`load_tag_set` imports such a graph with `tf.compat.v1.wrap_function`
instead.

This module uses only public TensorFlow (`tf.saved_model.load`, `prune`)
and the SavedModel proto, and imports nothing else from this package: it
works unchanged in TensorFlow 2.16+, where `tf.estimator` (and therefore
the rest of this package) no longer imports. Copy it into such a project, or
follow docs/loading.md.
"""

import uuid
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
_INIT_OP_COLLECTIONS = ('saved_model_main_op', 'legacy_init_op')
_INIT_OP_SIGNATURE_KEY = '__saved_model_init_op'
# TF1 builders (Estimator exports, this package's writer) list asset files
# as packed AssetFileDefs in this collection; `tf.saved_model.save` uses the
# MetaGraphDef's `asset_file_def` field. saved_model/_format.py reads both
# too; this module keeps its own copy to stay standalone.
_ASSETS_COLLECTION = 'saved_model_assets'
_PLACEHOLDER_OPS = ('Placeholder',)

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


def input_tensor_names(tensor_info) -> Tuple[str, ...]:
  """The graph tensors behind one signature input or output, in order.

  One name for a plain tensor; indices, values and dense shape for a sparse
  (COO) one; the components (e.g. a ragged tensor's flat values, then its
  row splits) for a composite one.

  Raises:
    ValueError: an encoding this function does not know.
  """
  encoding = tensor_info.WhichOneof('encoding')
  if encoding == 'name':
    return (tensor_info.name,)
  if encoding == 'coo_sparse':
    coo = tensor_info.coo_sparse
    return (coo.indices_tensor_name, coo.values_tensor_name,
            coo.dense_shape_tensor_name)
  if encoding == 'composite_tensor':
    return tuple(name for component in tensor_info.composite_tensor.components
                 for name in input_tensor_names(component))
  raise ValueError(f'tensor_info: unsupported encoding {encoding!r}')


def repeats_input_tensors(signature_def) -> bool:
  """Whether a signature lists one graph tensor under several input keys."""
  names = [n for info in signature_def.inputs.values()
           for n in input_tensor_names(info)]
  return len(names) != len(set(names))


def _rename_attr_functions(attr, names: Mapping[str, str]) -> None:
  if attr.HasField('func'):
    attr.func.name = names.get(attr.func.name, attr.func.name)
    for nested in attr.func.attr.values():
      _rename_attr_functions(nested, names)
  if attr.HasField('list'):
    for func in attr.list.func:
      func.name = names.get(func.name, func.name)


def _rename_node_functions(nodes, names: Mapping[str, str]) -> None:
  for node in nodes:
    node.op = names.get(node.op, node.op)
    for attr in node.attr.values():
      _rename_attr_functions(attr, names)


def _with_unique_function_names(meta_graph_def):
  """A copy whose graph functions are renamed for this import only.

  Functions of a GraphDef (e.g. control flow v2 branches) are registered in
  the process by name; two imports with one name and different bodies
  collide. `tf.saved_model.load` renames them the same way.
  """
  library = meta_graph_def.graph_def.library
  if not library.function:
    return meta_graph_def
  suffix = '_imported_' + uuid.uuid4().hex[:12]
  names = {f.signature.name: f.signature.name + suffix
           for f in library.function}
  renamed = type(meta_graph_def)()
  renamed.CopyFrom(meta_graph_def)
  graph_def = renamed.graph_def
  _rename_node_functions(graph_def.node, names)
  for function in graph_def.library.function:
    function.signature.name = names[function.signature.name]
    _rename_node_functions(function.node_def, names)
  for gradient in graph_def.library.gradient:
    gradient.function_name = names.get(gradient.function_name,
                                       gradient.function_name)
    gradient.gradient_func = names.get(gradient.gradient_func,
                                       gradient.gradient_func)
  return renamed


def _asset_file_defs(meta_graph_def) -> list:
  """Every asset of a MetaGraphDef: its `asset_file_def` field and the
  assets collection, each tensor once."""
  found = {a.tensor_info.name: a for a in meta_graph_def.asset_file_def}
  collections = meta_graph_def.collection_def
  packed_assets = (collections[_ASSETS_COLLECTION].any_list.value
                   if _ASSETS_COLLECTION in collections else ())
  for packed in packed_assets:
    asset = meta_graph_pb2.AssetFileDef()
    if packed.Unpack(asset):
      found.setdefault(asset.tensor_info.name, asset)
  return list(found.values())


class ImportedGraph:
  """A TF1 MetaGraphDef imported into TF2 with `tf.compat.v1.wrap_function`.

  What `tf.saved_model.load` returns for a TF1 SavedModel, less the
  signatures (it cannot build one that repeats an input tensor): the
  variables are restored from `variables/` and the main op has run with the
  asset paths fed. Cut functions out with `prune(feeds, fetches)`.

  Attributes:
    graph: the imported graph.
    variables: its variables.
    signatures: always empty; prune instead.
  """

  def __init__(self, export_dir: str, meta_graph_def):
    savers = []
    renamed = _with_unique_function_names(meta_graph_def)
    wrapped = tf.compat.v1.wrap_function(
        lambda: savers.append(tf.compat.v1.train.import_meta_graph(renamed)),
        [])
    self._wrapped = wrapped  # Owns the variables the pruned functions use.
    self.graph = wrapped.graph
    self.prune = wrapped.prune
    saver_def = meta_graph_def.saver_def
    if saver_def.restore_op_name:
      restore = wrapped.prune(
          feeds=[saver_def.filename_tensor_name],
          fetches=[self.graph.as_graph_element(saver_def.restore_op_name)])
      restore(tf.constant(tf.io.gfile.join(export_dir, 'variables',
                                           'variables')))
    self._run_init_op(export_dir, meta_graph_def)
    self.variables = tuple(self.graph.variables)
    self.signatures = {}

  def _run_init_op(self, export_dir: str, meta_graph_def) -> None:
    collections = meta_graph_def.collection_def
    names = next((list(collections[k].node_list.value)
                  for k in _INIT_OP_COLLECTIONS if k in collections), None)
    init_signature = meta_graph_def.signature_def.get(_INIT_OP_SIGNATURE_KEY)
    if names is None and init_signature is not None:
      names = [v.name for v in init_signature.outputs.values()]
    with self.graph.as_default():
      if names is None:  # What the TF1 loader runs when there is no main op.
        init_ops = [tf.compat.v1.local_variables_initializer(),
                    tf.compat.v1.tables_initializer()]
      else:
        init_ops = [self.graph.as_graph_element(n) for n in names]
      anchor = tf.constant(0)  # prune needs a tensor to fetch.
    assets = _asset_file_defs(meta_graph_def)
    init = self.prune(
        feeds=[self.graph.as_graph_element(a.tensor_info.name) for a in assets],
        fetches=[anchor] + init_ops)
    init(*[tf.constant(tf.io.gfile.join(export_dir, 'assets', a.filename))
           for a in assets])


def load_tag_set(export_dir: str, tags: Tags):
  """Loads one tag set for TF2: `tf.saved_model.load` when it can.

  A MetaGraphDef with a signature that lists one tensor under several
  input keys (TFMA's eval graphs: `features/<label>` and `labels`) makes
  `tf.saved_model.load` fail; it is imported as an `ImportedGraph` instead.
  Either result has `graph`, `variables`, `signatures` and `prune`.

  Raises:
    ValueError: no MetaGraphDef with the tags (see `read_meta_graph`).
  """
  tags = _tag_set(tags)
  meta_graph_def = read_meta_graph(export_dir, tags)
  if any(repeats_input_tensors(s) for s in meta_graph_def.signature_def.values()):
    return ImportedGraph(export_dir, meta_graph_def)
  return tf.saved_model.load(export_dir, tags=list(tags))


def _components(tensor_info, value) -> list:
  """A signature input's value as the tensors `input_tensor_names` lists."""
  encoding = tensor_info.WhichOneof('encoding')
  if encoding == 'name':
    return [tf.convert_to_tensor(value, dtype=tf.as_dtype(tensor_info.dtype))]
  if encoding == 'coo_sparse':
    sparse = tf.SparseTensor.from_value(value)
    return [sparse.indices, sparse.values, sparse.dense_shape]
  return tf.nest.flatten(value, expand_composites=True)


class _PrunedCall:
  """Keyword inputs -> a function pruned for exactly the inputs given.

  Placeholder inputs are required, the others (tensors the graph computes
  itself) optional; one pruned function per set of given keys, each graph
  tensor fed once (from the first key, in sorted order, that lists it).
  """

  def __init__(self, loaded, signature_def, fetches):
    self._loaded = loaded  # Owns the variables the pruned functions use.
    self._inputs = signature_def.inputs
    self._fetches = fetches
    self._functions = {}
    self.input_keys: Tuple[str, ...] = tuple(sorted(self._inputs))
    self.required_keys: Tuple[str, ...] = tuple(
        k for k in self.input_keys if all(
            loaded.graph.as_graph_element(n).op.type in _PLACEHOLDER_OPS
            for n in input_tensor_names(self._inputs[k])))

  def _feeds(self, keys: Tuple[str, ...]):
    """(key, position) of each unique tensor, and the pruned function."""
    if keys not in self._functions:
      seen, order = set(), []
      for key in keys:
        for position, name in enumerate(input_tensor_names(self._inputs[key])):
          if name not in seen:
            seen.add(name)
            order.append((key, position, name))
      function = self._loaded.prune(feeds=[n for _, _, n in order],
                                    fetches=self._fetches)
      self._functions[keys] = ([(k, p) for k, p, _ in order], function)
    return self._functions[keys]

  def call(self, inputs: Mapping[str, object]):
    keys = tuple(sorted(inputs))
    unknown = set(keys) - set(self.input_keys)
    missing = set(self.required_keys) - set(keys)
    if unknown or missing:
      optional = sorted(set(self.input_keys) - set(self.required_keys))
      raise TypeError(f'expected inputs {list(self.required_keys)}' +
                      (f' (optional: {optional})' if optional else '') +
                      f', got {list(keys)}')
    order, function = self._feeds(keys)
    components = {k: _components(self._inputs[k], inputs[k]) for k in keys}
    return function(*[components[k][p] for k, p in order])


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
    if key not in self._signatures:
      # A canned estimator exported with a raw receiver has no
      # 'serving_default' (only 'predict'): say what there is.
      raise KeyError(f'signature {key!r}: the MetaGraphDef tagged '
                     f'{list(self.tags)} has signatures '
                     f'{sorted(self._signatures)}')
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
    loaded = load_tag_set(export_dir, self.tags)
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

  Only the placeholder inputs are required: for an eval graph of TFMA's
  `EvalInputReceiver`, `update(**{'inputs/examples': serialized})`; its
  parsed `features/<k>`, `labels`, `input_refs` and `tfma/version` may be
  given too (all of them; a sparse one as a `tf.SparseTensor`).
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
    loaded = load_tag_set(export_dir, self.tags)

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
