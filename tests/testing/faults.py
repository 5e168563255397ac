"""Snapshots of directories (to prove nothing changed) and damaging exports on purpose.

Real TensorFlow and real estimators throughout; nothing is mocked.
"""

import hashlib
import os
import posixpath
from typing import Dict, List, Optional, Tuple

import tensorflow as tf

from multimode_export.variables import _bundle_index as bundle_index


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
  # 'root/', not 'root': a bucket's root is 's3://bucket/' ('s3://bucket' is
  # no directory to the filesystem).
  for dirpath, dirs, files in tf.io.gfile.walk(root + '/'):
    rel = dirpath[len(root):].lstrip('/')
    for name in dirs:
      out[posixpath.join(rel, name.rstrip('/')) + '/'] = None
    for name in files:
      with tf.io.gfile.GFile(posixpath.join(dirpath, name), 'rb') as f:
        out[posixpath.join(rel, name)] = hashlib.sha256(f.read()).hexdigest()
  return out


def truncate_variables_data(export_dir: str, keep_fraction: float = 0.5
                           ) -> str:
  """Cuts the export's variables data file short; returns its path."""
  [data] = tf.io.gfile.glob(
      os.path.join(export_dir, 'variables', 'variables.data-*'))
  os.truncate(data, int(os.path.getsize(data) * keep_fraction))
  return data



def flip_variables_byte(export_dir: str, key: str) -> str:
  """Flips the first byte stored for checkpoint key `key` in the export's
  variables data file (same length; the tensor's bytes no longer match their
  crc32c); returns the file's path."""
  prefix = os.path.join(export_dir, 'variables', 'variables')
  header, entries = bundle_index.read(prefix + '.index')
  entry = entries[key.encode('utf-8')]
  data = (f'{prefix}.data-{entry.shard_id:05d}-of-'
          f'{header.num_shards:05d}')
  with open(data, 'r+b') as f:
    f.seek(entry.offset)
    byte = f.read(1)
    f.seek(entry.offset)
    f.write(bytes([byte[0] ^ 0xff]))
  return data
