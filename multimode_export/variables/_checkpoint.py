"""Finding the checkpoint to export and reading its metadata.

Only the checkpoint's index is read here (keys, dtypes, shapes, shard
files); no tensor value is loaded.
"""

import dataclasses
import os
import tempfile
from typing import Any, Dict, Optional, Tuple

import tensorflow as tf

from multimode_export import _filesystem as filesystem
from multimode_export import _tf_private
from multimode_export import errors
from multimode_export.graph import _saver_spec as saver_spec
from multimode_export.variables import _bundle_index as bundle_index


@dataclasses.dataclass(frozen=True)
class CheckpointInfo:
  """A readable checkpoint and what it holds.

  Attributes:
    prefix: the checkpoint prefix, e.g. '/m/model.ckpt-100'.
    variables: key -> (dtype name, full shape).
    files: the index and data shard paths (V2 format), index first; empty
      for a V1-format checkpoint.
    index: the bytes of the `.index` file as they were read (V2 format),
      else None.
  """
  prefix: str
  variables: Dict[str, Tuple[str, Tuple[int, ...]]]
  files: Tuple[str, ...]
  index: Optional[bytes] = dataclasses.field(default=None, repr=False,
                                             compare=False)


def _exists(prefix: str) -> bool:
  return (tf.io.gfile.exists(prefix + '.index') or
          (tf.io.gfile.exists(prefix) and not tf.io.gfile.isdir(prefix)))


def resolve(estimator: tf.compat.v1.estimator.Estimator,
            checkpoint_path: Optional[str] = None) -> str:
  """The checkpoint prefix to export, following the stock export's rules.

  Args:
    estimator: the Estimator being exported.
    checkpoint_path: a prefix or a directory (str, bytes or PathLike), or
      None for the latest checkpoint in `model_dir`, falling back to the
      warm-start checkpoint.

  Returns:
    A checkpoint prefix that exists.

  Raises:
    errors.CheckpointNotFoundError: naming every place looked at.
  """
  searched = []
  candidates = []
  if checkpoint_path is not None and filesystem.as_str(checkpoint_path):
    candidates.append(filesystem.as_str(checkpoint_path))
  else:
    candidates.append(estimator.model_dir)
    warm = _tf_private.warm_start_checkpoint(estimator)
    if warm:
      candidates.append(filesystem.as_str(warm))
  for candidate in candidates:
    searched.append(candidate)
    if tf.io.gfile.isdir(candidate):
      latest = tf.train.latest_checkpoint(candidate)
      if latest and _exists(latest):
        return latest
    elif _exists(candidate):
      return candidate
  explicit = checkpoint_path is not None and filesystem.as_str(checkpoint_path)
  raise errors.CheckpointNotFoundError(
      searched, model_dir=None if explicit else estimator.model_dir)


def open_reader(prefix: str) -> Any:  # a CheckpointReader (no public type)
  """A CheckpointReader for `prefix`, on any filesystem.

  Raises:
    errors.CheckpointReadError: if the index is unreadable.
  """
  try:
    # Not tf.train.load_checkpoint: it first asks whether `prefix` is a
    # directory, which ram:// answers yes for any prefix of a file name.
    return tf.compat.v1.train.NewCheckpointReader(prefix)
  except (tf.errors.OpError, ValueError) as e:
    raise errors.CheckpointReadError(prefix, str(e).strip()) from e


def read(prefix: str) -> CheckpointInfo:
  """Reads a checkpoint's index: its keys, dtypes, shapes and files.

  The `.index` file (V2 format) is read once. On a remote filesystem
  TensorFlow's reader opens a local copy of it: opening the remote file
  costs several ranged requests more (the reader needs nothing else).

  Raises:
    errors.CheckpointReadError: if the index is unreadable or corrupt, or a
      data shard is missing or shorter than the index says.
  """
  local = filesystem.is_local(prefix)
  # Locally the reader goes first, so that its errors are the ones raised.
  variables = variable_map(open_reader(prefix)) if local else None
  index = _read_index(prefix)
  if variables is None:
    variables = (variable_map(open_reader(prefix)) if index is None else
                 _variables_of_index_copy(prefix, index))
  files: Tuple[str, ...] = ()
  if index is not None:
    files = (prefix + '.index',) + _data_files(prefix, index)
  return CheckpointInfo(prefix, variables, files, index)


