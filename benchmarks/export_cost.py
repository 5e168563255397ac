r"""Export cost against checkpoint size: this package, the stock exports, `cp`.

    python benchmarks/export_cost.py --sizes 0.1,0.5,1,3 --repeats 3 \
        --out docs/benchmarks/

For each size (GiB of checkpoint) a synthetic Estimator checkpoint is written:
an embedding of ROWS x DIM float32 trained with Adam, i.e. the embedding, its
two Adam slots, a small dense head with its slots, beta powers and
global_step, under exactly the keys, shapes and dtypes the model_fn's TRAIN
graph saves (read from that graph's saver). Training a 3 GiB model would be
too slow, so the values are random and written directly.

Then, repeats times, alternating, each in a fresh subprocess:
  package          multimode_export, TRAIN+EVAL+PREDICT, same filesystem
  package_predict  multimode_export, PREDICT only (subset by extent copy)
  package_per_mode multimode_export per-mode layout (train linked, eval and
                   serve subsets by extent copy)
  stock_all        Estimator.experimental_export_all_saved_models, 3 modes
  stock_predict    Estimator.export_saved_model (PREDICT)
  cp               `cp` of the checkpoint files, same filesystem
  package_otherfs  multimode_export, 3 modes, into --other_fs (no links)
  cp_otherfs       `cp` of the checkpoint files into --other_fs
and a small canned DNNClassifier (package vs stock_all). Reported: medians of
the process wall time, of the export call alone, and of the peak RSS
(`wait4` rusage of the child). Results go to <out>/results.md and
<out>/export_cost.png.

`--larger_than_ram_gib N` instead writes an N GiB checkpoint of partitioned
variables slice by slice, exports it with the package (link path and the
PREDICT-only streamed path), serves one prediction from the export, and runs
the stock export under an RSS watchdog (`--rss_limit_gib`) that kills it
before it takes the machine down.

Needs matplotlib (not a dependency of the package).
"""

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

from absl import app
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_list('sizes', ['0.1', '0.5', '1', '3'],
                  'Checkpoint sizes in GiB (embedding + 2 Adam slots).')
flags.DEFINE_integer('repeats', 3, 'Runs of each contender; medians reported.')
flags.DEFINE_integer('small_repeats', 5, 'Runs of each small-model contender '
                     '(its times are short and noisy on a shared machine).')
flags.DEFINE_string('out', 'docs/benchmarks/', 'Where results.md and the '
                    'plot are written.')
flags.DEFINE_string('work_dir', None, 'Scratch directory on the filesystem '
                    'to measure (default: a new one under /tmp).')
flags.DEFINE_string('other_fs', '/dev/shm', 'A directory on another '
                    'filesystem, for the copy-needed case; empty to skip.')
flags.DEFINE_integer('dim', 64, 'Embedding width.')
flags.DEFINE_bool('small_model', True, 'Also measure a canned DNNClassifier.')
flags.DEFINE_float('larger_than_ram_gib', 0, 'If > 0, run only the '
                   'larger-than-RAM case with a checkpoint of this size.')
flags.DEFINE_integer('partitions', 32, 'Embedding partitions of the '
                     'larger-than-RAM case.')
flags.DEFINE_float('rss_limit_gib', 16, 'The larger-than-RAM case kills a '
                   'contender whose RSS passes this.')
# Internal: one measured run in a fresh process.
flags.DEFINE_bool('render', False, 'Only re-render <out>/results.md and the '
                  'plot from <out>/results.json (no measuring).')
flags.DEFINE_string('worker', None, 'Internal: JSON arguments of one run.')

GIB = 1 << 30
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONTENDERS = ('package', 'package_predict', 'package_per_mode', 'stock_all',
              'stock_predict', 'cp')
OTHER_FS_CONTENDERS = ('package_otherfs', 'cp_otherfs')
SMALL_CONTENDERS = ('small_package', 'small_stock_all')

# --------------------------------------------------------------------------
# The model (imported lazily: the runner process never imports TensorFlow).


