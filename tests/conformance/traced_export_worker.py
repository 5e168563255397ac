"""One export, run under `strace` by crash_test.py (not a test itself).

    python tests/conformance/traced_export_worker.py MODEL_DIR TARGET LAYOUT
        [--nodurable]

LAYOUT: `shared` (`export_all_saved_models` into the base TARGET),
`per_mode` (`export_saved_models_per_mode` into the base TARGET) or `fixed`
(`export_all_saved_models(export_dir=TARGET, overwrite=True)`). The model of
`models.linear_model_fn` over MODEL_DIR (trained by the test) is exported
with one `assets_extra` file. TensorFlow is imported and the estimator built
before the export starts; the trace marks the export's start and its return
with one write each to stdout:

    MMX-START
    MMX-RETURNED {"paths": [...]}
"""

import json
import os
import sys

import tensorflow as tf

import multimode_export
from testing import models
from testing import receiver_fns

START = 'MMX-START'
RETURNED = 'MMX-RETURNED '


def main(argv):
  model_dir, target, layout = argv[1], argv[2], argv[3]
  durable = '--nodurable' not in argv
  estimator = tf.estimator.Estimator(
      models.linear_model_fn, model_dir=model_dir, params={},
      config=tf.estimator.RunConfig(tf_random_seed=1))
  extra = {'notes/vocab.txt': os.path.join(model_dir, 'vocab.txt')}
  os.write(1, (START + '\n').encode())
  if layout == 'per_mode':
    paths = list(multimode_export.export_saved_models_per_mode(
        estimator, target, receiver_fns.receiver_map(), assets_extra=extra,
        durable=durable).values())
  elif layout == 'fixed':
    paths = [multimode_export.export_all_saved_models(
        estimator, None, receiver_fns.receiver_map(), assets_extra=extra,
        export_dir=target, overwrite=True, durable=durable)]
  else:
    paths = [multimode_export.export_all_saved_models(
        estimator, target, receiver_fns.receiver_map(), assets_extra=extra,
        durable=durable)]
  os.write(1, (RETURNED + json.dumps({'paths': sorted(paths)}) + '\n').encode())
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv))
