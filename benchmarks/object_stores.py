"""Exports to S3 and GCS servers on 127.0.0.1: ours against stock.

    python benchmarks/object_stores.py [--repeats 3] [--kinds s3,gcs]

For each store (moto S3, gcp-storage-emulator; see tests/testing/
object_stores.py) and each model (the small linear model of the tests, and
the same with a 100 MiB variable), runs `export_all_saved_models` and the
stock `experimental_export_all_saved_models` (TRAIN+EVAL+PREDICT, from a
local checkpoint) into a bucket, side by side in one worker process, while a
poller process lists the base like a model server: a version whose
`saved_model.pb` it sees before every variables shard the index names is
there counts as incomplete. Prints one markdown table row per case.
"""

import argparse
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), 'tests'))

from testing import object_stores  # pylint: disable=g-import-not-at-top,wrong-import-position

_MODELS = (('small', 0), ('100 MiB', 100))
_STAGING = ('.multimode-export-staging-', '.multimode-export-claims', 'temp-')


def _measure(worker, poller, action, model_dir, base, padding_mib, repeats,
             stop):
  poller.send('versions_seen', base, stop)
  seconds, failures = [], []
  for _ in range(repeats):
    try:
      seconds.append(worker.call('timed', action, model_dir, base,
                                 padding_mib=padding_mib)['seconds'])
    except object_stores.WorkerError as e:
      failures.append(e.type_name)
  with open(stop, 'w'):
    pass
  seen = poller.receive()
  os.remove(stop)
  left = [k for k in worker.call('sizes', base)
          if any(s in k for s in _STAGING)]
  return seconds, failures, seen, left


def main(argv):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--kinds', default='s3,gcs')
  args = parser.parse_args(argv[1:])
  work = tempfile.mkdtemp(prefix='objstore-bench-')
  stop = os.path.join(work, 'stop')
  print('| store | model | export | median s (runs) | failed | versions seen '
        '| seen incomplete | leftover objects |')
  print('|---|---|---|---|---|---|---|---|')
  for kind in args.kinds.split(','):
    server = object_stores.StoreServer.start(kind)
    try:
      env = server.client_env()
      log = os.path.join(work, 'worker.log')
      worker = object_stores.Worker(env, log_path=log, wait=False)
      poller = object_stores.Worker(env, log_path=log)
      worker.wait_ready()
      bucket = server.create_bucket()
      for model, mib in _MODELS:
        model_dir = os.path.join(work, f'model-{mib}')
        if not os.path.exists(model_dir):
          worker.call('train', model_dir, 1, padding_mib=mib)
        for name, action in (('ours', 'export'), ('stock', 'stock_export')):
          base = f'{bucket}/{name}-{mib}/exports'
          seconds, failures, seen, left = _measure(
              worker, poller, action, model_dir, base, mib, args.repeats, stop)
          median = f'{statistics.median(seconds):.2f}' if seconds else '-'
          print(f'| {kind} | {model} | {name} | {median} ({len(seconds)}) | '
                f'{len(failures)} {sorted(set(failures))} | '
                f'{len(seen["seen"])} | {len(seen["incomplete"])} | '
                f'{len(left)} |', flush=True)
      worker.close()
      poller.close()
    finally:
      server.stop()


if __name__ == '__main__':
  main(sys.argv)