def model_fn(features, labels, mode, params):
  """An embedding of rows x dim, a dense head, Adam."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  partitioner = None
  if params['partitions'] > 1:
    partitioner = tf.compat.v1.fixed_size_partitioner(params['partitions'])
  embedding = tf.compat.v1.get_variable(
      'embedding', [params['rows'], params['dim']],
      initializer=tf.compat.v1.random_uniform_initializer(-0.1, 0.1),
      partitioner=partitioner)
  w = tf.compat.v1.get_variable('w', [params['dim'], 1])
  b = tf.compat.v1.get_variable('b', [1],
                                initializer=tf.compat.v1.zeros_initializer())
  looked_up = tf.nn.embedding_lookup(embedding, features['ids'])
  predictions = tf.matmul(looked_up, w) + b
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


def receivers(modes=('train', 'eval', 'infer'), small=False):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if small:
    features = {'x': tf.zeros([1, 3])}
    labels = tf.zeros([1, 1], tf.int64)
  else:
    features = {'ids': tf.zeros([1], tf.int64)}
    labels = tf.zeros([1, 1])
  fns = {
      'train': tf.estimator.experimental.build_raw_supervised_input_receiver_fn(
          features, labels),
      'eval': tf.estimator.experimental.build_raw_supervised_input_receiver_fn(
          features, labels),
      'infer': tf.estimator.export.build_raw_serving_input_receiver_fn(
          features),
  }
  return {m: fns[m] for m in modes}


def embedding_estimator(model_dir: str, rows: int, dim: int, partitions: int):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.estimator.Estimator(
      model_fn, model_dir=model_dir,
      params={'rows': rows, 'dim': dim, 'partitions': partitions})


def small_estimator(model_dir: str):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.estimator.DNNClassifier(
      hidden_units=[16, 8], model_dir=model_dir,
      feature_columns=[tf.feature_column.numeric_column('x', shape=[3])],
      config=tf.estimator.RunConfig(tf_random_seed=1))


# --------------------------------------------------------------------------
# Writing the synthetic checkpoint.


def train_graph_entries(rows: int, dim: int, partitions: int):
  """checkpoint key -> VariableSpec, as the TRAIN graph's saver saves them."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from multimode_export.graph import _saver_spec as saver_spec  # pylint: disable=g-import-not-at-top
  graph = tf.Graph()
  with graph.as_default():
    tf.compat.v1.train.create_global_step()
    features = {'ids': tf.zeros([1], tf.int64)}
    model_fn(features, tf.zeros([1, 1]), tf.estimator.ModeKeys.TRAIN,
             {'rows': rows, 'dim': dim, 'partitions': partitions})
    saver = tf.compat.v1.train.Saver(sharded=True)  # as Estimator's Scaffold
    meta = saver.export_meta_graph()
  return saver_spec.required_variables(meta)


def _slice_shape(spec, slice_spec):
  if not slice_spec:
    return spec.shape
  extents = slice_spec.split(' ')[-1].split(':')
  return tuple(full if e == '-' else int(e.split(',')[1])
               for full, e in zip(spec.shape, extents))


