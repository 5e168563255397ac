"""A TF2 SavedModel whose variables' values come from a checkpoint, never read.

`tf.saved_model.save` reads every variable to write `variables/`: for a
converted Estimator export that means loading the whole checkpoint (3 GiB
of embedding and Adam slots take 3 GiB of memory and a full rewrite). Here
the object to save holds variables without values (uninitialized: created
with `_tf_private.uninitialized_variable`, or never restored), and:

1. `tf.saved_model.save` writes `saved_model.pb` (object graph, functions,
   signatures) exactly as it would with values: neither records a value.
   Its checkpoint gets the `_CHECKPOINTABLE_OBJECT_GRAPH` entry, which
   names every variable's checkpoint key, but no value of an uninitialized
   variable (TensorFlow records it in the object graph and skips it). What
   does have a value (a variable the caller initialized, a table) is saved
   as usual, in that small bundle.
2. Each variable's key is found in that object graph (node ids are the saved
   objects' positions, `_tf_private.save_and_return_nodes`), and the bundle
   is extended with those keys pointing at the source checkpoint's extents
   (`variables/_rekey`): the data shards are linked or copied, not read.
3. `fingerprint.pb` is recomputed for the new `variables.index`.

The result is what `tf.saved_model.save` writes for the same object with the
checkpoint's values loaded: the same `saved_model.pb`, the same object graph
and keys in the checkpoint, byte-identical tensors
(`tests/without_values_test.py` checks this).
"""

from typing import Any, Dict, Iterable, List, Optional, Tuple

import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2

from multimode_export import _filesystem as filesystem
from multimode_export import _tf_private
from multimode_export.saved_model import _fingerprint as fingerprint
from multimode_export.saved_model import _format as saved_model_format
from multimode_export.variables import _bundle_index as bundle_index
from multimode_export.variables import _rekey as rekey

OBJECT_GRAPH_KEY = '_CHECKPOINTABLE_OBJECT_GRAPH'
_VALUE_ATTRIBUTE = 'VARIABLE_VALUE'
_VARIABLES = 'variables/variables'  # the bundle prefix in a SavedModel

SourceEntry = rekey.SourceEntry
Result = rekey.ExtendResult


class WithoutValuesError(ValueError):
  """The object cannot be saved with values from the source checkpoint."""


def _check_uninitialized(sources: List[Tuple[Any, SourceEntry]]) -> None:
  initialized = [v.name for v, _ in sources if bool(v.is_initialized())]
  if initialized:
    raise WithoutValuesError(
        f'variables {initialized} have values: tf.saved_model.save would '
        'read and write them; give variables without values (their values '
        'come from the source checkpoint)')


def _object_graph(prefix: str) -> trackable_object_graph_pb2.TrackableObjectGraph:
  # Not tf.train.load_checkpoint: on ram:// a prefix whose files exist is
  # also a directory, and it would look for a `checkpoint` file there.
  reader = tf.compat.v1.train.NewCheckpointReader(prefix)
  return trackable_object_graph_pb2.TrackableObjectGraph.FromString(
      reader.get_tensor(OBJECT_GRAPH_KEY))


def _keys_of(nodes: List[Any], graph, sources: List[Tuple[Any, SourceEntry]]
             ) -> Dict[str, Tuple[Any, SourceEntry]]:
  """Checkpoint key -> (variable, source entry), for every pair in `sources`."""
  node_ids = {id(node): i for i, node in enumerate(nodes)}
  keys, untracked = {}, []
  for variable, source in sources:
    node_id = node_ids.get(id(variable))
    attributes = [a for a in graph.nodes[node_id].attributes
                  if a.name == _VALUE_ATTRIBUTE] if node_id is not None else []
    if not attributes:
      untracked.append(variable.name)
      continue
    key = attributes[0].checkpoint_key
    if key in keys and keys[key][1] != source:
      raise WithoutValuesError(
          f'variable {variable.name!r} is given two sources: '
          f'{keys[key][1]} and {source}')
    keys[key] = (variable, source)
  if untracked:
    raise WithoutValuesError(
        f'variables {untracked} are not saved by the object (not reachable '
        'from it as attributes): their values would be lost')
  return keys


def _check_every_value_is_there(graph, written, mapped) -> None:
  """Every checkpoint key of the object graph gets a value from somewhere."""
  missing = [f'{a.checkpoint_key} ({a.full_name})' for node in graph.nodes
             for a in node.attributes
             if a.checkpoint_key not in written and
             a.checkpoint_key not in mapped]
  if missing:
    raise WithoutValuesError(
        f'no value for {missing}: uninitialized and without a source entry')


