"""TF Serving warmup records: built from inputs, read back and replayed.

TF Serving replays `assets.extra/tf_serving_warmup_requests`, a TFRecord
file of `PredictionLog` protos, before a new version takes traffic. This
module turns warmup inputs into such records, one per chosen serving
signature with every input in one batch:

- a classify / regress signature gets a `ClassifyLog` / `RegressLog` whose
  request carries the inputs as `tf.Example`s;
- a predict signature gets a `PredictLog` with one `TensorProto` per input:
  serialized `tf.Example`s for an input a ParseExample op reads, otherwise
  the tensor itself (for a raw signature the parsed features, computed by
  running the graph's own parser on the examples).

Inputs are `tf.train.Example`s, serialized examples or feature dicts
(feature key -> value or list of values; for a signature without a parser,
input key -> one row). With no inputs, the synthetic ones `verify` uses.

The protos come from the `tensorflow-serving-api` package, imported only
here and only when records are built or read; see docs/loading.md for
installing it beside `tensorflow-cpu`.
"""

import dataclasses
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from multimode_export import errors
from multimode_export.checks import _synthetic_inputs as synthetic_inputs

FILE_NAME = 'tf_serving_warmup_requests'
# TF Serving refuses a warmup file with more records than this.
MAX_RECORDS = 1000
_CLASSIFY = tf.saved_model.CLASSIFY_METHOD_NAME
_REGRESS = tf.saved_model.REGRESS_METHOD_NAME
_PREDICT = tf.saved_model.PREDICT_METHOD_NAME
_INSTALL_HINT = ('pip install --no-deps tensorflow-serving-api==<your '
                 'TensorFlow version> (see docs/loading.md)')


def serving_apis():
  """The `tensorflow_serving.apis` proto modules, as a namespace.

  Raises:
    ImportError: tensorflow-serving-api is not installed; the message says
      how to install it beside tensorflow-cpu.
  """
  try:
    # pylint: disable=g-import-not-at-top
    from tensorflow_serving.apis import classification_pb2
    from tensorflow_serving.apis import input_pb2
    from tensorflow_serving.apis import predict_pb2
    from tensorflow_serving.apis import prediction_log_pb2
    from tensorflow_serving.apis import regression_pb2
  except ImportError as e:
    raise ImportError('TF Serving warmup records need the protos of '
                      f'tensorflow-serving-api: {_INSTALL_HINT}') from e
  return _Apis(classification_pb2, input_pb2, predict_pb2, prediction_log_pb2,
               regression_pb2)


@dataclasses.dataclass(frozen=True)
class _Apis:
  classification_pb2: object
  input_pb2: object
  predict_pb2: object
  prediction_log_pb2: object
  regression_pb2: object


def _as_example(item, index: int, features) -> tf.train.Example:
  """One warmup input as a tf.Example (feature dicts typed by the parser)."""
  if isinstance(item, tf.train.Example):
    return item
  if isinstance(item, bytes):
    try:
      return tf.train.Example.FromString(item)
    except Exception as e:  # pylint: disable=broad-except
      raise errors.WarmupRequestsError(
          f'warmup_requests[{index}]: bytes that are not a serialized '
          f'tf.Example ({type(e).__name__})', item) from e
  dtypes = {f.key: f.dtype for f in features}
  example = tf.train.Example()
  for key, value in item.items():
    if key not in dtypes:
      raise errors.WarmupRequestsError(
          f'warmup_requests[{index}]: feature {key!r} is not parsed by the '
          f'serve graph (it parses {sorted(dtypes)})', item)
    values = np.asarray(value).reshape(-1).tolist()
    entry = example.features.feature[key]
    if dtypes[key] == tf.string:
      entry.bytes_list.value.extend(
          v.encode('utf-8') if isinstance(v, str) else v for v in values)
    elif dtypes[key].is_integer:
      entry.int64_list.value.extend(int(v) for v in values)
    else:
      entry.float_list.value.extend(float(v) for v in values)
  return example


@dataclasses.dataclass(frozen=True)
class _Signature:
  key: str
  signature_def: object
  example_input: Optional[str]  # the input key a parser reads, if any
  features: Tuple[synthetic_inputs.ExampleFeature, ...]