def write_synthetic_checkpoint(model_dir: str, rows: int, dim: int,
                               partitions: int, step: int = 1000,
                               bundle_per_tensor: bool = False) -> str:
  """Writes the TRAIN graph's entries with random values, one slice at a time.

  Unpartitioned: one SaveV2 of every tensor, one data shard, as the
  Estimator's own sharded Saver on one device writes it. Partitioned: one
  bundle per partition index, merged with MergeV2Checkpoints, so memory is
  bounded by one partition of the embedding and its two slots. With
  `bundle_per_tensor`, one bundle per tensor (or slice), merged: memory is
  bounded by the largest tensor (an unpartitioned embedding bigger than a
  third of RAM).
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  entries = train_graph_entries(rows, dim, partitions)
  rng = np.random.default_rng(0)

  def value(spec, slice_spec):
    shape = _slice_shape(spec, slice_spec)
    if spec.name == 'global_step':
      return np.array(step, np.int64)
    if spec.name.startswith('beta'):
      return np.array(0.9 ** step, np.float32)
    values = rng.random(shape, dtype=np.float32)
    values -= 0.5  # in place: a 4 GiB tensor takes 4 GiB, not 8
    return values

  # Group slices by their index among the variable's partitions.
  groups: Dict[int, List] = {}
  for name in sorted(entries):
    spec = entries[name]
    for i, slice_spec in enumerate(spec.slices):
      group = len(groups) if bundle_per_tensor else i
      groups.setdefault(group, []).append((spec, slice_spec))
  prefix = os.path.join(model_dir, f'model.ckpt-{step}')
  os.makedirs(model_dir, exist_ok=True)
  parts = []
  for i in sorted(groups):
    part = prefix if len(groups) == 1 else os.path.join(
        model_dir, 'parts', f'part-{i:05d}')
    names = [spec.name for spec, _ in groups[i]]
    slices = [s for _, s in groups[i]]
    tensors = [value(spec, s) for spec, s in groups[i]]
    tf.raw_ops.SaveV2(prefix=part, tensor_names=names,
                      shape_and_slices=slices, tensors=tensors)
    del tensors
    parts.append(part)
  if len(parts) > 1:
    tf.raw_ops.MergeV2Checkpoints(checkpoint_prefixes=parts,
                                  destination_prefix=prefix)
    shutil.rmtree(os.path.join(model_dir, 'parts'), ignore_errors=True)
  tf.compat.v1.train.update_checkpoint_state(model_dir, prefix)
  return prefix


# --------------------------------------------------------------------------
# One measured run (runs in a fresh subprocess).


def worker(args: dict) -> dict:
  """Runs one contender; returns what the runner records."""
  kind = args['kind']
  if kind == 'write_checkpoint':
    prefix = write_synthetic_checkpoint(
        args['model_dir'], args['rows'], args['dim'], args['partitions'],
        bundle_per_tensor=args.get('bundle_per_tensor', False))
    return {'prefix': prefix}
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import multimode_export  # pylint: disable=g-import-not-at-top
  if kind == 'small_train':
    import numpy as np  # pylint: disable=g-import-not-at-top
    x = np.random.RandomState(0).rand(64, 3).astype(np.float32)
    y = (x.sum(axis=1, keepdims=True) > 1.5).astype(np.int64)
    small_estimator(args['model_dir']).train(
        lambda: tf.data.Dataset.from_tensor_slices(({'x': x}, y)).repeat()
        .batch(16), steps=5)
    return {}
  if kind == 'serve':
    x = args['ids']
    graph = tf.Graph()
    with tf.compat.v1.Session(graph=graph) as session:
      meta = tf.compat.v1.saved_model.loader.load(session, ['serve'],
                                                  args['export_dir'])
      sig = meta.signature_def['serving_default']
      start = time.perf_counter()
      y = session.run(sig.outputs['y'].name, {sig.inputs['ids'].name: x})
    return {'y': y.reshape(-1).tolist(),
            'seconds': time.perf_counter() - start}
  if kind == 'compare':
    return compare_bundles(args['a'], args['b'])

  small = kind.startswith('small_')
  if small:
    est = small_estimator(args['model_dir'])
  else:
    est = embedding_estimator(args['model_dir'], args['rows'], args['dim'],
                              args['partitions'])
  contender = kind[len('small_'):] if small else kind
  base = args['export_base']
  start, cpu = time.perf_counter(), time.process_time()
  if contender in ('package', 'package_otherfs'):
    path = multimode_export.export_all_saved_models(
        est, base, receivers(small=small))
  elif contender == 'package_predict':
    path = multimode_export.export_all_saved_models(
        est, base, receivers(('infer',), small))
  elif contender == 'package_per_mode':
    multimode_export.export_saved_models_per_mode(est, base,
                                                  receivers(small=small))
    path = base
  elif contender == 'stock_all':
    path = est.experimental_export_all_saved_models(base,
                                                    receivers(small=small))
  elif contender == 'stock_predict':
    path = est.export_saved_model(base, receivers(('infer',), small)['infer'])
  else:
    raise ValueError(f'unknown contender {kind!r}')
  seconds = time.perf_counter() - start
  cpu = time.process_time() - cpu
  path = path.decode() if isinstance(path, bytes) else path
  return {'export_seconds': seconds, 'export_cpu': cpu, 'export_dir': path,
          'variables_bytes': _variables_bytes(path)}


def _variables_bytes(path: str) -> int:
  """Bytes of the `variables/` files under `path` (links counted too)."""
  total = 0
  for directory, _, names in os.walk(path):
    if os.path.basename(directory) == 'variables':
      total += sum(os.path.getsize(os.path.join(directory, n)) for n in names)
  return total


def compare_bundles(a: str, b: str) -> dict:
  """Whether two bundles hold the same keys with byte-identical values."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  ra = tf.compat.v1.train.NewCheckpointReader(a)
  rb = tf.compat.v1.train.NewCheckpointReader(b)
  keys_a = sorted(ra.get_variable_to_shape_map())
  keys_b = sorted(rb.get_variable_to_shape_map())
  same = keys_a == keys_b
  if same:
    for key in keys_a:
      if ra.get_tensor(key).tobytes() != rb.get_tensor(key).tobytes():
        same = False
        break
  return {'identical': same, 'keys': len(keys_a), 'keys_other': len(keys_b)}


