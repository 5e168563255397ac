"""Tiny real estimators, receivers and load-and-run helpers shared by tests.

Everything here trains real `tf.estimator` models for a few steps on small
in-memory data; nothing is mocked.
"""

import hashlib
import json
import os
import posixpath
import re
import shutil
import tempfile
from typing import Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf
from absl.testing import absltest
from tensorflow.core.protobuf import meta_graph_pb2
# A custom SaverBuilder needs the base class, which has no public name.
from tensorflow.python.training import saver as saver_lib

import multimode_export
import multimode_export.exporter

ModeKeys = tf.estimator.ModeKeys
FEATURE_DIM = 3


class ClassRootMixin:
  """Gives a test class `cls.root`, a directory made once for the class.

  It lies under absltest's test tmpdir, on the same filesystem as
  `create_tempdir()` (Bazel's sandbox mounts /tmp apart from TEST_TMPDIR), so
  an export can hard-link a checkpoint trained in it. Removed after the class.
  Put it before the TestCase base: `class T(models.ClassRootMixin, ...)`.
  """

  root: str

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = tempfile.mkdtemp(prefix=cls.__name__,
                                dir=absltest.get_default_test_tmpdir())

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.root, ignore_errors=True)
    super().tearDownClass()


def make_data(n: int = 64, seed: int = 0):
  rng = np.random.RandomState(seed)
  x = rng.rand(n, FEATURE_DIM).astype(np.float32)
  y = (x @ np.array([[1.0], [-2.0], [0.5]], np.float32) + 0.3).astype(
      np.float32)
  return x, y


def input_fn(batch_size: int = 16, seed: int = 0):
  x, y = make_data(seed=seed)

  def fn():
    return tf.data.Dataset.from_tensor_slices(({'x': x}, y)).repeat().batch(
        batch_size)
  return fn


def linear_model_fn(features, labels, mode, params):
  """A linear regressor with Adam, an extra PREDICT-only output head.

  params: `partitions` (split `w` with a fixed_size_partitioner),
  `predict_only_variable` (PREDICT creates a variable no other mode has),
  `saver` ('v1': the Scaffold saver writes V1-format checkpoints;
  'opaque_names': its restore op hides the checkpoint keys from the graph).
  """
  partitions = params.get('partitions', 1)
  x = features['x']
  partitioner = (tf.compat.v1.fixed_size_partitioner(partitions)
                 if partitions > 1 else None)
  w = tf.compat.v1.get_variable('w', shape=[FEATURE_DIM, 1],
                                initializer=tf.compat.v1.zeros_initializer(),
                                partitioner=partitioner)
  b = tf.compat.v1.get_variable('b', shape=[1],
                                initializer=tf.compat.v1.zeros_initializer())
  if params.get('predict_only_variable') and mode == ModeKeys.PREDICT:
    scale = tf.compat.v1.get_variable(
        'predict_scale', shape=[], initializer=tf.compat.v1.ones_initializer())
  else:
    scale = 1.0
  predictions = (tf.matmul(x, w) + b) * scale
  export_outputs = {
      'serving_default': tf.estimator.export.PredictOutput(
          {'y': predictions}),
      'regression': tf.estimator.export.RegressionOutput(predictions),
  }
  if params.get('extra_signature'):
    # A second PredictOutput: serve gets a signature besides serving_default
    # (RegressionOutput needs serialized tf.Examples, a raw receiver drops it).
    export_outputs['doubled'] = tf.estimator.export.PredictOutput(
        {'y2': 2.0 * predictions})
  if mode == ModeKeys.PREDICT:
    return tf.estimator.EstimatorSpec(mode, predictions={'y': predictions},
                                      export_outputs=export_outputs,
                                      scaffold=_scaffold(params))
  loss = tf.compat.v1.losses.mean_squared_error(labels, predictions)
  metrics = {'mae': tf.compat.v1.metrics.mean_absolute_error(labels,
                                                             predictions)}
  train_op = None
  if mode == ModeKeys.TRAIN:
    train_op = tf.compat.v1.train.AdamOptimizer(0.1).minimize(
        loss, global_step=tf.compat.v1.train.get_global_step())
  return tf.estimator.EstimatorSpec(
      mode, predictions={'y': predictions}, loss=loss, train_op=train_op,
      eval_metric_ops=metrics, export_outputs=export_outputs,
      scaffold=_scaffold(params))


class _OpaqueNamesSaverBuilder(saver_lib.BaseSaverBuilder):
  """Restores through RestoreV2 ops whose key names are not plain constants.

  Stands for an exotic custom saver whose keys cannot be read from the graph.
  """

  def restore_op(self, filename_tensor, saveable, preferred_shard):
    del preferred_shard
    return [tf.raw_ops.RestoreV2(
        prefix=filename_tensor, tensor_names=tf.identity([spec.name]),
        shape_and_slices=tf.identity([spec.slice_spec]),
        dtypes=[spec.dtype])[0] for spec in saveable.specs]


