"""The SavedModel on-disk format: file names, collections, where assets live.

The one module that knows how a SavedModel is laid out and how its proto is
read: the writer, publishing (which moves `saved_model.pb` last), garbage
collection, `inspect` and `verify` all ask here. Reading works on every
SavedModel, including ones this package did not write, and loads nothing.
"""

from typing import FrozenSet, Optional, Tuple

import tensorflow as tf
from absl import logging
from google.protobuf import message
from google.protobuf import text_format
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow.core.protobuf import saved_model_pb2

from multimode_export import _filesystem as filesystem
from multimode_export import errors

SAVED_MODEL_PB = tf.saved_model.SAVED_MODEL_FILENAME_PB
SAVED_MODEL_PBTXT = tf.saved_model.SAVED_MODEL_FILENAME_PBTXT
# A directory is a SavedModel once one of these exists: publishing moves them
# last on every filesystem.
SAVED_MODEL_FILES = (SAVED_MODEL_PB, SAVED_MODEL_PBTXT)
# TensorFlow's fingerprint of saved_model.pb and variables/ (TF 2.13+);
# written before the SavedModel proto.
FINGERPRINT_PB = 'fingerprint.pb'

# The collections the SavedModel loaders read (tensorflow/python/saved_model/
# constants.py; `tests/tf_private_test.py` checks they still agree); their
# values are part of the on-disk format.
TRAIN_OP_COLLECTION = 'saved_model_train_op'
MAIN_OP_COLLECTION = 'saved_model_main_op'
LEGACY_INIT_OP_COLLECTION = 'legacy_init_op'
# Where a TF1 builder (and this package's writer) lists the asset files: a
# collection of packed `AssetFileDef`s. `tf.saved_model.save` uses the
# MetaGraphDef's `asset_file_def` field instead; readers look at both.
ASSETS_COLLECTION = tf.compat.v1.saved_model.ASSETS_KEY


def is_saved_model(path: str) -> bool:
  """Whether `path` holds a `saved_model.pb` (or `.pbtxt`)."""
  return any(tf.io.gfile.exists(filesystem.join(path, name))
             for name in SAVED_MODEL_FILES)


def variables_prefix(export_dir: str) -> str:
  """The checkpoint prefix of a SavedModel's `variables/`."""
  return filesystem.join(export_dir, tf.saved_model.VARIABLES_DIRECTORY,
                         tf.saved_model.VARIABLES_FILENAME)


def read_saved_model(export_dir: filesystem.PathLike
                    ) -> saved_model_pb2.SavedModel:
  """Parses `saved_model.pb` (or `.pbtxt`) of `export_dir`.

  Args:
    export_dir: the SavedModel directory (str, bytes or os.PathLike).

  Returns:
    The SavedModel proto.

  Raises:
    errors.NotASavedModelError: the directory does not exist, holds no
      SavedModel proto, or the proto does not parse.
  """
  export_dir = filesystem.as_str(export_dir)
  try:
    export_dir = filesystem.dir_path(export_dir)  # 's3://b' -> 's3://b/'
  except ValueError as e:  # a URL with no bucket
    raise errors.NotASavedModelError(export_dir, str(e)) from e
  if not filesystem.exists(export_dir):
    raise errors.NotASavedModelError(export_dir, 'it does not exist')
  if not tf.io.gfile.isdir(export_dir):
    raise errors.NotASavedModelError(export_dir, 'it is a file, not a directory')
  found = _read_proto_file(export_dir)
  if found is None:
    raise errors.NotASavedModelError(
        export_dir, f'it has no {SAVED_MODEL_PB} or {SAVED_MODEL_PBTXT}')
  path, data = found
  try:
    saved_model = parse_saved_model(data, binary=path.endswith(SAVED_MODEL_PB))
  except ValueError as e:
    raise errors.NotASavedModelError(
        export_dir, f'its SavedModel proto does not parse: {e}') from e
  if not saved_model.meta_graphs:
    raise errors.NotASavedModelError(export_dir,
                                     f'{path} holds no MetaGraphDef')
  return saved_model