# --------------------------------------------------------------------------
# The runner.


class Run(dict):
  """wall, rss (bytes), export_seconds, killed, and the worker's output."""


def _rss_of(pid: int) -> int:
  try:
    with open(f'/proc/{pid}/status') as f:
      for line in f:
        if line.startswith('VmRSS:'):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return 0


def run(command: Sequence[str], rss_limit: Optional[int] = None) -> Run:
  """Runs `command`; wall time, peak RSS via wait4, optional RSS watchdog."""
  # Flush the previous run's dirty pages first, so that its writeback does
  # not slow down this one.
  os.sync()
  start = time.perf_counter()
  with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
    proc = subprocess.Popen(command, stdout=out, stderr=err, cwd=ROOT,
                            env=_child_env())
    killed, polled = False, 0
    while True:
      pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
      if pid:
        break
      rss = _rss_of(proc.pid)
      polled = max(polled, rss)
      if rss_limit and rss > rss_limit:
        os.kill(proc.pid, signal.SIGKILL)
        killed = True
        pid, status, usage = os.wait4(proc.pid, 0)
        break
      time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    out.seek(0)
    lines = out.read().decode().strip().splitlines()
    err.seek(0)
    errors = err.read().decode(errors='replace').strip().splitlines()
  result = Run(wall=wall, rss=max(usage.ru_maxrss * 1024, polled),
               cpu=usage.ru_utime + usage.ru_stime, killed=killed,
               returncode=proc.returncode)
  if lines and lines[-1].startswith('{'):
    result.update(json.loads(lines[-1]))
  if proc.returncode != 0 and not killed:
    raise RuntimeError(f'{command} failed with {proc.returncode}:\n' +
                       '\n'.join(errors[-30:]))
  return result


def _child_env():
  env = dict(os.environ)
  env['TF_CPP_MIN_LOG_LEVEL'] = '2'
  env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
  return env


def run_worker(args: dict, script: str = __file__, **kwargs) -> Run:
  """Runs `script --worker=<args>` (this file's `worker`, or another's)."""
  return run([sys.executable, os.path.abspath(script),
              '--worker=' + json.dumps(args)], **kwargs)


def _cp(files: Sequence[str], dest: str) -> Run:
  os.makedirs(dest)
  return run(['cp', *files, dest])


def _checkpoint_files(prefix: str) -> List[str]:
  directory = os.path.dirname(prefix)
  base = os.path.basename(prefix)
  return sorted(os.path.join(directory, n) for n in os.listdir(directory)
                if n.startswith(base + '.'))


def measure_size(size_gib: float, work: str, repeats: int,
                 other_fs: Optional[str]) -> Dict[str, List[Run]]:
  """All contenders at one checkpoint size; returns contender -> runs."""
  dim = FLAGS.dim
  rows = max(1, int(size_gib * GIB / 3 / (dim * 4)))
  model_dir = os.path.join(work, f'model-{size_gib}')
  common = {'model_dir': model_dir, 'rows': rows, 'dim': dim, 'partitions': 1}
  written = run_worker(dict(common, kind='write_checkpoint'))
  files = _checkpoint_files(written['prefix'])
  ckpt_bytes = sum(os.path.getsize(f) for f in files)
  print(f'== {size_gib} GiB: {rows} x {dim} embedding, checkpoint '
        f'{ckpt_bytes / GIB:.2f} GiB written in {written["wall"]:.1f} s',
        flush=True)
  contenders = list(CONTENDERS) + (list(OTHER_FS_CONTENDERS) if other_fs
                                   else [])
  runs: Dict[str, List[Run]] = {c: [] for c in contenders}
  for repeat in range(repeats):
    # Alternate the order so page-cache warmth and drift even out.
    order = contenders if repeat % 2 == 0 else contenders[::-1]
    for contender in order:
      parent = other_fs if contender.endswith('_otherfs') else work
      base = os.path.join(parent, f'export-{os.getpid()}-{contender}-{repeat}')
      if contender.startswith('cp'):
        result = _cp(files, base)
        result['export_seconds'] = result['wall']
        result['export_cpu'] = result['cpu']
      else:
        result = run_worker(dict(common, kind=contender, export_base=base))
      if repeat == 0 and contender in ('package', 'package_predict'):
        stock = 'stock_all' if contender == 'package' else 'stock_predict'
        result['stock_twin'] = stock
        result['keep_dir'] = result['export_dir']
      runs[contender].append(result)
      if not result.get('keep_dir'):
        shutil.rmtree(base, ignore_errors=True)
      print(f'  {contender:16s} wall {result["wall"]:6.2f} s  export '
            f'{result["export_seconds"]:6.2f} s  cpu '
            f'{result["export_cpu"]:6.2f} s  rss '
            f'{result["rss"] / GIB:5.2f} GiB', flush=True)
  runs['_identical'] = _check_identical(runs, common)
  for contender in ('package', 'package_predict'):
    shutil.rmtree(os.path.dirname(runs[contender][0]['keep_dir']),
                  ignore_errors=True)
  runs['_meta'] = {'rows': rows, 'dim': dim, 'ckpt_bytes': ckpt_bytes}
  shutil.rmtree(model_dir, ignore_errors=True)
  return runs