def _scaffold(params) -> Optional[tf.compat.v1.train.Scaffold]:
  """params['saver']: 'v1' (V1-format checkpoints) or 'opaque_names'."""
  kind = params.get('saver')
  if kind is None:
    return None
  if kind == 'v1':
    saver = tf.compat.v1.train.Saver(
        write_version=tf.compat.v1.train.SaverDef.V1)
  elif kind == 'opaque_names':
    saver = tf.compat.v1.train.Saver(builder=_OpaqueNamesSaverBuilder())
  else:
    raise ValueError(f"params['saver']: expected 'v1' or 'opaque_names', got "
                     f'{kind!r}')
  return tf.compat.v1.train.Scaffold(saver=saver)


class MixinEstimator(multimode_export.MultiModeExportMixin,
                     tf.estimator.Estimator):
  """A custom Estimator subclass that uses the mixin."""


def train_custom(model_dir: str, steps: int = 5, estimator_cls=None,
                 **params) -> tf.estimator.Estimator:
  cls = estimator_cls or tf.estimator.Estimator
  est = cls(linear_model_fn, model_dir=model_dir, params=params,
            config=tf.estimator.RunConfig(tf_random_seed=1))
  est.train(input_fn(), steps=steps)
  return est


def supervised_receiver_fn():
  return tf.estimator.experimental.build_raw_supervised_input_receiver_fn(
      {'x': tf.zeros([1, FEATURE_DIM])},
      tf.zeros([1, 1]))


def serving_receiver_fn():
  return tf.estimator.export.build_raw_serving_input_receiver_fn(
      {'x': tf.zeros([1, FEATURE_DIM])})


def receiver_map(modes=(ModeKeys.TRAIN, ModeKeys.EVAL, ModeKeys.PREDICT)):
  fns = {ModeKeys.TRAIN: supervised_receiver_fn(),
         ModeKeys.EVAL: supervised_receiver_fn(),
         ModeKeys.PREDICT: serving_receiver_fn()}
  return {m: fns[m] for m in modes}


TAGS = {ModeKeys.TRAIN: ['train'], ModeKeys.EVAL: ['eval'],
        ModeKeys.PREDICT: ['serve']}


def checkpoint_values(prefix: str) -> Dict[str, np.ndarray]:
  reader = tf.train.load_checkpoint(prefix)
  return {k: reader.get_tensor(k)
          for k in reader.get_variable_to_shape_map()}


def saved_variables(export_dir: str) -> Dict[str, np.ndarray]:
  return checkpoint_values(os.path.join(export_dir, 'variables', 'variables'))


def meta_graph_tags(export_dir: str) -> List[List[str]]:
  from tensorflow.python.tools import saved_model_utils  # pylint: disable=g-import-not-at-top
  return sorted(sorted(m.meta_info_def.tags) for m in
                saved_model_utils.read_saved_model(export_dir).meta_graphs)


def tf1_load(export_dir: str, tags: List[str]):
  """Loads a tag set in a fresh graph; returns (graph, session, meta_graph)."""
  graph = tf.Graph()
  session = tf.compat.v1.Session(graph=graph)
  with graph.as_default():
    meta = tf.compat.v1.saved_model.loader.load(session, tags, export_dir)
  return graph, session, meta


def run_signature(session, meta, key: str, feeds: Dict[str, np.ndarray]
                 ) -> Dict[str, np.ndarray]:
  sig = meta.signature_def[key]
  feed = {sig.inputs[k].name: v for k, v in feeds.items()}
  fetch = {k: v.name for k, v in sig.outputs.items()}
  return session.run(fetch, feed)


def train_steps(export_dir: str, steps: int = 20, tags=('train',),
                feeds: Optional[Dict[str, np.ndarray]] = None) -> List[float]:
  """Runs train steps from the exported train graph; returns the losses.

  `feeds` maps the train signature's input keys to values (default: the
  custom model's `x` and `label`).
  """
  if feeds is None:
    x, y = make_data()
    feeds = {'x': x, 'label': y}
  graph, session, meta = tf1_load(export_dir, list(tags))
  with graph.as_default(), session:
    train_op = tf.compat.v1.get_collection('saved_model_train_op')[0]
    sig = meta.signature_def['train']
    loss = sig.outputs['loss'].name
    feed = {sig.inputs[k].name: v for k, v in feeds.items()}
    losses = []
    for _ in range(steps):
      value, _ = session.run([loss, train_op], feed)
      losses.append(float(value))
  return losses


def stock_export(estimator, export_dir_base: str,
                 modes=(ModeKeys.TRAIN, ModeKeys.EVAL, ModeKeys.PREDICT),
                 checkpoint_path: Optional[str] = None,
                 receivers: Optional[Dict[str, object]] = None,
                 **kwargs) -> str:
  """The stock `experimental_export_all_saved_models`; returns a str path.

  `receivers` replaces `receiver_map(modes)`; `kwargs` (assets_extra,
  as_text) go to the stock method.
  """
  path = estimator.experimental_export_all_saved_models(
      export_dir_base, receivers or receiver_map(modes),
      checkpoint_path=checkpoint_path, **kwargs)
  return path.decode('utf-8') if isinstance(path, bytes) else path


# ---------------------------------------------------------------------------
# Describing an export and comparing it with the stock one.

