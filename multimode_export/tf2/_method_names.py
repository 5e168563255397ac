"""Giving the written SavedModel back its signatures' method names.

`tf.saved_model.save` writes every signature's method name as
`tensorflow/serving/predict`. TF Serving's Classify and Regress APIs (which
load with the TF1 Session loader) accept only signatures whose method name is
`tensorflow/serving/classify` or `.../regress`, so the names of the source's
signatures are written back into `saved_model.pb`, and the fingerprint, which
covers the proto's bytes, is computed again. Both files are written under new
names and renamed into place, the fingerprint first.
"""

from typing import Mapping

import tensorflow as tf

from multimode_export import _filesystem as filesystem
from multimode_export.saved_model import _fingerprint
from multimode_export.saved_model import _format

_INDEX = ('variables', 'variables.index')


def _replace(path: str, data: bytes) -> None:
  partial = path + '.partial'
  with tf.io.gfile.GFile(partial, 'wb') as f:
    f.write(data)
  tf.io.gfile.rename(partial, path, overwrite=True)


def restore_method_names(saved_model_dir: str,
                         method_names: Mapping[str, str]) -> bool:
  """Sets each signature's method name to `method_names[key]`.

  Args:
    saved_model_dir: a SavedModel written by `tf.saved_model.save`.
    method_names: signature key -> method name; other keys are left alone.

  Returns:
    Whether anything changed (nothing is rewritten otherwise).
  """
  saved_model = _format.read_saved_model(saved_model_dir)
  changed = False
  for meta_graph_def in saved_model.meta_graphs:
    for key, signature_def in meta_graph_def.signature_def.items():
      wanted = method_names.get(key)
      if wanted and signature_def.method_name != wanted:
        signature_def.method_name = wanted
        changed = True
  if not changed:
    return False
  data = saved_model.SerializeToString()
  index_path = filesystem.join(saved_model_dir, *_INDEX)
  index = (filesystem.read_bytes(index_path)
           if tf.io.gfile.exists(index_path) else None)
  _replace(filesystem.join(saved_model_dir, _format.FINGERPRINT_PB),
           _fingerprint.compute(data, index))
  _replace(filesystem.join(saved_model_dir, _format.SAVED_MODEL_PB), data)
  return True