def _describe_signature(key, signature_def, index) -> _Signature:
  inputs = signature_def.inputs
  if len(inputs) == 1:
    [(input_key, info)] = inputs.items()
    if info.dtype == tf.string.as_datatype_enum:
      features = index.example_features(info.name)
      if features is not None:
        return _Signature(key, signature_def, input_key, tuple(features))
  return _Signature(key, signature_def, None, ())


def _signatures(meta_graph_def, keys: Optional[Sequence[str]]
               ) -> List[_Signature]:
  index = synthetic_inputs.GraphIndex(meta_graph_def.graph_def)
  available = sorted(k for k, v in meta_graph_def.signature_def.items()
                     if v.method_name in (_CLASSIFY, _REGRESS, _PREDICT))
  if keys is None:
    keys = available
  for key in keys:
    if key not in available:
      raise errors.WarmupRequestsError(
          f'warmup_signatures: {key!r} is not a serving signature of the '
          f'serve graph (it has {available})', key)
  return [_describe_signature(k, meta_graph_def.signature_def[k], index)
          for k in keys]


def _tensor_inputs(signature: _Signature, items, examples, parsers, graph
                  ) -> Dict[str, np.ndarray]:
  """A tensor signature's inputs: from feature dicts, or parsed examples."""
  inputs = signature.signature_def.inputs
  if not parsers:
    for index, item in enumerate(items):
      if not isinstance(item, Mapping) or set(item) != set(inputs):
        raise errors.WarmupRequestsError(
            f'warmup_requests[{index}]: signature {signature.key!r} takes the '
            f'inputs {sorted(inputs)} and the serve graph parses no '
            'tf.Example: give feature dicts with exactly those keys', item)
    return {k: np.stack([np.asarray(item[k], tf.as_dtype(
        inputs[k].dtype).as_numpy_dtype) for item in items])
            for k in inputs}
  parser = parsers[0]
  feed = {parser.signature_def.inputs[parser.example_input].name:
              np.array([e.SerializeToString() for e in examples], object)}
  try:
    with tf.compat.v1.Session(graph=graph) as session:
      return session.run({k: v.name for k, v in inputs.items()}, feed)
  except tf.errors.OpError as e:
    raise errors.WarmupRequestsError(
        'warmup_requests: the serve graph cannot parse the given inputs '
        f'for {signature.key!r}: {e.message.splitlines()[0]}', items) from e


def _request_inputs(signature: _Signature, items, parsers, graph, index):
  """Serialized examples (a parsed input) or tensors, for one signature."""
  if items is None:
    return synthetic_inputs.signature_feeds(signature.signature_def, index)
  features = signature.features or (parsers[0].features if parsers else ())
  examples = ([_as_example(item, i, features) for i, item in enumerate(items)]
              if parsers else None)
  if signature.example_input is not None:
    return {signature.example_input: np.array(
        [e.SerializeToString() for e in examples], object)}
  return _tensor_inputs(signature, items, examples, parsers, graph)


def _log(apis, signature: _Signature, inputs: Dict[str, np.ndarray]) -> bytes:
  """One PredictionLog for `signature` fed `inputs`, serialized."""
  log = apis.prediction_log_pb2.PredictionLog()
  method = signature.signature_def.method_name
  if method in (_CLASSIFY, _REGRESS):
    request = (log.classify_log.request if method == _CLASSIFY
               else log.regress_log.request)
    [serialized] = inputs.values()
    request.input.example_list.examples.extend(
        tf.train.Example.FromString(s) for s in serialized.reshape(-1))
  else:
    request = log.predict_log.request
    for key, value in inputs.items():
      request.inputs[key].CopyFrom(tf.make_tensor_proto(
          value, dtype=signature.signature_def.inputs[key].dtype))
  request.model_spec.signature_name = signature.key
  return log.SerializeToString()