MODE_SETS = (
    ('train_only', (ModeKeys.TRAIN,)),
    ('eval_only', (ModeKeys.EVAL,)),
    ('predict_only', (ModeKeys.PREDICT,)),
    ('train_predict', (ModeKeys.TRAIN, ModeKeys.PREDICT)),
    ('eval_predict', (ModeKeys.EVAL, ModeKeys.PREDICT)),
    ('all', (ModeKeys.TRAIN, ModeKeys.EVAL, ModeKeys.PREDICT)),
)


def read_meta_graphs(export_dir: str):
  """The MetaGraphDefs of a SavedModel (saved_model.pb or .pbtxt)."""
  from tensorflow.python.tools import saved_model_utils  # pylint: disable=g-import-not-at-top
  return list(saved_model_utils.read_saved_model(export_dir).meta_graphs)


def _tensor_info(info) -> Tuple[str, Optional[Tuple[Optional[int], ...]]]:
  shape = tf.TensorShape(info.tensor_shape)
  dims = None if shape.rank is None else tuple(shape.as_list())
  return tf.as_dtype(info.dtype).name, dims


def describe_signatures(meta) -> Dict[str, tuple]:
  """key -> (method_name, {input: (dtype, shape)}, {output: (dtype, shape)})."""
  return {key: (sig.method_name,
                {k: _tensor_info(v) for k, v in sig.inputs.items()},
                {k: _tensor_info(v) for k, v in sig.outputs.items()})
          for key, sig in meta.signature_def.items()}


def describe_export(export_dir: str) -> Dict[Tuple[str, ...], dict]:
  """tag set -> {'signatures': ..., 'collections': ..., 'assets': ...}."""
  out = {}
  for meta in read_meta_graphs(export_dir):
    asset_names = []
    key = tf.compat.v1.saved_model.ASSETS_KEY
    packed_assets = (meta.collection_def[key].any_list.value
                     if key in meta.collection_def else [])
    for packed in packed_assets:
      asset = meta_graph_pb2.AssetFileDef()
      packed.Unpack(asset)
      asset_names.append(asset.filename)
    out[tuple(sorted(meta.meta_info_def.tags))] = {
        'signatures': describe_signatures(meta),
        'collections': sorted(meta.collection_def),
        'assets': sorted(asset_names),
    }
  return out


def comparable(value: np.ndarray) -> tuple:
  """A value as (dtype, shape, bytes); strings element by element."""
  value = np.asarray(value)
  if value.dtype == object or value.dtype.kind in 'SU':
    return ('string', value.shape, tuple(value.reshape(-1).tolist()))
  return (value.dtype.str, value.shape, value.tobytes())


def comparable_variables(export_dir: str) -> Dict[str, tuple]:
  return {k: comparable(v) for k, v in saved_variables(export_dir).items()}


def files_under(directory: str) -> Dict[str, bytes]:
  """Relative path -> contents of every file under `directory` ({} if none)."""
  out = {}
  if not os.path.isdir(directory):
    return out
  for root, _, names in os.walk(directory):
    for name in names:
      path = os.path.join(root, name)
      with open(path, 'rb') as f:
        out[os.path.relpath(path, directory)] = f.read()
  return out


def assert_same_as_stock(test, ours: str, stock: str) -> None:
  """Same tag sets, signatures, collections, variables (bytes) and assets."""
  ours_desc, stock_desc = describe_export(ours), describe_export(stock)
  test.assertEqual(sorted(ours_desc), sorted(stock_desc), 'tag sets')
  for tags, desc in stock_desc.items():
    test.assertEqual(sorted(ours_desc[tags]['signatures']),
                     sorted(desc['signatures']), f'signature keys of {tags}')
    test.assertEqual(ours_desc[tags]['signatures'], desc['signatures'],
                     f'signature inputs/outputs of {tags}')
    test.assertEqual(ours_desc[tags]['collections'], desc['collections'],
                     f'collections of {tags}')
    test.assertEqual(ours_desc[tags]['assets'], desc['assets'],
                     f'asset file defs of {tags}')
  ours_vars, stock_vars = (comparable_variables(ours),
                           comparable_variables(stock))
  test.assertEqual(sorted(ours_vars), sorted(stock_vars), 'variable names')
  for name in stock_vars:
    test.assertEqual(ours_vars[name], stock_vars[name], f'variable {name}')
  for sub in ('assets', 'assets.extra'):
    test.assertEqual(files_under(os.path.join(ours, sub)),
                     files_under(os.path.join(stock, sub)), sub)


# ---------------------------------------------------------------------------
# Loading every tag set and running it, TF1 loader and tf.saved_model.load.


def feeds_for(sig, raw: Dict[str, np.ndarray],
              examples: Optional[List[bytes]] = None) -> Dict[str, np.ndarray]:
  """Values for a signature's inputs: `raw[key]`, or serialized examples."""
  feeds = {}
  for key, info in sig.inputs.items():
    if key in raw:
      feeds[key] = raw[key]
    elif examples is not None and info.dtype == tf.string.as_datatype_enum:
      feeds[key] = np.array(examples, dtype=object)
    else:
      raise KeyError(f'no test value for input {key!r} of a signature')
  return feeds


