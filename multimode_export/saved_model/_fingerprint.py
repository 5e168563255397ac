"""`fingerprint.pb`: the SavedModel fingerprint TensorFlow 2.13+ writes.

TensorFlow computes a fingerprint (checksums of `saved_model.pb`, of its
graphs, signatures and object graph, and of `variables/variables.index`)
from the files of one directory, after `saved_model.pb` is written. This
package writes `saved_model.pb` last, so that its presence means a complete
export; the fingerprint is therefore computed in a private local directory
holding the same two files, and written into the export before the proto.
The values are exactly TensorFlow's for the published files.
"""

import os
import tempfile
from typing import Optional

import tensorflow as tf

from multimode_export import _filesystem as filesystem
from multimode_export import _tf_private
from multimode_export.saved_model import _format as saved_model_format

_INDEX = 'variables/variables.index'  # relative to the export directory


def compute(saved_model_pb: bytes, index: Optional[bytes]) -> bytes:
  """The serialized FingerprintDef of the export being written.

  Args:
    saved_model_pb: the binary `saved_model.pb` that will be written (for
      an `as_text` export, its binary form).
    index: the bytes of the export's `variables/variables.index` as read
      back after writing it, or None if it has none.

  Returns:
    The bytes of `fingerprint.pb`.
  """
  with tempfile.TemporaryDirectory(prefix='multimode_export_fp_') as scratch:
    with open(os.path.join(scratch, saved_model_format.SAVED_MODEL_PB),
              'wb') as f:
      f.write(saved_model_pb)
    if index is not None:
      os.makedirs(os.path.join(scratch, 'variables'))
      with open(os.path.join(scratch, _INDEX), 'wb') as f:
        f.write(index)
    return _tf_private.fingerprint_def(scratch, saved_model_pb)


def write(export_dir: str, saved_model_pb: bytes,
          index: Optional[bytes]) -> None:
  """Writes `fingerprint.pb` into `export_dir` (before `saved_model.pb`).

  Args:
    export_dir: the export being written.
    saved_model_pb: as for `compute`.
    index: as for `compute`.
  """
  with tf.io.gfile.GFile(
      filesystem.join(export_dir, saved_model_format.FINGERPRINT_PB), 'wb') as f:
    f.write(compute(saved_model_pb, index))
