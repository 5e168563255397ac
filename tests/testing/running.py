"""Loading an export's tag sets and running its signatures, train steps and eval metrics.

Real TensorFlow and real estimators throughout; nothing is mocked.
"""

import os
import re
import shutil
from typing import Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf

import multimode_export
from testing import datasets
from testing import receiver_fns

ModeKeys = tf.estimator.ModeKeys


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
    x, y = datasets.make_data()
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


def read_meta_graphs(export_dir: str):
  """The MetaGraphDefs of a SavedModel (saved_model.pb or .pbtxt)."""
  from tensorflow.python.tools import saved_model_utils  # pylint: disable=g-import-not-at-top
  return list(saved_model_utils.read_saved_model(export_dir).meta_graphs)


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
    x, y = datasets.make_data()
    feeds = {'x': x, 'label': y}
  keys = sorted(feeds)
  step = loaded.prune(
      feeds=[sig.inputs[k].name for k in keys],
      fetches=[sig.outputs['loss'].name,
               loaded.graph.get_operation_by_name(train_op)])
  values = [tf.constant(feeds[k]) for k in keys]
  return [float(step(*values)[0]) for _ in range(steps)]


def graph_devices(export_dir: str) -> List[str]:
  """Every distinct device string in every MetaGraphDef of a SavedModel."""
  from tensorflow.python.tools import saved_model_utils  # pylint: disable=g-import-not-at-top
  return sorted({n.device for m in
                 saved_model_utils.read_saved_model(export_dir).meta_graphs
                 for n in m.graph_def.node})


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


def export_every_layout(estimator, root: str) -> Dict[str, str]:
  """Exports `estimator` in every layout `inspect` and `verify` accept.

  Returns:
    kind -> path: 'shared_base' (two numbered versions; 'shared_newest' is
    the newer), 'per_mode_base' (two complete versions, then a newer one
    that only `train/` holds, as mid-publish; 'per_mode_newest' is the newest
    complete version number, as str), 'per_mode_fixed' (`export_dir=`).
  """
  shared = os.path.join(root, 'shared')
  multimode_export.export_all_saved_models(estimator, shared, receiver_fns.receiver_map())
  newest = multimode_export.export_all_saved_models(estimator, shared,
                                                    receiver_fns.receiver_map())
  per_mode = os.path.join(root, 'per_mode')
  multimode_export.export_saved_models_per_mode(estimator, per_mode,
                                                receiver_fns.receiver_map())
  paths = multimode_export.export_saved_models_per_mode(estimator, per_mode,
                                                        receiver_fns.receiver_map())
  version = os.path.basename(paths[ModeKeys.TRAIN])
  # A later export whose train mode is published and the others not yet.
  shutil.copytree(paths[ModeKeys.TRAIN],
                  os.path.join(per_mode, 'train', str(int(version) + 1)))
  fixed = os.path.join(root, 'fixed')
  multimode_export.export_saved_models_per_mode(
      estimator, None, receiver_fns.receiver_map(), export_dir=fixed)
  return {'shared_base': shared, 'shared_newest': newest,
          'per_mode_base': per_mode, 'per_mode_newest': version,
          'per_mode_fixed': fixed}