def run_all_tf1(export_dir: str, raw: Dict[str, np.ndarray],
                examples: Optional[List[bytes]] = None
               ) -> Dict[Tuple[str, ...], Dict[str, Dict[str, np.ndarray]]]:
  """Loads each tag set in a fresh graph (TF1 loader), runs every signature.

  Returns:
    tag set -> signature key -> output key -> value.
  """
  out = {}
  for meta_def in read_meta_graphs(export_dir):
    tags = list(meta_def.meta_info_def.tags)
    graph, session, meta = tf1_load(export_dir, tags)
    with graph.as_default(), session:
      out[tuple(sorted(tags))] = {
          key: run_signature(session, meta, key,
                             feeds_for(meta.signature_def[key], raw, examples))
          for key in meta.signature_def}
  return out


def run_all_tf2(export_dir: str, raw: Dict[str, np.ndarray],
                examples: Optional[List[bytes]] = None
               ) -> Dict[Tuple[str, ...], Dict[str, Dict[str, np.ndarray]]]:
  """Like `run_all_tf1`, through `tf.saved_model.load(path, tags=...)`."""
  out = {}
  for meta_def in read_meta_graphs(export_dir):
    tags = sorted(meta_def.meta_info_def.tags)
    loaded = tf.saved_model.load(export_dir, tags=tags)
    results = {}
    for key, fn in loaded.signatures.items():
      feeds = feeds_for(meta_def.signature_def[key], raw, examples)
      results[key] = {k: v.numpy() for k, v in fn(
          **{k: tf.constant(v) for k, v in feeds.items()}).items()}
    out[tuple(tags)] = results
  return out


def run_eval_metrics(export_dir: str, feeds: Dict[str, np.ndarray],
                     updates: int = 3) -> Dict[str, Dict[str, float]]:
  """Runs the eval graph's metric update ops `updates` times, then values.

  Returns:
    metric name -> {'update': last update_op value, 'value': value op,
    'before': value op before any update}, as numpy arrays.
  """
  graph, session, meta = tf1_load(export_dir, ['eval'])
  sig = meta.signature_def['eval']
  names = sorted(k[len('metrics/'):-len('/value')] for k in sig.outputs
                 if k.startswith('metrics/') and k.endswith('/value'))
  feed = {sig.inputs[k].name: v for k, v in feeds.items()}
  value_fetch = {n: sig.outputs[f'metrics/{n}/value'].name for n in names}
  update_fetch = {n: sig.outputs[f'metrics/{n}/update_op'].name
                  for n in names}
  with graph.as_default(), session:
    before = session.run(value_fetch, feed)
    for _ in range(updates):
      updated = session.run(update_fetch, feed)
    after = session.run(value_fetch, feed)
  return {n: {'before': np.asarray(before[n]), 'update': np.asarray(updated[n]),
              'value': np.asarray(after[n])} for n in names}


def signature_feeds(export_dir: str, tags: List[str], key: str,
                    raw: Dict[str, np.ndarray],
                    examples: Optional[List[bytes]] = None
                   ) -> Dict[str, np.ndarray]:
  """`feeds_for` the signature `key` of the MetaGraphDef tagged `tags`."""
  meta = [m for m in read_meta_graphs(export_dir)
          if sorted(m.meta_info_def.tags) == sorted(tags)][0]
  return feeds_for(meta.signature_def[key], raw, examples)


# ---------------------------------------------------------------------------
# Feature-column data for canned estimators: a numeric `x` and a string `cat`
# looked up in a vocabulary FILE (which the export must carry in assets/).

VOCABULARY = ('a', 'b', 'c')
CATEGORIES = ('a', 'b', 'c', 'd')  # 'd' is out of vocabulary


def write_vocabulary(directory: str, name: str = 'vocab.txt') -> str:
  path = os.path.join(directory, name)
  with open(path, 'w') as f:
    f.write('\n'.join(VOCABULARY) + '\n')
  return path


def feature_columns(vocabulary_file: str):
  """(numeric x, categorical cat from the file, embedding of cat)."""
  x = tf.feature_column.numeric_column('x', shape=[FEATURE_DIM])
  cat = tf.feature_column.categorical_column_with_vocabulary_file(
      'cat', vocabulary_file)
  return x, cat, tf.feature_column.embedding_column(cat, 2)


def make_column_data(n: int = 32, seed: int = 0):
  """Returns (features dict, int64 class labels, float32 regression labels)."""
  rng = np.random.RandomState(seed)
  x = rng.rand(n, FEATURE_DIM).astype(np.float32)
  cat = np.array([[CATEGORIES[i % len(CATEGORIES)].encode()] for i in range(n)],
                 dtype=object)
  score = x @ np.array([1.0, -2.0, 0.5], np.float32) + np.array(
      [0.5 if c[0] == b'a' else 0.0 for c in cat], np.float32)
  classes = (score > np.median(score)).astype(np.int64)[:, None]
  return {'x': x, 'cat': cat}, classes, score[:, None].astype(np.float32)


