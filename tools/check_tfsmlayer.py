"""Loads an exported serve part with Keras 3's `TFSMLayer` and runs it.

Meant to run under a newer TensorFlow than the exporter (which needs
tf.estimator, gone after 2.15): it imports nothing from multimode_export.

    # once: a venv with the newest tensorflow-cpu and Keras 3
    /opt/venv/bin/python tools/check_tfsmlayer.py --create_venv /tmp/venv-tf-new
    # then, on the serve part of a per-mode export:
    /tmp/venv-tf-new/bin/python tools/check_tfsmlayer.py \
        --saved_model <base>/serve/<version> --inputs '[[1, 2, 3]]'

Prints one JSON line: the TensorFlow and Keras versions and the outputs of
the layer called directly and inside a Keras model, for the given inputs.
Exits non-zero if loading or calling fails.
"""

import argparse
import json
import os
import subprocess
import sys
import venv


def create_venv(path: str, packages=('tensorflow-cpu',)) -> str:
  """Creates `path` with the newest `packages`; returns its python."""
  python = os.path.join(path, 'bin', 'python')
  if not os.path.exists(python):
    venv.EnvBuilder(with_pip=True, clear=True).create(path)
  subprocess.run([python, '-m', 'pip', 'install', '--quiet', '--upgrade',
                  *packages], check=True)
  return python


def run(saved_model: str, inputs, endpoint: str = 'serving_default') -> dict:
  """Calls the SavedModel's `endpoint` through `keras.layers.TFSMLayer`."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  x = np.asarray(inputs, np.float32)
  layer = keras.layers.TFSMLayer(saved_model, call_endpoint=endpoint)
  direct = layer(x)
  model = keras.Sequential([keras.Input(shape=x.shape[1:]), layer])
  in_model = model.predict(x, verbose=0)
  return {
      'tensorflow': tf.__version__,
      'keras': keras.__version__,
      'outputs': {k: np.asarray(v).tolist() for k, v in direct.items()},
      'model_outputs': {k: np.asarray(v).tolist()
                        for k, v in in_model.items()},
  }


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--saved_model', help='the serve part to load')
  parser.add_argument('--inputs', default='[[1.0, 2.0, 3.0]]',
                      help='JSON array fed to the layer')
  parser.add_argument('--endpoint', default='serving_default')
  parser.add_argument('--create_venv', metavar='DIR',
                      help='create DIR with the newest tensorflow-cpu and exit')
  args = parser.parse_args(argv)
  if args.create_venv:
    print(create_venv(args.create_venv))
    return 0
  if not args.saved_model:
    parser.error('--saved_model is required')
  print(json.dumps(run(args.saved_model, json.loads(args.inputs),
                       args.endpoint)))
  return 0


if __name__ == '__main__':
  sys.exit(main())