def _check_identical(runs, common) -> Dict[str, bool]:
  """The package's variables/ against a fresh stock export of each kind."""
  identical = {}
  for ours, stock in (('package', 'stock_all'),
                      ('package_predict', 'stock_predict')):
    base = os.path.join(os.path.dirname(common['model_dir']),
                        f'compare-{stock}')
    stock_run = run_worker(dict(common, kind=stock, export_base=base))
    result = run_worker({'kind': 'compare', 'a': os.path.join(
        runs[ours][0]['keep_dir'], 'variables', 'variables'),
                         'b': os.path.join(stock_run['export_dir'],
                                           'variables', 'variables')})
    identical[ours] = result['identical']
    print(f'  {ours} vs {stock}: {result}', flush=True)
    shutil.rmtree(base, ignore_errors=True)
  return identical


def measure_small(work: str, repeats: int) -> Dict[str, List[Run]]:
  model_dir = os.path.join(work, 'small')
  run_worker({'kind': 'small_train', 'model_dir': model_dir})
  runs: Dict[str, List[Run]] = {c: [] for c in SMALL_CONTENDERS}
  for repeat in range(repeats):
    order = SMALL_CONTENDERS if repeat % 2 == 0 else SMALL_CONTENDERS[::-1]
    for contender in order:
      base = os.path.join(work, f'export-small-{contender}')
      result = run_worker({'kind': contender, 'model_dir': model_dir,
                           'export_base': base})
      shutil.rmtree(base, ignore_errors=True)
      runs[contender].append(result)
      print(f'  {contender:16s} wall {result["wall"]:6.2f} s  export '
            f'{result["export_seconds"]:6.2f} s  cpu '
            f'{result["export_cpu"]:6.2f} s  rss '
            f'{result["rss"] / GIB:5.2f} GiB', flush=True)
  return runs


def _median(runs: List[Run], key: str) -> float:
  return statistics.median(r[key] for r in runs)


def write_results(results: Dict[float, Dict], small, out: str,
                  machine: str) -> None:
  """results.json (the measurements), then results.md and the plot from it."""
  data = {'command': (f'python benchmarks/export_cost.py --sizes '
                      f'{",".join(FLAGS.sizes)} --repeats {FLAGS.repeats} '
                      f'--out {FLAGS.out}'),
          'machine': machine, 'small_repeats': FLAGS.small_repeats,
          'sizes': {str(k): v for k, v in results.items()}, 'small': small}
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, 'results.json'), 'w') as f:
    json.dump(data, f, indent=1, default=str)
  render(out)


def render(out: str) -> None:
  """Writes <out>/results.md and export_cost.png from <out>/results.json."""
  with open(os.path.join(out, 'results.json')) as f:
    data = json.load(f)
  text = render_markdown(data)
  with open(os.path.join(out, 'results.md'), 'w') as f:
    f.write(text)
  include_larger_than_ram(out)
  plot(_sizes(data), os.path.join(out, 'export_cost.png'))
  print(text)


def _sizes(data: Dict) -> Dict[float, Dict]:
  return {float(k): v for k, v in data['sizes'].items()}


