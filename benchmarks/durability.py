r"""The cost of durable publishing (`durable=True`, the default) on local disk.

    python benchmarks/durability.py --sizes 0.1,3 --repeats 5 --big_repeats 2 \
        --out docs/benchmarks/

For each checkpoint size (export_cost.py's synthetic embedding + 2 Adam
slots; the TRAIN+EVAL+PREDICT export hard-links its data file), side by side
in alternating order, each run a fresh subprocess:

  clean   the checkpoint was written and `sync`ed before: the export call with
          `durable=False` against `durable=True`;
  dirty   the checkpoint is written by the same subprocess right before the
          export call (its pages dirty in the page cache): the export call
          with `durable=False` against `durable=True`, and, for comparison,
          the `fsync` of the freshly written checkpoint files alone (writing
          its bytes back once).

Reported: medians of the export call's wall time. Targets: clean, durable
<= 1.1x non-durable; dirty, durable - non-durable <= the checkpoint's own
sync. The measurements go to <out>/durability.json; durability.md and
durability.png are rendered from it (`--render` re-renders only).
"""

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Dict, List

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export_cost  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_integer('big_repeats', 2, 'Runs of each contender from 1 GiB.')
flags.DEFINE_bool('threads_only', False, 'Only measure sync_tree with 1 and '
                  'with 4 threads, into the existing durability.json.')
# export_cost defines --sizes (here 0.1,3 unless given), --repeats (runs
# below 1 GiB), --out, --work_dir (local disk), --render and --worker.
DEFAULT_SIZES = ['0.1', '3']

GIB = export_cost.GIB
DIM = 64
JSON_NAME, PAGE_NAME, PLOT_NAME = ('durability.json', 'durability.md',
                                   'durability.png')
CONTENDERS = {'clean': ('nodurable', 'durable'),
              'dirty': ('nodurable', 'durable', 'sync_alone')}


def _dirty_bytes() -> int:
  with open('/proc/meminfo') as f:
    for line in f:
      if line.startswith('Dirty:'):
        return int(line.split()[1]) * 1024
  return 0


def worker(args: dict) -> dict:
  """One run: (re)writes the checkpoint if dirty, then the timed part."""
  model_dir = args['model_dir']
  if args['state'] == 'dirty':
    # New files, not renamed over the old ones: ext4 starts writing back a
    # file renamed over another at once (auto_da_alloc), which would make
    # the checkpoint half clean already.
    for name in os.listdir(model_dir):
      if name.startswith('model.ckpt-'):
        os.unlink(os.path.join(model_dir, name))
    export_cost.write_synthetic_checkpoint(model_dir, args['rows'], DIM, 1)
  dirty = _dirty_bytes()
  if args['contender'] == 'sync_alone':
    files = [os.path.join(model_dir, n) for n in os.listdir(model_dir)
             if n.startswith('model.ckpt-')]
    start = time.perf_counter()
    for path in files:
      fd = os.open(path, os.O_RDONLY)
      os.fsync(fd)
      os.close(fd)
    return {'seconds': time.perf_counter() - start, 'dirty_bytes': dirty}
  import multimode_export  # pylint: disable=g-import-not-at-top
  estimator = export_cost.embedding_estimator(model_dir, args['rows'], DIM, 1)
  syncing = _time_syncs()
  start = time.perf_counter()
  multimode_export.export_all_saved_models(
      estimator, args['export_base'], export_cost.receivers(),
      durable=args['contender'] == 'durable')
  return {'seconds': time.perf_counter() - start, 'dirty_bytes': dirty,
          'sync_seconds': syncing[0]}


def _time_syncs() -> List[float]:
  """Wraps the syncing functions of publishing/_durable to add up the wall
  time spent in them (outermost calls only): the cost of durability
  itself, which CPU load on a shared machine hardly blurs."""
  from multimode_export.publishing import _durable  # pylint: disable=g-import-not-at-top
  total, depth = [0.0], [0]

  def timed(function):
    def wrapped(*args, **kwargs):
      depth[0] += 1
      start = time.perf_counter()
      try:
        return function(*args, **kwargs)
      finally:
        depth[0] -= 1
        if depth[0] == 0:
          total[0] += time.perf_counter() - start
    return wrapped

  for name in ('sync_tree', 'sync_dirs', 'sync_dir', 'sync_file'):
    setattr(_durable, name, timed(getattr(_durable, name)))
  return total