def _feature(value: np.ndarray) -> tf.train.Feature:
  value = np.asarray(value).reshape(-1)
  if value.dtype.kind == 'f':
    return tf.train.Feature(float_list=tf.train.FloatList(value=value))
  if value.dtype.kind in 'iu':
    return tf.train.Feature(int64_list=tf.train.Int64List(value=value))
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(value)))


def serialize_examples(features: Dict[str, np.ndarray],
                       labels: Optional[np.ndarray] = None) -> List[bytes]:
  """One serialized tf.Example per row (with a `label` if given)."""
  columns = dict(features)
  if labels is not None:
    columns['label'] = labels
  n = len(next(iter(columns.values())))
  return [tf.train.Example(features=tf.train.Features(feature={
      k: _feature(v[i]) for k, v in columns.items()})).SerializeToString()
          for i in range(n)]


def column_input_fn(features, labels, batch_size: int = 8):
  def fn():
    return tf.data.Dataset.from_tensor_slices(
        (features, labels)).repeat().batch(batch_size)
  return fn


def raw_supervised_receiver_fn(features, labels):
  """build_raw_supervised_input_receiver_fn shaped like one batch row."""
  return tf.estimator.experimental.build_raw_supervised_input_receiver_fn(
      {k: tf.constant(v[:1]) for k, v in features.items()},
      tf.constant(labels[:1]))


def parsing_supervised_receiver_fn(feature_spec, label_spec):
  """A TRAIN/EVAL receiver fed serialized tf.Examples that carry a `label`."""
  from multimode_export import _tf_private  # pylint: disable=g-import-not-at-top

  def fn():
    serialized = tf.compat.v1.placeholder(tf.string, [None],
                                          name='input_example_tensor')
    parsed = tf.io.parse_example(serialized,
                                 dict(feature_spec, label=label_spec))
    labels = parsed.pop('label')
    return _tf_private.SupervisedInputReceiver(parsed, labels,
                                               {'examples': serialized})
  return fn


def lookup_ids(export_dir: str, tags: List[str], raw: Dict[str, np.ndarray],
               examples: Optional[List[bytes]] = None) -> List[np.ndarray]:
  """Loads a tag set in a fresh graph and fetches every table lookup's ids.

  The inputs of the tag set's first signature are fed from `raw` /
  `examples` (see `feeds_for`).
  """
  graph, session, meta = tf1_load(export_dir, tags)
  sig = meta.signature_def[sorted(meta.signature_def)[0]]
  lookups = [op.outputs[0] for op in graph.get_operations()
             if op.type == 'LookupTableFindV2']
  feeds = feeds_for(sig, raw, examples)
  with graph.as_default(), session:
    return session.run(lookups, {sig.inputs[k].name: v
                                 for k, v in feeds.items()})


# ---------------------------------------------------------------------------
# Models with their own Scaffold saver.


def _linear_parts(features, labels, mode):
  w = tf.compat.v1.get_variable('w', [FEATURE_DIM, 1],
                                initializer=tf.compat.v1.zeros_initializer())
  b = tf.compat.v1.get_variable('b', [1],
                                initializer=tf.compat.v1.zeros_initializer())
  predictions = tf.matmul(features['x'], w) + b
  global_step = tf.compat.v1.train.get_or_create_global_step()
  kwargs = dict(
      predictions={'y': predictions},
      export_outputs={'serving_default': tf.estimator.export.PredictOutput(
          {'y': predictions})})
  optimizer = None
  if mode != ModeKeys.PREDICT:
    kwargs['loss'] = tf.compat.v1.losses.mean_squared_error(labels,
                                                            predictions)
    kwargs['eval_metric_ops'] = {
        'mae': tf.compat.v1.metrics.mean_absolute_error(labels, predictions)}
  if mode == ModeKeys.TRAIN:
    optimizer = tf.compat.v1.train.AdamOptimizer(0.1)
    kwargs['train_op'] = optimizer.minimize(kwargs['loss'],
                                            global_step=global_step)
  return w, b, global_step, optimizer, kwargs


def renamed_saver_model_fn(features, labels, mode):
  """A Scaffold name-based Saver that stores w and b under other keys and
  leaves the optimizer slots out (a var_list subset)."""
  w, b, global_step, _, kwargs = _linear_parts(features, labels, mode)
  saved = {'renamed/w': w, 'renamed/b': b, 'global_step': global_step}
  saver = tf.compat.v1.train.Saver(saved, sharded=True)
  # What the saver leaves out (Adam's slots) the local init op initializes;
  # it is the SavedModel's main op, so the exported train graph runs.
  unsaved = [v for v in tf.compat.v1.global_variables()
             if all(v is not s for s in saved.values())]
  local_init_op = tf.group(tf.compat.v1.train.Scaffold.default_local_init_op(),
                           tf.compat.v1.variables_initializer(unsaved))
  return tf.estimator.EstimatorSpec(
      mode, scaffold=tf.compat.v1.train.Scaffold(
          saver=saver, local_init_op=local_init_op), **kwargs)