def render_markdown(data: Dict) -> str:
  """The results.md tables of one run, from its results.json data."""
  results, small = _sizes(data), data['small']
  lines = ['# Export cost against checkpoint size', '',
           f'Command: `{data["command"]}` (re-render this page from '
           '`results.json`: `python benchmarks/export_cost.py --render`)', '',
           data['machine'], '',
           'Medians of the repeats. *process* is the wall time of the whole '
           'subprocess (Python start, `import tensorflow`, building the '
           'graphs, export); *export* is the export call alone (for `cp`, the '
           'process); *export CPU* is the CPU time (all threads) of that '
           'call, less sensitive to other jobs on the machine. Ratios use '
           'the export wall time; `/stock` divides by '
           '`stock_all` (TRAIN+EVAL+PREDICT), except for the PREDICT-only '
           'rows, divided by `stock_predict`; `/cp` divides by the `cp` to '
           'the same filesystem (`_otherfs` rows: by `cp_otherfs`).', '',
           '![Export time and peak RSS against checkpoint size]'
           '(export_cost.png)', '']
  header = ('| ckpt GiB | contender | process s | export s | export CPU s '
            '| peak RSS GiB | /stock | /cp | variables identical to stock |')
  lines += [header, '|' + '---|' * 9]
  for size, runs in sorted(results.items()):
    meta = runs['_meta']
    for contender in [c for c in runs if not c.startswith('_')]:
      rs = runs[contender]
      export = _median(rs, 'export_seconds')
      stock = 'stock_predict' if contender.endswith('_predict') else 'stock_all'
      cp = 'cp_otherfs' if contender.endswith('_otherfs') else 'cp'
      ratio_stock = export / _median(runs[stock], 'export_seconds')
      ratio_cp = export / _median(runs[cp], 'export_seconds') if cp in runs \
          else float('nan')
      ident = runs['_identical'].get(contender)
      lines.append(
          f'| {meta["ckpt_bytes"] / GIB:.2f} | {contender} | '
          f'{_median(rs, "wall"):.2f} | {export:.2f} | '
          f'{_median(rs, "export_cpu"):.2f} | '
          f'{_median(rs, "rss") / GIB:.2f} | {ratio_stock:.2f} | '
          f'{ratio_cp:.2f} | {"" if ident is None else ident} |')
  lines += _targets(results, small)
  if small:
    lines += ['', f'## Small model (canned DNNClassifier, 3 modes, '
              f'{data["small_repeats"]} repeats)', '',
              '| contender | process s | export s | export CPU s | peak RSS '
              'GiB | /stock (wall) | /stock (CPU) |',
              '|---|---|---|---|---|---|---|']
    stock = _median(small['small_stock_all'], 'export_seconds')
    stock_cpu = _median(small['small_stock_all'], 'export_cpu')
    for contender, rs in small.items():
      export = _median(rs, 'export_seconds')
      cpu = _median(rs, 'export_cpu')
      lines.append(f'| {contender} | {_median(rs, "wall"):.2f} | '
                   f'{export:.2f} | {cpu:.2f} | '
                   f'{_median(rs, "rss") / GIB:.2f} | {export / stock:.2f} | '
                   f'{cpu / stock_cpu:.2f} |')
    lines += ['', 'Where its time goes (a profile by phase, ours and stock), '
              'and its cost per evaluation in `train_and_evaluate` against '
              '`LatestExporter`: [small_model.md](small_model.md) '
              '(`benchmarks/small_model.py`).']
  lines += ['', '## Verifying, and one huge tensor', '',
            'What `verify` costs against one TF1 load, the PREDICT export of '
            'one unpartitioned 4 GiB tensor, and `verify --max_load_gib` of a '
            '30 GiB export: [verify.md](verify.md) '
            '(`benchmarks/verify_cost.py`).']
  return '\n'.join(lines) + '\n'


