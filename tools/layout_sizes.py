r"""Bytes of the shared and the per-mode layout on an embedding model with Adam.

    python tools/layout_sizes.py --rows 50000 --dim 64

Trains an Estimator (an embedding of rows x dim float32, a dense head, Adam:
the benchmark model) for a few steps, exports TRAIN+EVAL+PREDICT in both
layouts from the same checkpoint, and prints a Markdown table: the bytes of
each SavedModel (`variables/` and the whole directory), how many of them are
new on disk (hard links to the checkpoint are not), and the export time.
"""

import os
import shutil
import sys
import tempfile
import time

from absl import app
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_integer('rows', 50000, 'Embedding rows.')
flags.DEFINE_integer('dim', 64, 'Embedding width.')
flags.DEFINE_integer('steps', 3, 'Training steps.')
flags.DEFINE_string('work_dir', None, 'Scratch directory, kept (default: a '
                    'new one under /tmp, removed at the end).')


def model_fn(features, labels, mode, params):
  """An embedding of rows x dim, a dense head, Adam."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  embedding = tf.compat.v1.get_variable(
      'embedding', [params['rows'], params['dim']],
      initializer=tf.compat.v1.random_uniform_initializer(-0.1, 0.1))
  w = tf.compat.v1.get_variable('w', [params['dim'], 1])
  b = tf.compat.v1.get_variable('b', [1],
                                initializer=tf.compat.v1.zeros_initializer())
  predictions = tf.matmul(tf.nn.embedding_lookup(embedding, features['ids']),
                          w) + b
  outputs = {'serving_default': tf.estimator.export.PredictOutput(
      {'y': predictions})}
  if mode == tf.estimator.ModeKeys.PREDICT:
    return tf.estimator.EstimatorSpec(mode, predictions={'y': predictions},
                                      export_outputs=outputs)
  loss = tf.compat.v1.losses.mean_squared_error(labels, predictions)
  train_op = None
  if mode == tf.estimator.ModeKeys.TRAIN:
    train_op = tf.compat.v1.train.AdamOptimizer(0.01).minimize(
        loss, global_step=tf.compat.v1.train.get_global_step())
  return tf.estimator.EstimatorSpec(mode, predictions={'y': predictions},
                                    loss=loss, train_op=train_op,
                                    export_outputs=outputs)


def _receivers():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  features, labels = {'ids': tf.zeros([1], tf.int64)}, tf.zeros([1, 1])
  supervised = tf.estimator.experimental.build_raw_supervised_input_receiver_fn
  return {
      tf.estimator.ModeKeys.TRAIN: supervised(features, labels),
      tf.estimator.ModeKeys.EVAL: supervised(features, labels),
      tf.estimator.ModeKeys.PREDICT:
          tf.estimator.export.build_raw_serving_input_receiver_fn(features),
  }


def _sizes(path: str, checkpoint_inodes) -> dict:
  """Apparent bytes of `path` and of its variables/, and bytes new on disk."""
  total = variables = new = 0
  for dirpath, _, names in os.walk(path):
    for name in names:
      st = os.stat(os.path.join(dirpath, name))
      total += st.st_size
      if os.path.basename(dirpath) == 'variables':
        variables += st.st_size
      if (st.st_dev, st.st_ino) not in checkpoint_inodes:
        new += st.st_size
  return {'total': total, 'variables': variables, 'new': new}


def main(argv):
  del argv
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))
  import multimode_export  # pylint: disable=g-import-not-at-top
  from multimode_export import per_mode  # pylint: disable=g-import-not-at-top

  work = FLAGS.work_dir or tempfile.mkdtemp(prefix='layout_sizes_')
  est = tf.estimator.Estimator(model_fn, model_dir=os.path.join(work, 'model'),
                               params={'rows': FLAGS.rows, 'dim': FLAGS.dim})
  rng = np.random.RandomState(0)

  def input_fn():
    ids = rng.randint(0, FLAGS.rows, size=256).astype(np.int64)
    y = rng.rand(256, 1).astype(np.float32)
    return tf.data.Dataset.from_tensor_slices(({'ids': ids}, y)).batch(64)
  est.train(input_fn, steps=FLAGS.steps)
  prefix = tf.train.latest_checkpoint(est.model_dir)
  ckpt_files = tf.io.gfile.glob(prefix + '.*')
  ckpt_bytes = sum(os.path.getsize(f) for f in ckpt_files)
  inodes = {(os.stat(f).st_dev, os.stat(f).st_ino) for f in ckpt_files}

  start = time.monotonic()
  shared = multimode_export.export_all_saved_models(
      est, os.path.join(work, 'shared'), _receivers())
  shared_seconds = time.monotonic() - start
  start = time.monotonic()
  parts = per_mode.export_saved_models_per_mode(
      est, os.path.join(work, 'per_mode'), _receivers())
  per_mode_seconds = time.monotonic() - start

  mib = lambda n: f'{n / 2**20:.2f}'  # pylint: disable=unnecessary-lambda-assignment
  rows = [('shared (3 MetaGraphs)', _sizes(shared, inodes), shared_seconds)]
  for mode, path in parts.items():
    rows.append((f'per-mode `{os.path.basename(os.path.dirname(path))}`',
                 _sizes(path, inodes), None))
  print(f'Embedding {FLAGS.rows} x {FLAGS.dim} float32 + Adam, '
        f'{FLAGS.steps} steps; checkpoint {mib(ckpt_bytes)} MiB '
        f'({ckpt_bytes} bytes), TensorFlow {tf.__version__}.\n')
  print('| SavedModel | variables/ MiB | whole dir MiB | new on disk MiB |'
        ' export s |')
  print('| --- | ---: | ---: | ---: | ---: |')
  for name, size, seconds in rows:
    print(f'| {name} | {mib(size["variables"])} | {mib(size["total"])} | '
          f'{mib(size["new"])} | {"" if seconds is None else f"{seconds:.2f}"} |')
  per_mode_total = {k: sum(r[1][k] for r in rows[1:])
                    for k in ('variables', 'total', 'new')}
  print(f'| per-mode, all three | {mib(per_mode_total["variables"])} | '
        f'{mib(per_mode_total["total"])} | {mib(per_mode_total["new"])} | '
        f'{per_mode_seconds:.2f} |')
  serve = rows[-1][1]['variables']
  print(f'\nserve part variables / shared variables: '
        f'{serve} / {rows[0][1]["variables"]} bytes = '
        f'{serve / rows[0][1]["variables"]:.3f}')
  if not FLAGS.work_dir:
    shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
  app.run(main)