def measure_size(size_gib: float, work: str, repeats: int) -> Dict:
  rows = max(1, int(size_gib * GIB / 3 / (DIM * 4)))
  model_dir = os.path.join(work, f'model-{size_gib}')
  common = {'model_dir': model_dir, 'rows': rows}
  export_cost.run_worker(dict(common, kind='write_checkpoint', dim=DIM,
                              partitions=1))  # syncs before it runs
  ckpt_bytes = sum(os.path.getsize(os.path.join(model_dir, n))
                   for n in os.listdir(model_dir) if n.startswith('model.ckpt-'))
  runs: Dict[str, Dict[str, List[dict]]] = {
      s: {c: [] for c in cs} for s, cs in CONTENDERS.items()}
  for repeat in range(repeats):
    for state, contenders in CONTENDERS.items():
      order = contenders if repeat % 2 == 0 else contenders[::-1]
      for contender in order:
        base = os.path.join(work, f'export-{state}-{contender}-{repeat}')
        # export_cost.run syncs first: the checkpoint of a clean run is on
        # disk, and no earlier run's writeback competes with this one.
        result = export_cost.run_worker(
            dict(common, state=state, contender=contender, export_base=base),
            script=__file__)
        shutil.rmtree(base, ignore_errors=True)
        runs[state][contender].append(
            {k: result[k] for k in ('seconds', 'dirty_bytes', 'wall',
                                    'sync_seconds') if k in result})
        print(f'  {size_gib} GiB {state:5s} {contender:10s} '
              f'{result["seconds"]:7.3f} s (dirty at start '
              f'{result["dirty_bytes"] / GIB:.2f} GiB)', flush=True)
  shutil.rmtree(model_dir, ignore_errors=True)
  return {'ckpt_bytes': ckpt_bytes, 'repeats': repeats, 'runs': runs}


THREAD_FILES, THREAD_FILE_BYTES, THREAD_REPEATS = 12, 8 << 20, 6


def measure_threads(work: str) -> Dict:
  """`sync_tree` of THREAD_FILES freshly written (dirty) files, with one
  thread and with `_durable`'s threads, alternating."""
  from multimode_export.publishing import _durable  # pylint: disable=g-import-not-at-top
  default = _durable._THREADS  # pylint: disable=protected-access
  runs = {'1': [], str(default): []}
  tree = os.path.join(work, 'threads')
  for repeat in range(THREAD_REPEATS):
    for threads in (1, default) if repeat % 2 == 0 else (default, 1):
      shutil.rmtree(tree, ignore_errors=True)
      os.sync()
      os.makedirs(tree)
      for i in range(THREAD_FILES):
        with open(os.path.join(tree, f'file-{i}'), 'wb') as f:
          f.write(os.urandom(THREAD_FILE_BYTES))
      _durable._THREADS = threads  # pylint: disable=protected-access
      start = time.perf_counter()
      _durable.sync_tree(tree)
      runs[str(threads)].append(time.perf_counter() - start)
  _durable._THREADS = default  # pylint: disable=protected-access
  shutil.rmtree(tree, ignore_errors=True)
  return {'files': THREAD_FILES, 'file_bytes': THREAD_FILE_BYTES,
          'seconds': runs}


def _median(runs: List[dict], key: str = 'seconds') -> float:
  return statistics.median(r[key] for r in runs)