def _targets(results, small) -> List[str]:
  """The issue's targets, checked at the largest size measured."""
  size = max(results)
  runs = results[size]
  gib = runs['_meta']['ckpt_bytes'] / GIB

  def med(contender, key='export_seconds'):
    return _median(runs[contender], key)

  lines = ['', f'## Targets at the largest size ({gib:.2f} GiB)', '',
           '| target | measured | met |', '|---|---|---|']

  def add(target, value, ok):
    lines.append(f'| {target} | {value} | {"yes" if ok else "NO"} |')

  ratio = med('package') / med('stock_all')
  add('same filesystem, 3 modes: export time <= 0.2x stock',
      f'{ratio:.2f}x ({med("package"):.2f} s vs {med("stock_all"):.2f} s; '
      f'whole process {med("package", "wall") / med("stock_all", "wall"):.2f}x)',
      ratio <= 0.2)
  rss = med('package', 'rss') / GIB
  add('same filesystem: peak RSS <= 1 GiB', f'{rss:.2f} GiB (stock '
      f'{med("stock_all", "rss") / GIB:.2f} GiB)', rss <= 1)
  add('variables byte-identical to stock', str(runs['_identical']),
      all(runs['_identical'].values()))
  cp_per_byte = med('cp') / runs['_meta']['ckpt_bytes']
  ratio = med('package_predict') / med('stock_predict')
  add('PREDICT only: export time <= 0.3x stock',
      f'{ratio:.2f}x ({med("package_predict"):.2f} s vs '
      f'{med("stock_predict"):.2f} s)', ratio <= 0.3)
  for contender in ('package_predict', 'package_per_mode'):
    written = med(contender, 'variables_bytes')
    ratio = med(contender) / (cp_per_byte * written)
    add(f'{contender}: <= 1.3x `cp` of the bytes written',
        f'{ratio:.2f}x ({written / GIB:.2f} GiB of variables/; `cp` of the '
        f'checkpoint scaled to that size: {cp_per_byte * written:.2f} s)',
        ratio <= 1.3)
    rss = med(contender, 'rss') / GIB
    add(f'{contender}: peak RSS <= 0.7 GiB', f'{rss:.2f} GiB', rss <= 0.7)
  if 'package_otherfs' in runs:
    ratio = med('package_otherfs') / med('cp_otherfs')
    add('other filesystem: <= 1.3x a plain copy',
        f'{ratio:.2f}x ({med("package_otherfs"):.2f} s vs '
        f'{med("cp_otherfs"):.2f} s)', ratio <= 1.3)
  if small:
    ratio = (_median(small['small_package'], 'export_seconds') /
             _median(small['small_stock_all'], 'export_seconds'))
    cpu = (_median(small['small_package'], 'export_cpu') /
           _median(small['small_stock_all'], 'export_cpu'))
    add('small model: no slower than stock', f'{ratio:.2f}x wall, {cpu:.2f}x '
        'CPU', ratio <= 1.0)
  return lines


