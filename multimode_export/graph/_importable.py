"""Making sure every MetaGraphDef imports into a fresh graph.

A SavedModel loader imports each MetaGraphDef with `import_meta_graph`,
which resolves every entry of a node-list collection to a node of the
graph. Some TensorFlow code puts objects in collections whose `name` is not
a node: a `SaveableObject` (e.g. the hash table `tf.estimator.experimental.
LinearSDCA` adds to `saveable_objects`) is named by its checkpoint key, so
the stock export writes a `train` MetaGraphDef that fails to load. A saveable
cannot be rebuilt from a name anyway (loaders restore through the saver_def),
so such entries are dropped; anything else that does not import is refused.
"""

import re
from typing import List, Optional

import tensorflow as tf

from multimode_export import errors
from multimode_export.graph import _graph_def as graph_def_lib

_SAVEABLES = tf.compat.v1.GraphKeys.SAVEABLE_OBJECTS


def drop_unnamed_saveables(meta_graph_def) -> List[str]:
  """Drops `saveable_objects` entries that name no node of the graph.

  Returns:
    The dropped entries.
  """
  if _SAVEABLES not in meta_graph_def.collection_def:
    return []
  nodes = {n.name for n in meta_graph_def.graph_def.node}
  values = meta_graph_def.collection_def[_SAVEABLES].node_list.value
  kept = [v for v in values if graph_def_lib.node_name(v) in nodes]
  dropped = [v for v in values if graph_def_lib.node_name(v) not in nodes]
  if not kept:
    del meta_graph_def.collection_def[_SAVEABLES]
  elif dropped:
    del values[:]
    values.extend(kept)
  return dropped


def _missing_collection_entry(meta_graph_def) -> Optional[tuple]:
  nodes = {n.name for n in meta_graph_def.graph_def.node}
  for key in sorted(meta_graph_def.collection_def):
    collection = meta_graph_def.collection_def[key]
    if collection.WhichOneof('kind') != 'node_list':
      continue
    for value in collection.node_list.value:
      if graph_def_lib.node_name(value) not in nodes:
        return key, value
  return None


def check_importable(mode: str, meta_graph_def) -> None:
  """Imports `meta_graph_def` into a fresh graph, as a loader does, loading
  no variable.

  Raises:
    errors.UnloadableGraphError: the import fails; names the mode and the
      node (a collection entry that names no node, else the node TF names).
  """
  with tf.Graph().as_default():
    try:
      # A copy: importing adds default-valued attributes to the proto.
      copy = tf.compat.v1.MetaGraphDef()
      copy.CopyFrom(meta_graph_def)
      tf.compat.v1.train.import_meta_graph(copy)
      return
    except Exception as e:  # pylint: disable=broad-except
      error = e
  missing = _missing_collection_entry(meta_graph_def)
  if missing is not None:
    key, value = missing
    raise errors.UnloadableGraphError(
        mode, value, f'collection {key!r} names {value!r}, which is not a '
        f'node of the graph ({type(error).__name__}: {error})') from error
  found = re.search(r"name '([^']+)'|node ([^\s:;,]+)", str(error))
  node = next(g for g in found.groups() if g) if found else '?'
  raise errors.UnloadableGraphError(
      mode, node, f'{type(error).__name__}: {error}') from error