def _read_proto_file(export_dir: str) -> Optional[Tuple[str, bytes]]:
  """(path, bytes) of the SavedModel proto in `export_dir`, or None."""
  for name in SAVED_MODEL_FILES:
    path = filesystem.join(export_dir, name)
    # Read, not exists(): ram:// says any prefix of a file name exists.
    try:
      return path, filesystem.read_bytes(path)
    except tf.errors.NotFoundError:
      continue
  return None


def parse_saved_model(data: bytes, binary: bool) -> saved_model_pb2.SavedModel:
  """Parses a SavedModel proto from `saved_model.pb` (or `.pbtxt`) bytes.

  Raises:
    ValueError: the bytes do not parse.
  """
  saved_model = saved_model_pb2.SavedModel()
  try:
    if binary:
      saved_model.ParseFromString(data)
    else:
      text_format.Parse(data.decode('utf-8'), saved_model)
  except (message.DecodeError, text_format.ParseError,
          UnicodeDecodeError) as e:
    raise ValueError(f'{type(e).__name__}: {e}') from e
  return saved_model


def read_tag_sets(export_dir: str) -> Optional[FrozenSet[FrozenSet[str]]]:
  """The tag sets of the SavedModel in `export_dir`, or None.

  Lenient, for scanning directories that may hold anything: None when there
  is no proto, or it cannot be read or parsed (logged).
  """
  try:
    found = _read_proto_file(export_dir)
    if found is None:
      return None
    path, data = found
    saved_model = parse_saved_model(data, binary=path.endswith(SAVED_MODEL_PB))
  except (tf.errors.OpError, ValueError) as e:
    logging.warning('Cannot read the tags of %s: %s', export_dir, e)
    return None
  return frozenset(frozenset(m.meta_info_def.tags)
                   for m in saved_model.meta_graphs)


def tags_of(meta_graph_def: meta_graph_pb2.MetaGraphDef) -> Tuple[str, ...]:
  """A MetaGraphDef's tag set, sorted."""
  return tuple(sorted(meta_graph_def.meta_info_def.tags))


def collection_names(meta_graph_def: meta_graph_pb2.MetaGraphDef,
                     key: str) -> Tuple[str, ...]:
  """The node names in a node-list collection of a MetaGraphDef (or ())."""
  if key not in meta_graph_def.collection_def:
    return ()
  return tuple(meta_graph_def.collection_def[key].node_list.value)


def main_op_names(meta_graph_def: meta_graph_pb2.MetaGraphDef
                 ) -> Tuple[str, ...]:
  """The main op (or the legacy init op) a loader runs after restoring."""
  return (collection_names(meta_graph_def, MAIN_OP_COLLECTION) or
          collection_names(meta_graph_def, LEGACY_INIT_OP_COLLECTION))


def asset_file_defs(meta_graph_def: meta_graph_pb2.MetaGraphDef
                   ) -> Tuple[meta_graph_pb2.AssetFileDef, ...]:
  """Every `AssetFileDef` of a MetaGraphDef, wherever it is recorded: the
  `asset_file_def` field, and the assets collection (TF1 builders)."""
  found = list(meta_graph_def.asset_file_def)
  if ASSETS_COLLECTION in meta_graph_def.collection_def:
    for packed in meta_graph_def.collection_def[ASSETS_COLLECTION].any_list.value:
      asset = meta_graph_pb2.AssetFileDef()
      if packed.Unpack(asset) and asset not in found:
        found.append(asset)
  return tuple(found)


def asset_files(meta_graph_def: meta_graph_pb2.MetaGraphDef
               ) -> Tuple[Tuple[str, str], ...]:
  """(tensor name, file name in `assets/`) for each asset of a MetaGraphDef."""
  return tuple((a.tensor_info.name, a.filename)
               for a in asset_file_defs(meta_graph_def))


def has_variables(export_dir: str) -> bool:
  """Whether `export_dir` has a `variables/variables` checkpoint index."""
  return tf.io.gfile.exists(variables_prefix(export_dir) + '.index')