def plot(results, path: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  sizes = sorted(results)
  gib = [results[s]['_meta']['ckpt_bytes'] / GIB for s in sizes]
  contenders = [c for c in results[sizes[0]] if not c.startswith('_')]
  fig, (ax_time, ax_rss) = plt.subplots(1, 2, figsize=(12, 4.8))
  markers = 'os^vDx*'
  for i, contender in enumerate(contenders):
    style = dict(linestyle='--' if contender.startswith('cp') else '-',
                 marker=markers[i % len(markers)], label=contender,
                 markersize=7 - i * 0.5)
    ax_time.plot(gib, [_median(results[s][contender], 'export_seconds')
                       for s in sizes], **style)
    ax_rss.plot(gib, [_median(results[s][contender], 'rss') / GIB
                      for s in sizes], **style)
  ax_time.set(xlabel='checkpoint size (GiB)', ylabel='export call, s '
              '(median)', title='Export time')
  ax_rss.set(xlabel='checkpoint size (GiB)', ylabel='peak RSS, GiB (median)',
             title='Peak memory')
  for ax in (ax_time, ax_rss):
    ax.grid(alpha=0.3)
  ax_time.legend(fontsize=8)
  ax_rss.set_yscale('log')
  ax_rss.set_ylabel('peak RSS, GiB (median, log scale)')
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def include_larger_than_ram(out: str) -> None:
  """Puts larger_than_ram.md, if any, as the last section of results.md."""
  results, big = (os.path.join(out, n) for n in ('results.md',
                                                 'larger_than_ram.md'))
  if not (os.path.exists(results) and os.path.exists(big)):
    return
  with open(results) as f:
    text = f.read()
  text = text.split(BIG_HEADING)[0].rstrip('\n') + '\n\n'
  with open(big) as f:
    text += f.read()
  with open(results, 'w') as f:
    f.write(text)


BIG_HEADING = '## Larger than RAM'


def _machine(warm_cache: bool = True) -> str:
  import platform  # pylint: disable=g-import-not-at-top
  mem = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / GIB
  cache = ('warm page cache (the checkpoint was just written)' if warm_cache
           else 'the checkpoint is larger than the page cache can hold')
  return (f'Machine: {platform.machine()}, {os.cpu_count()} cores, '
          f'{mem:.0f} GiB RAM, Python {platform.python_version()}, shared '
          f'with other jobs; {cache}.')


# --------------------------------------------------------------------------
# The larger-than-RAM case.


def larger_than_ram(size_gib: float, work: str, out: str) -> None:
  """Exports a checkpoint bigger than RAM; stock runs under a watchdog."""
  dim = FLAGS.dim
  partitions = FLAGS.partitions
  rows = int(size_gib * GIB / 3 / (dim * 4)) // partitions * partitions
  model_dir = os.path.join(work, 'model-big')
  common = {'model_dir': model_dir, 'rows': rows, 'dim': dim,
            'partitions': partitions}
  limit = int(FLAGS.rss_limit_gib * GIB)
  report = [f'{BIG_HEADING}: {size_gib:g} GiB checkpoint', '',
            f'Command: `python benchmarks/export_cost.py '
            f'--larger_than_ram_gib {size_gib:g} --partitions {partitions} '
            f'--rss_limit_gib {FLAGS.rss_limit_gib:g} --out {out}`', '',
            f'{_machine(False)} Embedding {rows} x {dim} float32 in '
            f'{partitions} '
            f'partitions ({rows * dim * 4 / GIB:.1f} GiB) + two Adam slots. '
            f'Every process ran under an RSS watchdog killing it above '
            f'{FLAGS.rss_limit_gib:g} GiB.', '',
            '| step | wall s | peak RSS GiB | result |', '|---|---|---|---|']

  def record(step, result, note):
    line = (f'| {step} | {result["wall"]:.1f} | {result["rss"] / GIB:.2f} | '
            f'{note} |')
    report.append(line)
    print(line, flush=True)

  written = run_worker(dict(common, kind='write_checkpoint'), rss_limit=limit)
  files = _checkpoint_files(written['prefix'])
  total = sum(os.path.getsize(f) for f in files)
  record('write checkpoint (slice by slice)', written,
         f'{total / GIB:.2f} GiB in {len(files) - 1} data files')
  for contender, note in (('package', 'link path, 3 modes'),
                          ('package_predict', 'streamed subset, PREDICT')):
    base = os.path.join(work, f'export-{contender}')
    result = run_worker(dict(common, kind=contender, export_base=base),
                        rss_limit=limit)
    variables = os.path.join(result['export_dir'], 'variables')
    size = sum(os.path.getsize(os.path.join(variables, n))
               for n in os.listdir(variables))
    record(f'multimode_export {contender}', result,
           f'{note}: variables/ {size / GIB:.2f} GiB, export call '
           f'{result["export_seconds"]:.1f} s')
    served = run_worker({'kind': 'serve', 'export_dir': result['export_dir'],
                         'ids': [0, rows - 1]}, rss_limit=limit)
    record(f'load serve tag set + predict ({contender})', served,
           f'y = {[round(v, 4) for v in served["y"]]}')
    shutil.rmtree(base, ignore_errors=True)
  base = os.path.join(work, 'export-stock')
  stock = run_worker(dict(common, kind='stock_all', export_base=base),
                     rss_limit=limit)
  record('stock experimental_export_all_saved_models', stock,
         f'killed by the watchdog above {FLAGS.rss_limit_gib:g} GiB'
         if stock['killed'] else f'finished (rc {stock["returncode"]})')
  shutil.rmtree(base, ignore_errors=True)
  shutil.rmtree(model_dir, ignore_errors=True)
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, 'larger_than_ram.md'), 'w') as f:
    f.write('\n'.join(report) + '\n')
  include_larger_than_ram(out)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if FLAGS.worker:
    result = worker(json.loads(FLAGS.worker))
    print(json.dumps(result, default=float))
    return
  if FLAGS.render:
    render(FLAGS.out)
    return
  work = FLAGS.work_dir or tempfile.mkdtemp(prefix='export_cost-')
  os.makedirs(work, exist_ok=True)
  try:
    if FLAGS.larger_than_ram_gib > 0:
      larger_than_ram(FLAGS.larger_than_ram_gib, work, FLAGS.out)
      return
    other_fs = FLAGS.other_fs if FLAGS.other_fs and os.path.isdir(
        FLAGS.other_fs) else None
    results = {}
    for size in FLAGS.sizes:
      results[float(size)] = measure_size(float(size), work, FLAGS.repeats,
                                          other_fs)
    small = (measure_small(work, FLAGS.small_repeats) if FLAGS.small_model
             else None)
    write_results(results, small, FLAGS.out, _machine())
  finally:
    if not FLAGS.work_dir:
      shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
  app.run(main)