def summary(size: Dict) -> Dict[str, float]:
  """The medians and the two target quantities of one size."""
  clean, dirty = size['runs']['clean'], size['runs']['dirty']
  out = {f'{s}_{c}': _median(runs) for s, group in size['runs'].items()
         for c, runs in group.items()}
  out['clean_ratio'] = out['clean_durable'] / out['clean_nodurable']
  out['dirty_extra'] = out['dirty_durable'] - out['dirty_nodurable']
  out['dirty_extra_vs_sync'] = out['dirty_extra'] / out['dirty_sync_alone']
  out['dirty_gib'] = _median(dirty['durable'], 'dirty_bytes') / GIB
  # The time spent syncing inside the durable calls, and the ratio it
  # gives against the non-durable call: CPU load hardly blurs it.
  out['clean_sync'] = _median(clean['durable'], 'sync_seconds')
  out['dirty_sync'] = _median(dirty['durable'], 'sync_seconds')
  out['clean_sync_ratio'] = 1 + out['clean_sync'] / out['clean_nodurable']
  out['dirty_sync_vs_alone'] = out['dirty_sync'] / out['dirty_sync_alone']
  return out


def render_markdown(data: Dict) -> str:
  lines = [
      '# Durable publishing: the cost of `fsync`', '',
      'The TRAIN+EVAL+PREDICT export of export_cost.py\'s embedding model '
      '(its checkpoint\'s data file is hard-linked into `variables/`), with '
      '`durable=False` and with `durable=True` (the default), each run a '
      'fresh subprocess, alternating; medians of the export call\'s wall '
      'time. *Clean*: the checkpoint was written and synced before. '
      '*Dirty*: the same subprocess wrote the checkpoint just before the '
      'export call, so its pages were still dirty in the page cache ("dirty '
      'at start": the page cache\'s dirty bytes then; the kernel starts '
      'writing back in the background on its own). "Sync alone": `fsync` of '
      'the freshly written checkpoint files and nothing else. "In fsync": '
      'the wall time the durable call spent in `publishing/_durable`\'s '
      'functions (all its syncs): the cost of durability itself, which the '
      'CPU load of other jobs on this shared machine blurs far less than the '
      'whole call\'s time; "clean ratio by fsync time" is 1 + that time / '
      'the non-durable call.', '',
      f'Command: `{data["command"]}`', '', data['machine'], '',
      '| checkpoint GiB | runs | clean: non-durable s | clean: durable s | '
      'clean ratio (target <= 1.1) | dirty: non-durable s | dirty: durable s '
      '| dirty at start GiB | sync alone s | dirty: durable - non-durable s '
      '(target <= sync alone) | clean: in fsync s | clean ratio by fsync '
      'time | dirty: in fsync s (target <= sync alone) |',
      '|---|---|---|---|---|---|---|---|---|---|---|---|---|']
  for key in sorted(data['sizes'], key=float):
    size = data['sizes'][key]
    s = summary(size)
    clean_ok = 'met' if s['clean_ratio'] <= 1.1 else 'NOT met'
    dirty_ok = 'met' if s['dirty_extra'] <= s['dirty_sync_alone'] else 'NOT met'
    lines.append(
        f'| {size["ckpt_bytes"] / GIB:.2f} | {size["repeats"]} | '
        f'{s["clean_nodurable"]:.3f} | {s["clean_durable"]:.3f} | '
        f'{s["clean_ratio"]:.2f}x ({clean_ok}) | {s["dirty_nodurable"]:.3f} | '
        f'{s["dirty_durable"]:.3f} | {s["dirty_gib"]:.2f} | '
        f'{s["dirty_sync_alone"]:.3f} | {s["dirty_extra"]:.3f} = '
        f'{s["dirty_extra_vs_sync"]:.2f}x sync alone ({dirty_ok}) | '
        f'{s["clean_sync"]:.3f} | {s["clean_sync_ratio"]:.3f}x '
        f'({"met" if s["clean_sync_ratio"] <= 1.1 else "NOT met"}) | '
        f'{s["dirty_sync"]:.3f} = {s["dirty_sync_vs_alone"]:.2f}x '
        f'({"met" if s["dirty_sync"] <= s["dirty_sync_alone"] else "NOT met"})'
        ' |')
  threads = data.get('threads')
  if threads:
    medians = {k: statistics.median(v) for k, v in threads['seconds'].items()}
    one, many = medians['1'], min(v for k, v in medians.items() if k != '1')
    lines += ['', f'Syncing in threads: `sync_tree` of {threads["files"]} '
              f'freshly written files of {threads["file_bytes"] >> 20} MiB, '
              f'{len(threads["seconds"]["1"])} runs alternating: one thread '
              f'{one:.3f} s, ' + ', '.join(
                  f'{k} threads {v:.3f} s' for k, v in medians.items()
                  if k != '1') + f' (median; {one / many:.1f}x faster).']
  lines += ['', f'![durable and non-durable export calls]({PLOT_NAME})', '']
  return '\n'.join(lines)


