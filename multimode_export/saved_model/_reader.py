"""Reading any SavedModel's proto and variables metadata, without loading it.

Shared by `verification` and `inspection`, which must work on every
SavedModel, including ones this package did not write.
"""

from typing import Tuple

import tensorflow as tf
from google.protobuf import message
from google.protobuf import text_format
from tensorflow.core.protobuf import saved_model_pb2

from multimode_export import errors
from multimode_export import _filesystem as filesystem

# The collections the SavedModel loaders read (tensorflow/python/saved_model/
# constants.py); their values are part of the on-disk format.
TRAIN_OP_COLLECTION = 'saved_model_train_op'
MAIN_OP_COLLECTION = 'saved_model_main_op'
LEGACY_INIT_OP_COLLECTION = 'legacy_init_op'


def variables_prefix(export_dir: str) -> str:
  """The checkpoint prefix of a SavedModel's `variables/`."""
  return filesystem.join(export_dir, tf.saved_model.VARIABLES_DIRECTORY,
                         tf.saved_model.VARIABLES_FILENAME)


def read_saved_model(export_dir) -> saved_model_pb2.SavedModel:
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
  if not tf.io.gfile.exists(export_dir):
    raise errors.NotASavedModelError(export_dir, 'it does not exist')
  if not tf.io.gfile.isdir(export_dir):
    raise errors.NotASavedModelError(export_dir, 'it is a file, not a directory')
  pb = filesystem.join(export_dir, tf.saved_model.SAVED_MODEL_FILENAME_PB)
  pbtxt = filesystem.join(export_dir, tf.saved_model.SAVED_MODEL_FILENAME_PBTXT)
  saved_model = saved_model_pb2.SavedModel()
  try:
    if tf.io.gfile.exists(pb):
      with tf.io.gfile.GFile(pb, 'rb') as f:
        saved_model.ParseFromString(f.read())
      path = pb
    elif tf.io.gfile.exists(pbtxt):
      with tf.io.gfile.GFile(pbtxt, 'r') as f:
        text_format.Parse(f.read(), saved_model)
      path = pbtxt
    else:
      raise errors.NotASavedModelError(
          export_dir, f'it has no {tf.saved_model.SAVED_MODEL_FILENAME_PB} or '
          f'{tf.saved_model.SAVED_MODEL_FILENAME_PBTXT}')
  except (message.DecodeError, text_format.ParseError) as e:
    raise errors.NotASavedModelError(
        export_dir, f'its SavedModel proto does not parse: {e}') from e
  if not saved_model.meta_graphs:
    raise errors.NotASavedModelError(export_dir,
                                     f'{path} holds no MetaGraphDef')
  return saved_model


def tags_of(meta_graph_def) -> Tuple[str, ...]:
  """A MetaGraphDef's tag set, sorted."""
  return tuple(sorted(meta_graph_def.meta_info_def.tags))


def collection_names(meta_graph_def, key: str) -> Tuple[str, ...]:
  """The node names in a node-list collection of a MetaGraphDef (or ())."""
  if key not in meta_graph_def.collection_def:
    return ()
  return tuple(meta_graph_def.collection_def[key].node_list.value)


def main_op_names(meta_graph_def) -> Tuple[str, ...]:
  """The main op (or the legacy init op) a loader runs after restoring."""
  return (collection_names(meta_graph_def, MAIN_OP_COLLECTION) or
          collection_names(meta_graph_def, LEGACY_INIT_OP_COLLECTION))


def asset_files(meta_graph_def) -> Tuple[Tuple[str, str], ...]:
  """(tensor name, file name in `assets/`) for each asset of a MetaGraphDef."""
  return tuple((a.tensor_info.name, a.filename)
               for a in meta_graph_def.asset_file_def)


def has_variables(export_dir: str) -> bool:
  """Whether `export_dir` has a `variables/variables` checkpoint index."""
  return tf.io.gfile.exists(variables_prefix(export_dir) + '.index')