def checkpoint_saver_model_fn(features, labels, mode):
  """A `tf.train.Checkpoint` as Scaffold saver (object-based keys), tracking
  the optimizer in TRAIN only."""
  w, b, global_step, optimizer, kwargs = _linear_parts(features, labels, mode)
  tracked = dict(w=w, b=b, step=global_step)
  if optimizer is not None:
    tracked['optimizer'] = optimizer
  return tf.estimator.EstimatorSpec(
      mode, scaffold=tf.compat.v1.train.Scaffold(
          saver=tf.train.Checkpoint(**tracked)), **kwargs)


def v1_format_saver_model_fn(features, labels, mode, params):
  """linear_model_fn with a V1-format Scaffold saver (the Session path)."""
  from tensorflow.core.protobuf import saver_pb2  # pylint: disable=g-import-not-at-top
  spec = linear_model_fn(features, labels, mode, params)
  return spec._replace(scaffold=tf.compat.v1.train.Scaffold(
      saver=tf.compat.v1.train.Saver(write_version=saver_pb2.SaverDef.V1)))

def tf2_train_steps(export_dir: str, steps: int = 20, tags=None,
                    feeds: Optional[Dict[str, np.ndarray]] = None
                   ) -> List[float]:
  """Train steps from TF2: `tf.saved_model.load` + `prune` of loss and train op.

  `tags=None` loads without tags (only valid for a single-MetaGraph
  SavedModel). `feeds` maps the train signature's input keys to values
  (default: the custom model's `x` and `label`).
  """
  from tensorflow.python.tools import saved_model_utils  # pylint: disable=g-import-not-at-top
  saved = saved_model_utils.read_saved_model(export_dir)
  meta = [m for m in saved.meta_graphs
          if tags is None or set(m.meta_info_def.tags) == set(tags)][0]
  train_op = meta.collection_def['saved_model_train_op'].node_list.value[0]
  sig = meta.signature_def['train']
  loaded = (tf.saved_model.load(export_dir) if tags is None else
            tf.saved_model.load(export_dir, tags=list(tags)))
  if feeds is None:
    x, y = make_data()
    feeds = {'x': x, 'label': y}
  keys = sorted(feeds)
  step = loaded.prune(
      feeds=[sig.inputs[k].name for k in keys],
      fetches=[sig.outputs['loss'].name,
               loaded.graph.get_operation_by_name(train_op)])
  values = [tf.constant(feeds[k]) for k in keys]
  return [float(step(*values)[0]) for _ in range(steps)]


def device_pinned_model_fn(device: str):
  """`linear_model_fn` with every op pinned to `device` (e.g. a GPU)."""

  def model_fn(features, labels, mode, params):
    with tf.device(device):
      return linear_model_fn(features, labels, mode, params)
  return model_fn


def train_pinned(model_dir: str, device: str, steps: int = 3
                ) -> tf.estimator.Estimator:
  """Trains with ops pinned to `device`; Estimator's soft placement lets a
  missing device fall back to the CPU."""
  est = tf.estimator.Estimator(device_pinned_model_fn(device),
                               model_dir=model_dir, params={},
                               config=tf.estimator.RunConfig(tf_random_seed=1))
  est.train(input_fn(), steps=steps)
  return est


def graph_devices(export_dir: str) -> List[str]:
  """Every distinct device string in every MetaGraphDef of a SavedModel."""
  from tensorflow.python.tools import saved_model_utils  # pylint: disable=g-import-not-at-top
  return sorted({n.device for m in
                 saved_model_utils.read_saved_model(export_dir).meta_graphs
                 for n in m.graph_def.node})


class RecordingExporter(multimode_export.exporter.MultiModeExporter):
  """A MultiModeExporter that records every call (and its outcome).

  `calls` holds one dict per `export` call: the returned path (None if
  skipped), the checkpoint and the eval result. With `record_file`, each call
  is also appended to that file as a JSON line (for other processes).
  """

  def __init__(self, *args, record_file: Optional[str] = None, **kwargs):
    super().__init__(*args, **kwargs)
    self.calls: List[dict] = []
    self._record_file = record_file

  def export(self, estimator, export_path, checkpoint_path, eval_result,
             is_the_final_export):
    path = super().export(estimator, export_path, checkpoint_path,
                          eval_result, is_the_final_export)
    call = {'path': path, 'checkpoint': checkpoint_path,
            'task_type': estimator.config.task_type,
            'global_step': int(eval_result['global_step']),
            'loss': float(eval_result['loss'])}
    self.calls.append(call)
    if self._record_file:
      with open(self._record_file, 'a') as f:
        f.write(json.dumps(call) + '\n')
    return path


def read_records(record_file: str) -> List[dict]:
  if not os.path.exists(record_file):
    return []
  with open(record_file) as f:
    return [json.loads(line) for line in f if line.strip()]


def assert_export_matches_checkpoint(test, export_dir: str, checkpoint: str,
                                     modes=(ModeKeys.TRAIN, ModeKeys.EVAL,
                                            ModeKeys.PREDICT)) -> None:
  """Asserts the export has every mode's tag set and the checkpoint's values."""
  test.assertEqual(meta_graph_tags(export_dir),
                   sorted(sorted(TAGS[m]) for m in modes))
  exported = saved_variables(export_dir)
  expected = checkpoint_values(checkpoint)
  test.assertEqual(sorted(exported), sorted(expected))
  for key, value in expected.items():
    np.testing.assert_array_equal(exported[key], value, err_msg=key)