def build_records(meta_graph_def, graph: tf.Graph, requests,
                  signature_keys: Optional[Sequence[str]] = None
                 ) -> Tuple[bytes, ...]:
  """Serialized `PredictionLog`s, one per chosen serving signature.

  Args:
    meta_graph_def: the serve MetaGraphDef.
    graph: its live graph (parsers run in it to make raw inputs).
    requests: True for synthetic inputs, or a non-empty list of
      `tf.train.Example`s, serialized examples or feature dicts.
    signature_keys: the signatures to warm up; None for every classify,
      regress and predict signature.

  Raises:
    errors.WarmupRequestsError: a request or signature key is unusable.
    ImportError: tensorflow-serving-api is not installed.
  """
  apis = serving_apis()
  items = None if requests is True else list(requests)
  signatures = _signatures(meta_graph_def, signature_keys)
  parsers = [s for s in signatures if s.example_input is not None] or [
      s for s in _signatures(meta_graph_def, None)
      if s.example_input is not None]
  index = synthetic_inputs.GraphIndex(meta_graph_def.graph_def)
  records = tuple(
      _log(apis, s, _request_inputs(s, items, parsers, graph, index))
      for s in signatures)
  if len(records) > MAX_RECORDS:
    raise errors.WarmupRequestsError(
        f'warmup_signatures: {len(records)} records, TF Serving reads at most '
        f'{MAX_RECORDS}', signature_keys)
  return records


def check_requests(requests, signature_keys) -> None:
  """Validates the `warmup_requests` / `warmup_signatures` arguments' types.

  Raises:
    TypeError: `requests` is not None, a bool or a list of examples,
      serialized examples or dicts; or `signature_keys` is not a list of str.
    errors.WarmupRequestsError: an empty list.
  """
  if requests is None or isinstance(requests, bool):
    return
  if isinstance(requests, (str, bytes, Mapping)) or not isinstance(
      requests, Sequence):
    raise TypeError('warmup_requests: expected True or a list of '
                    'tf.train.Example, serialized examples or feature dicts, '
                    f'got {type(requests).__name__}')
  if not requests:
    raise errors.WarmupRequestsError(
        'warmup_requests: expected at least one request, got an empty list',
        requests)
  for index, item in enumerate(requests):
    if not isinstance(item, (tf.train.Example, bytes, Mapping)):
      raise TypeError(f'warmup_requests[{index}]: expected a tf.train.Example, '
                      'serialized example or feature dict, got '
                      f'{type(item).__name__}')
  if signature_keys is not None and (
      isinstance(signature_keys, str) or
      not all(isinstance(k, str) for k in signature_keys)):
    raise TypeError('warmup_signatures: expected a list of signature keys, '
                    f'got {signature_keys!r}')


def write_records(path: str, records: Sequence[bytes]) -> None:
  """Writes `records` as a TFRecord file at `path` (any TF filesystem)."""
  with tf.io.TFRecordWriter(path) as writer:
    for record in records:
      writer.write(record)


def read_records(path: str) -> List[object]:
  """The `PredictionLog`s of a warmup file, parsed (in any TF mode)."""
  apis = serving_apis()
  return [apis.prediction_log_pb2.PredictionLog.FromString(r)
          for r in tf.compat.v1.io.tf_record_iterator(path)]


def replay_feeds(log, meta_graph_def) -> Tuple[str, Dict[str, np.ndarray]]:
  """The signature key a PredictionLog names and its inputs, as arrays.

  Raises:
    ValueError: the log is of a kind TF Serving cannot replay from this
      package's records, or names a signature or input the graph lacks.
  """
  kind = log.WhichOneof('log_type')
  if kind not in ('predict_log', 'classify_log', 'regress_log'):
    raise ValueError(f'a {kind} record; only predict, classify and regress '
                     'records are written and checked')
  request = getattr(log, kind).request
  key = (request.model_spec.signature_name or
         tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY)
  if key not in meta_graph_def.signature_def:
    raise ValueError(f'signature {key!r} is not in the serve graph')
  signature_def = meta_graph_def.signature_def[key]
  if kind == 'predict_log':
    feeds = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
    if set(feeds) != set(signature_def.inputs):
      raise ValueError(f'inputs {sorted(feeds)} do not match the inputs '
                       f'{sorted(signature_def.inputs)} of {key!r}')
    return key, feeds
  [input_key] = signature_def.inputs
  return key, {input_key: np.array(
      [e.SerializeToString() for e in request.input.example_list.examples],
      object)}