def plot(data: Dict, path: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  keys = sorted(data['sizes'], key=float)
  fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 4.2))
  axes = axes if len(keys) > 1 else [axes]
  bars = [('clean_nodurable', 'clean, non-durable'),
          ('clean_durable', 'clean, durable'),
          ('dirty_nodurable', 'dirty, non-durable'),
          ('dirty_durable', 'dirty, durable'),
          ('dirty_sync_alone', 'dirty: sync of the\ncheckpoint alone'),
          ('clean_sync', 'clean, durable:\ntime in fsync'),
          ('dirty_sync', 'dirty, durable:\ntime in fsync')]
  for ax, key in zip(axes, keys):
    s = summary(data['sizes'][key])
    ax.bar(range(len(bars)), [s[b] for b, _ in bars],
           color=['#9ecae1', '#3182bd', '#fdae6b', '#e6550d', '#999999',
                  '#3182bd', '#e6550d'], hatch=[''] * 5 + ['//'] * 2)
    ax.set_xticks(range(len(bars)), [label for _, label in bars],
                  rotation=30, ha='right', fontsize=8)
    gib = data['sizes'][key]['ckpt_bytes'] / GIB
    ax.set(title=f'{gib:.2f} GiB checkpoint', ylabel='seconds (median)')
    ax.grid(axis='y', alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def _machine() -> str:
  """export_cost's machine line, without its page-cache note (this script
  says per run whether the checkpoint was clean or dirty)."""
  return export_cost._machine().split(';')[0] + '.'  # pylint: disable=protected-access


def render(out: str) -> None:
  with open(os.path.join(out, JSON_NAME)) as f:
    data = json.load(f)
  text = render_markdown(data)
  with open(os.path.join(out, PAGE_NAME), 'w') as f:
    f.write(text)
  plot(data, os.path.join(out, PLOT_NAME))
  print(text)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if FLAGS.worker:
    print(json.dumps(worker(json.loads(FLAGS.worker))))
    return
  if FLAGS.render:
    render(FLAGS.out)
    return
  if FLAGS.threads_only:
    path = os.path.join(FLAGS.out, JSON_NAME)
    with open(path) as f:
      data = json.load(f)
    work = FLAGS.work_dir or tempfile.mkdtemp(prefix='durability-')
    data['threads'] = measure_threads(work)
    with open(path, 'w') as f:
      json.dump(data, f, indent=1)
    render(FLAGS.out)
    return
  work = FLAGS.work_dir or tempfile.mkdtemp(prefix='durability-')
  os.makedirs(work, exist_ok=True)
  try:
    sizes = {}
    chosen = FLAGS.sizes if FLAGS['sizes'].present else DEFAULT_SIZES
    for size in chosen:
      repeats = FLAGS.repeats if float(size) < 1 else FLAGS.big_repeats
      sizes[size] = measure_size(float(size), work, repeats)
    data = {'command': (f'python benchmarks/durability.py --sizes '
                        f'{",".join(chosen)} --repeats {FLAGS.repeats} '
                        f'--big_repeats {FLAGS.big_repeats} --out '
                        f'{FLAGS.out}'),
            'machine': _machine(), 'sizes': sizes}
    os.makedirs(FLAGS.out, exist_ok=True)
    with open(os.path.join(FLAGS.out, JSON_NAME), 'w') as f:
      json.dump(data, f, indent=1)
    render(FLAGS.out)
  finally:
    if not FLAGS.work_dir:
      shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
  app.run(main)
