"""Small in-memory data sets, tf.Examples, vocabularies and raw checkpoints for tests.

Real TensorFlow and real estimators throughout; nothing is mocked.
"""

import os
from typing import Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf

FEATURE_DIM = 3


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


N_CLASSES = 3


def canned_feature_columns():
  return [tf.feature_column.numeric_column('x', shape=[FEATURE_DIM])]


def write_checkpoint(prefix: str, values: Dict[str, np.ndarray]) -> str:
  """Writes `values` (key -> array) as a V2 checkpoint at `prefix`."""
  names = sorted(values)
  tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names,
                    shape_and_slices=[''] * len(names),
                    tensors=[tf.constant(values[n]) for n in names])
  return prefix
