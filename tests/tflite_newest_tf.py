"""Converts one signature of a SavedModel with TFLite and runs it; prints JSON.

Run by `tests/runtimes_test.py` in the newest-TF venv (TF 2.16+, no
tf.estimator), so it imports nothing from multimode_export:

    python tflite_newest_tf.py SAVED_MODEL SIGNATURE_KEY INPUTS.npz [select]
"""

import json
import sys

import numpy as np
import tensorflow as tf


def main(argv):
  path, key, inputs = argv[1], argv[2], np.load(argv[3])
  converter = tf.lite.TFLiteConverter.from_saved_model(
      path, signature_keys=[key], tags={'serve'})
  if 'select' in argv[4:]:
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS,
                                           tf.lite.OpsSet.SELECT_TF_OPS]
  runner = tf.lite.Interpreter(
      model_content=converter.convert()).get_signature_runner(key)
  outputs = runner(**{k: inputs[k] for k in inputs.files})
  print(json.dumps({'tensorflow': tf.__version__,
                    'outputs': {k: np.asarray(v).tolist()
                                for k, v in outputs.items()
                                if np.asarray(v).dtype.kind in 'fiu'}}))


if __name__ == '__main__':
  main(sys.argv)