def _check_dtypes_and_shapes(source_prefix: str,
                             keys: Dict[str, Tuple[Any, SourceEntry]]) -> None:
  _, source_entries = bundle_index.read(source_prefix + '.index')
  try:
    planned = rekey.plan(source_entries, {k: s for k, (_, s) in keys.items()})
  except rekey.RekeyError as e:
    raise WithoutValuesError(str(e)) from e
  for key, entry in planned.items():
    variable, source = keys[key.decode('utf-8')]
    stored = (tf.as_dtype(entry.dtype), [d.size for d in entry.shape.dim])
    wanted = (variable.dtype, variable.shape.as_list())
    if stored != wanted:
      raise WithoutValuesError(
          f'variable {variable.name!r} is {wanted[0].name} {wanted[1]}, but '
          f'its source {source} is {stored[0].name} {stored[1]}')


def _write_fingerprint(export_dir: str) -> None:
  """Recomputes fingerprint.pb (if TensorFlow wrote one) for the new index."""
  path = filesystem.join(export_dir, saved_model_format.FINGERPRINT_PB)
  if not tf.io.gfile.exists(path):
    return
  saved_model_pb = filesystem.read_bytes(
      filesystem.join(export_dir, saved_model_format.SAVED_MODEL_PB))
  index = filesystem.read_bytes(filesystem.join(export_dir,
                                                _VARIABLES + '.index'))
  tf.io.gfile.remove(path)  # ram:// appends to a file opened 'wb'
  fingerprint.write(export_dir, saved_model_pb, index)


def save_without_values(obj: Any, export_dir: str, source_prefix: str,
                        sources: Iterable[Tuple[Any, Any]], *,
                        signatures: Any = None,
                        options: Optional[tf.saved_model.SaveOptions] = None,
                        allow_links: bool = True) -> Result:
  """`tf.saved_model.save(obj, ...)` with variable values from a checkpoint.

  Args:
    obj: the trackable object to save; every variable in `sources` is
      uninitialized (no value: nothing of it is read).
    export_dir: a new or empty directory (a staging directory: the files are
      rewritten after `saved_model.pb` is written).
    source_prefix: the V2 checkpoint holding the values (e.g. an export's
      `variables/variables`); not modified.
    sources: (variable, source entry) pairs: each variable's value is the
      source tensor (`SourceEntry(key, slice_spec)` or a (key, slice_spec)
      pair; a slice must be stored as such, see `variables/_rekey`).
    signatures: as for `tf.saved_model.save`.
    options: as for `tf.saved_model.save`.
    allow_links: whether local data shards may be reflinked or hard-linked.

  Returns:
    How the source's data shards were placed, and how many keys point there.

  Raises:
    WithoutValuesError: a variable has a value already, is not saved by
      `obj`, is of another dtype or shape than its source, or its source is
      missing or not stored as one tensor; or a variable has neither a value
      nor a source. Whatever was written into `export_dir` is removed.
  """
  sources = [(v, SourceEntry(*s)) for v, s in sources]
  _check_uninitialized(sources)
  existed = tf.io.gfile.exists(export_dir)
  if existed and tf.io.gfile.listdir(export_dir):
    raise WithoutValuesError(f'export_dir {export_dir!r} is not empty')
  try:
    nodes = _tf_private.save_and_return_nodes(obj, export_dir, signatures,
                                              options)
    prefix = filesystem.join(export_dir, _VARIABLES)
    graph = _object_graph(prefix)
    keys = _keys_of(nodes, graph, sources)
    _, written = bundle_index.read(prefix + '.index')
    _check_every_value_is_there(graph, {k.decode('utf-8') for k in written},
                                keys)
    _check_dtypes_and_shapes(source_prefix, keys)
    try:
      result = rekey.extend_with_extents(
          prefix, source_prefix, {k: s for k, (_, s) in keys.items()},
          allow_links=allow_links)
    except rekey.RekeyError as e:
      raise WithoutValuesError(str(e)) from e
    _write_fingerprint(export_dir)
    return result
  except BaseException:
    _remove_written(export_dir, existed)
    raise


def _remove_written(export_dir: str, existed: bool) -> None:
  if not existed:
    filesystem.rmtree_if_present(export_dir)
    return
  for name in tf.io.gfile.listdir(export_dir):
    path = filesystem.join(export_dir, name.rstrip('/'))
    if tf.io.gfile.isdir(path):
      tf.io.gfile.rmtree(path)
    else:
      tf.io.gfile.remove(path)
