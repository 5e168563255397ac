"""An exporter process for processes_test.py (not a test itself).

    python tests/export_worker.py MODEL_DIR EXPORT_DIR_BASE [--fifo PATH]
        [--barrier] [--loop] [--fork N]

Builds the estimator of `models.linear_model_fn` over MODEL_DIR (already
trained by the test), plans a TRAIN+EVAL+PREDICT export, prints `ready`, and
then:
* with --barrier, waits for a line on stdin before writing, so several
  workers publish at the same moment;
* with --fifo, adds the FIFO as an `assets_extra` source: the copy blocks
  until the test writes into it (the export stalls after `variables/` is
  staged, before `saved_model.pb`);
* with --loop, exports again and again until killed;
* with --fork N, forks N processes once the plan is built (TensorFlow is
  imported once, not N times: the test stays fast on a small machine); each
  writes and publishes the export on its own, all released together by the
  barrier. The worker exits 0 if every child did.
Each finished export prints one JSON line: path, pid, start and end times.
"""

import json
import os
import sys
import time

import tensorflow as tf

from multimode_export import _export as export
from multimode_export import _options as options_lib
from multimode_export import _plan as plan_lib
from testing import models
from testing import receiver_fns


def main(argv):
  model_dir, base = argv[1], argv[2]
  fifo = argv[argv.index('--fifo') + 1] if '--fifo' in argv else None
  estimator = tf.estimator.Estimator(
      models.linear_model_fn, model_dir=model_dir, params={},
      config=tf.estimator.RunConfig(tf_random_seed=1))
  options = options_lib.ExportOptions(
      assets_extra={'slow.txt': fifo} if fifo else None)
  plan = plan_lib.plan_export(estimator, base, receiver_fns.receiver_map(),
                              options)
  forks = int(argv[argv.index('--fork') + 1]) if '--fork' in argv else 0
  release_read, release_write = os.pipe()
  children = []
  for _ in range(forks):
    pid = os.fork()
    if pid == 0:
      os.close(release_write)
      os.read(release_read, 1)  # the barrier
      _export(plan, base, options, loop=False)
      os._exit(0)  # pylint: disable=protected-access
    children.append(pid)
  print('ready', flush=True)
  if '--barrier' in argv:
    sys.stdin.readline()
  if forks:
    os.write(release_write, b'x' * forks)
    codes = [os.waitpid(pid, 0)[1] for pid in children]
    return 0 if not any(codes) else 1
  _export(plan, base, options, loop='--loop' in argv)
  return 0


def _export(plan, base, options, loop: bool) -> None:
  while True:
    start = time.time()
    path = export.write_plan(plan, options)
    line = json.dumps({'path': path, 'pid': os.getpid(), 'start': start,
                       'end': time.time()}) + '\n'
    os.write(1, line.encode())  # one write: atomic next to other children
    if not loop:
      return

if __name__ == '__main__':
  sys.exit(main(sys.argv))