# An embedding regressor, for models whose embedding is partitioned (across
# parameter servers in a cluster).
VOCAB_SIZE = 16
EMBEDDING_DIM = 4
IDS_PER_EXAMPLE = 2


def make_id_data(n: int = 64, seed: int = 0):
  rng = np.random.RandomState(seed)
  ids = rng.randint(0, VOCAB_SIZE, size=(n, IDS_PER_EXAMPLE)).astype(np.int64)
  true_weights = np.linspace(-1.0, 1.0, VOCAB_SIZE).astype(np.float32)
  y = true_weights[ids].sum(axis=1, keepdims=True).astype(np.float32)
  return ids, y


def id_input_fn(batch_size: int = 16, seed: int = 0):
  ids, y = make_id_data(seed=seed)

  def fn():
    return tf.data.Dataset.from_tensor_slices(({'ids': ids}, y)).repeat().batch(
        batch_size)
  return fn


def embedding_model_fn(features, labels, mode, params):
  """Mean of looked-up embeddings -> dense -> regression, with Adagrad.

  params['partitions'] (default 2) splits the embedding with
  `fixed_size_partitioner`; under `replica_device_setter` each partition
  lands on a different parameter server.
  """
  partitions = params.get('partitions', 2)
  embedding = tf.compat.v1.get_variable(
      'embedding', shape=[VOCAB_SIZE, EMBEDDING_DIM],
      initializer=tf.compat.v1.truncated_normal_initializer(stddev=0.1,
                                                             seed=1),
      partitioner=tf.compat.v1.fixed_size_partitioner(partitions))
  vectors = tf.reduce_mean(
      tf.nn.embedding_lookup(embedding, features['ids']), axis=1)
  dense = tf.compat.v1.get_variable(
      'dense', shape=[EMBEDDING_DIM, 1],
      initializer=tf.compat.v1.truncated_normal_initializer(stddev=0.1,
                                                             seed=2))
  bias = tf.compat.v1.get_variable(
      'bias', shape=[1], initializer=tf.compat.v1.zeros_initializer())
  predictions = tf.matmul(vectors, dense) + bias
  export_outputs = {'serving_default': tf.estimator.export.PredictOutput(
      {'y': predictions})}
  if mode == ModeKeys.PREDICT:
    return tf.estimator.EstimatorSpec(mode, predictions={'y': predictions},
                                      export_outputs=export_outputs)
  loss = tf.compat.v1.losses.mean_squared_error(labels, predictions)
  train_op = None
  if mode == ModeKeys.TRAIN:
    train_op = tf.compat.v1.train.AdagradOptimizer(0.5).minimize(
        loss, global_step=tf.compat.v1.train.get_global_step())
  return tf.estimator.EstimatorSpec(
      mode, predictions={'y': predictions}, loss=loss, train_op=train_op,
      export_outputs=export_outputs)


def id_receiver_map(modes=(ModeKeys.TRAIN, ModeKeys.EVAL, ModeKeys.PREDICT)):
  features = {'ids': tf.zeros([1, IDS_PER_EXAMPLE], tf.int64)}
  fns = {
      ModeKeys.TRAIN:
          tf.estimator.experimental.build_raw_supervised_input_receiver_fn(
              features, tf.zeros([1, 1])),
      ModeKeys.EVAL:
          tf.estimator.experimental.build_raw_supervised_input_receiver_fn(
              features, tf.zeros([1, 1])),
      ModeKeys.PREDICT:
          tf.estimator.export.build_raw_serving_input_receiver_fn(features),
  }
  return {m: fns[m] for m in modes}


def snapshot(path: str) -> Optional[Dict[str, Optional[str]]]:
  """Every directory and file under `path` (any filesystem), None if absent.

  Directories map to None and files to the sha256 of their contents, keyed by
  their path relative to `path` ('' is `path` itself), so two snapshots are
  equal exactly when nothing was created, removed or changed.
  """
  if not tf.io.gfile.exists(path):
    return None
  if not tf.io.gfile.isdir(path):
    with tf.io.gfile.GFile(path, 'rb') as f:
      return {'': hashlib.sha256(f.read()).hexdigest()}
  out: Dict[str, Optional[str]] = {'': None}
  root = path.rstrip('/')
  for dirpath, dirs, files in tf.io.gfile.walk(root):
    rel = dirpath[len(root):].lstrip('/')
    for name in dirs:
      out[posixpath.join(rel, name.rstrip('/')) + '/'] = None
    for name in files:
      with tf.io.gfile.GFile(posixpath.join(dirpath, name), 'rb') as f:
        out[posixpath.join(rel, name)] = hashlib.sha256(f.read()).hexdigest()
  return out


def load_every_tag_set(export_dir: str) -> List[List[str]]:
  """Loads each MetaGraphDef in a fresh graph and restores its variables.

  Returns:
    The tag sets loaded, sorted.
  """
  loaded = []
  for tags in meta_graph_tags(export_dir):
    _, session, _ = tf1_load(export_dir, tags)
    session.close()
    loaded.append(tags)
  return loaded


