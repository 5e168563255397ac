"""Snapshots of directories (to prove nothing changed) and damaging exports on purpose.

Real TensorFlow and real estimators throughout; nothing is mocked.
"""

import hashlib
import os
import posixpath
from typing import Dict, List, Optional, Tuple

import tensorflow as tf

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
