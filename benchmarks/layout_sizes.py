r"""Bytes of the shared and the per-mode layout on an embedding model with Adam.

    python benchmarks/layout_sizes.py --rows 50000 --dim 64

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

import export_cost  # the benchmark model, from this directory

FLAGS = flags.FLAGS
flags.DEFINE_integer('rows', 50000, 'Embedding rows.')
flags.DEFINE_integer('steps', 3, 'Training steps.')
# --dim and --work_dir are export_cost's flags (a given --work_dir is kept; the
# default temporary one is removed at the end).


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
  from multimode_export import _per_mode as per_mode  # pylint: disable=g-import-not-at-top

  work = FLAGS.work_dir or tempfile.mkdtemp(prefix='layout_sizes_')
  est = export_cost.embedding_estimator(os.path.join(work, 'model'),
                                       FLAGS.rows, FLAGS.dim, partitions=1)
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
      est, os.path.join(work, 'shared'), export_cost.receivers())
  shared_seconds = time.monotonic() - start
  start = time.monotonic()
  parts = per_mode.export_saved_models_per_mode(
      est, os.path.join(work, 'per_mode'), export_cost.receivers())
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