# --- Canned estimator, parsing receivers and fault injection (verify/inspect).

N_CLASSES = 3


def canned_feature_columns():
  return [tf.feature_column.numeric_column('x', shape=[FEATURE_DIM])]


def train_canned_dnn(model_dir: str, steps: int = 3
                    ) -> tf.estimator.DNNClassifier:
  """A DNNClassifier trained a few steps on `make_data` (labels 0..2)."""
  x, y = make_data()
  labels = np.clip((y * 2).astype(np.int64), 0, N_CLASSES - 1)

  def fn():
    return tf.data.Dataset.from_tensor_slices(({'x': x}, labels)).repeat(
    ).batch(16)
  est = tf.estimator.DNNClassifier(
      [4], canned_feature_columns(), model_dir=model_dir, n_classes=N_CLASSES,
      config=tf.estimator.RunConfig(tf_random_seed=1))
  est.train(fn, steps=steps)
  return est


def canned_receiver_map():
  """Raw supervised TRAIN/EVAL receivers, a tf.Example parsing PREDICT one."""
  supervised = tf.estimator.experimental.build_raw_supervised_input_receiver_fn(
      {'x': tf.zeros([1, FEATURE_DIM])}, tf.zeros([1, 1], tf.int64))
  return {
      ModeKeys.TRAIN: supervised,
      ModeKeys.EVAL: supervised,
      ModeKeys.PREDICT:
          tf.estimator.export.build_parsing_serving_input_receiver_fn(
              tf.feature_column.make_parse_example_spec(
                  canned_feature_columns())),
  }


def stock_canned_export(estimator, export_dir_base: str) -> str:
  path = estimator.experimental_export_all_saved_models(
      export_dir_base, canned_receiver_map())
  return path.decode('utf-8') if isinstance(path, bytes) else path


def truncate_variables_data(export_dir: str, keep_fraction: float = 0.5
                           ) -> str:
  """Cuts the export's variables data file short; returns its path."""
  [data] = tf.io.gfile.glob(
      os.path.join(export_dir, 'variables', 'variables.data-*'))
  os.truncate(data, int(os.path.getsize(data) * keep_fraction))
  return data


def loaded_variables(export_dir: str, tags: List[str]) -> Dict[str, np.ndarray]:
  """Loads a tag set in a fresh graph; returns its global variables' values.

  Keyed like the checkpoint: partitions `name/part_<i>` (split on axis 0,
  as `fixed_size_partitioner` does) are joined back into `name`.
  """
  graph, session, _ = tf1_load(export_dir, tags)
  with graph.as_default(), session:
    variables = tf.compat.v1.global_variables()
    values = session.run({v.op.name: v for v in variables})
  parts: Dict[str, Dict[int, np.ndarray]] = {}
  result = {}
  for name, value in values.items():
    match = re.fullmatch(r'(.*)/part_(\d+)(/.*)?', name)  # also w/part_0/Adam
    if match:
      key = match.group(1) + (match.group(3) or '')
      parts.setdefault(key, {})[int(match.group(2))] = value
    else:
      result[name] = value
  for name, pieces in parts.items():
    result[name] = np.concatenate([pieces[i] for i in sorted(pieces)], axis=0)
  return result


def write_checkpoint(prefix: str, values: Dict[str, np.ndarray]) -> str:
  """Writes `values` (key -> array) as a V2 checkpoint at `prefix`."""
  names = sorted(values)
  tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names,
                    shape_and_slices=[''] * len(names),
                    tensors=[tf.constant(values[n]) for n in names])
  return prefix


def export_every_layout(estimator, root: str) -> Dict[str, str]:
  """Exports `estimator` in every layout `inspect` and `verify` accept.

  Returns:
    kind -> path: 'shared_base' (two numbered versions; 'shared_newest' is
    the newer), 'per_mode_base' (two complete versions, then a newer one
    that only `train/` holds, as mid-publish; 'per_mode_newest' is the newest
    complete version number, as str), 'per_mode_fixed' (`export_dir=`).
  """
  shared = os.path.join(root, 'shared')
  multimode_export.export_all_saved_models(estimator, shared, receiver_map())
  newest = multimode_export.export_all_saved_models(estimator, shared,
                                                    receiver_map())
  per_mode = os.path.join(root, 'per_mode')
  multimode_export.export_saved_models_per_mode(estimator, per_mode,
                                                receiver_map())
  paths = multimode_export.export_saved_models_per_mode(estimator, per_mode,
                                                        receiver_map())
  version = os.path.basename(paths[ModeKeys.TRAIN])
  # A later export whose train mode is published and the others not yet.
  shutil.copytree(paths[ModeKeys.TRAIN],
                  os.path.join(per_mode, 'train', str(int(version) + 1)))
  fixed = os.path.join(root, 'fixed')
  multimode_export.export_saved_models_per_mode(
      estimator, None, receiver_map(), export_dir=fixed)
  return {'shared_base': shared, 'shared_newest': newest,
          'per_mode_base': per_mode, 'per_mode_newest': version,
          'per_mode_fixed': fixed}