def _read_index(prefix: str) -> Optional[bytes]:
  """The `.index` file's bytes; None if there is none (V1 format, or no
  checkpoint: the reader says which)."""
  path = prefix + '.index'
  try:
    return filesystem.read_bytes(path)
  except tf.errors.NotFoundError:
    return None
  except tf.errors.OpError as e:
    raise errors.CheckpointReadError(prefix, f'index {path!r}: {e}') from e


def variable_map(reader: Any) -> Dict[str, Tuple[str, Tuple[int, ...]]]:
  """Key -> (dtype name, full shape) of a CheckpointReader's checkpoint."""
  shapes = reader.get_variable_to_shape_map()
  dtypes = reader.get_variable_to_dtype_map()
  return {k: (dtypes[k].name, tuple(shapes[k])) for k in shapes}


def _variables_of_index_copy(prefix: str, index: bytes
                             ) -> Dict[str, Tuple[str, Tuple[int, ...]]]:
  """`variable_map` of a reader opened on `index` written to a local file."""
  with tempfile.TemporaryDirectory(prefix='multimode_export_index_') as scratch:
    local = os.path.join(scratch, 'checkpoint')
    with open(local + '.index', 'wb') as f:
      f.write(index)
    try:
      return variable_map(tf.compat.v1.train.NewCheckpointReader(local))
    except (tf.errors.OpError, ValueError) as e:
      raise errors.CheckpointReadError(
          prefix, str(e).replace(local, prefix).strip()) from e


def _data_files(prefix: str, index: bytes) -> Tuple[str, ...]:
  """The data shards the index names, checked against the index's extents.

  Uses only the index (see `bundle_index`) and the shards' sizes, so a
  missing, truncated or shortened shard is found before anything is written.
  """
  index_path = prefix + '.index'
  try:
    header, entries = bundle_index.parse(index)
  except bundle_index.IndexFormatError as e:
    raise errors.CheckpointReadError(prefix, f'index {index_path!r}: {e}') from e
  count = header.num_shards
  shards = tuple(f'{prefix}.data-{i:05d}-of-{count:05d}' for i in range(count))
  sizes, missing = {}, []
  for shard in shards:  # one stat per shard (no exists() first: requests)
    try:
      sizes[shard] = tf.io.gfile.stat(shard).length
    except tf.errors.NotFoundError:
      missing.append(shard)
  if missing:
    raise errors.CheckpointReadError(
        prefix, f'data shard(s) missing: {", ".join(map(repr, missing))} '
        f'(the index names {count})')
  for shard_id, needed in sorted(bundle_index.shard_extents(entries).items()):
    if shard_id >= count:
      raise errors.CheckpointReadError(
          prefix, f'index {index_path!r} points into shard {shard_id} of '
          f'{count}')
    size = sizes[shards[shard_id]]
    if size < needed:
      raise errors.CheckpointReadError(
          prefix, f'data shard {shards[shard_id]!r} is truncated: {size} '
          f'bytes, the index needs {needed}')
  return shards


def check_mode_variables(mode: str, needed: Dict[str, saver_spec.VariableSpec],
                         checkpoint: CheckpointInfo) -> None:
  """Checks from metadata that `checkpoint` has what `mode`'s graph restores.

  Raises:
    errors.MissingVariablesError: keys the graph restores are not there.
    errors.VariableMismatchError: a key's dtype or shape differs.
  """
  missing = [k for k in needed if k not in checkpoint.variables]
  if missing:
    raise errors.MissingVariablesError(mode, missing, checkpoint.prefix)
  for name, spec in sorted(needed.items()):
    dtype, shape = checkpoint.variables[name]
    if spec.dtype != dtype or (spec.shape is not None and spec.shape != shape):
      raise errors.VariableMismatchError(
          mode, name, (spec.dtype, spec.shape), (dtype, shape),
          checkpoint.prefix)

