r"""TF2 SavedModel from a big checkpoint: loading the values, or not at all.

    python benchmarks/convert_cost.py --convert_gib 3 --repeats 3 \
        --work_dir /tmp/cc_work --out docs/benchmarks/

The checkpoint is export_cost.py's (an embedding of ROWS x --dim float32, a
dense head, Adam: the embedding's two slots make it 3x the embedding),
written by its worker. The TF2 object is what a conversion builds: a
`tf.Module` holding one TF2 variable per checkpoint tensor (per stored slice
with --convert_partitions > 1) and a serving `tf.function` reading the
embedding and the head. Two ways to save it, alternating, --repeats times,
each in a fresh subprocess:

  load       the values loaded (each tensor restored with RestoreV2 into its
             variable), then `tf.saved_model.save`: what a converter that
             materializes the variables does.
  no_values  variables without values (`_tf_private.uninitialized_variable`)
             saved by `save_without_values`: `tf.saved_model.save` writes the
             object graph, the checkpoint's keys point at the source's
             extents, its data file hard-linked (`variables/_rekey`).

and `import_tf`, a process that imports TensorFlow and the package and does
nothing else (the floor of any process's RSS). Reported: medians of the
process wall time, of the save call (from building the object to the
written SavedModel), and of the peak RSS (`wait4` rusage). Then the two
outputs are compared (same keys, byte-identical tensors, object graphs
equal) and each is loaded with `tf.saved_model.load` and serves the same
prediction.

Results: <out>/convert.json, rendered into <out>/convert.md and the plot
<out>/convert_cost.png (`--render` re-renders them; the plot needs
matplotlib). Disk: about 2x the checkpoint under --work_dir.
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
flags.DEFINE_list('convert_gib', ['3'], 'Checkpoint sizes in GiB.')
flags.DEFINE_list('convert_partitions', ['1'], 'Embedding partition counts '
                  'to measure at each size (each stored slice becomes its '
                  'own TF2 variable).')
# export_cost defines --repeats, --dim, --work_dir, --out, --render, --worker
# and --rss_limit_gib; this script uses them too.

GIB = export_cost.GIB
KINDS = ('load', 'no_values', 'import_tf')
JSON_NAME, PAGE_NAME, PLOT_NAME = ('convert.json', 'convert.md',
                                   'convert_cost.png')

# --------------------------------------------------------------------------
# One measured run (in a fresh subprocess).


def _tensors(prefix: str) -> List:
  """(attribute name, checkpoint key, slice spec, dtype, shape) per tensor
  (a partitioned variable: per stored slice), from the index alone."""
  from multimode_export.variables import _bundle_index as bundle_index  # pylint: disable=g-import-not-at-top
  _, entries = bundle_index.read(prefix + '.index')
  tensors = []
  for key in sorted(k for k in entries if bundle_index.slice_name(k) is None):
    entry, name = entries[key], key.decode('utf-8')
    shape = [d.size for d in entry.shape.dim]
    if not entry.slices:
      tensors.append((name, '', entry.dtype, shape))
      continue
    # In row order: the serving lookup splits ids over them in that order.
    for bounds in sorted(bundle_index.slice_bounds(shape, stored)
                         for stored in entry.slices):
      spec = ' '.join(str(d) for d in shape) + ' ' + ':'.join(
          f'{s},{n}' for s, n in bounds)
      tensors.append((name, spec, entry.dtype, [n for _, n in bounds]))
  return tensors


def build_module(prefix: str):
  """The TF2 object: a variable per tensor (uninitialized) and `serve`."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from multimode_export import _tf_private  # pylint: disable=g-import-not-at-top

  class Converted(tf.Module):

    def __init__(self):
      super().__init__(name='converted')
      self.sources, self.all_variables = [], []
      for key, spec, dtype, shape in _tensors(prefix):
        variable = _tf_private.uninitialized_variable(
            shape, tf.as_dtype(dtype), key)
        self.all_variables.append(variable)
        self.sources.append((key, spec))
      by_key = {}
      for variable, (key, _) in zip(self.all_variables, self.sources):
        by_key.setdefault(key, []).append(variable)
      self.embedding = by_key['embedding']  # its partitions, in order
      self.w, self.b = by_key['w'][0], by_key['b'][0]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64, 'ids')])
    def serve(self, ids):
      # TF2's lookup splits ids over partitions as fixed_size_partitioner
      # splits rows ('div').
      looked_up = tf.nn.embedding_lookup(self.embedding, ids)
      return {'y': tf.matmul(looked_up, self.w) + self.b}

  return Converted()


def _save(kind: str, prefix: str, out: str) -> Dict:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from multimode_export.saved_model import _without_values as without_values  # pylint: disable=g-import-not-at-top
  start, cpu = time.perf_counter(), time.process_time()
  module = build_module(prefix)
  signatures = {'serving_default': module.serve}
  if kind == 'load':
    for variable, (key, spec) in zip(module.all_variables, module.sources):
      (value,) = tf.raw_ops.RestoreV2(prefix=prefix, tensor_names=[key],
                                      shape_and_slices=[spec],
                                      dtypes=[variable.dtype])
      variable.assign(value)
      del value
    tf.saved_model.save(module, out, signatures=signatures)
    method = 'written'
  else:
    result = without_values.save_without_values(
        module, out, prefix, list(zip(module.all_variables, module.sources)),
        signatures=signatures)
    method = result.method
  return {'save_seconds': time.perf_counter() - start,
          'save_cpu': time.process_time() - cpu, 'method': method,
          'variables_bytes': export_cost._variables_bytes(out)}  # pylint: disable=protected-access


def _bytes(value) -> bytes:
  if isinstance(value, bytes):  # a string scalar (the object graph)
    return value
  if value.dtype == object:
    return repr(value.tolist()).encode()
  return value.tobytes()


def _compare(a: str, b: str) -> Dict:
  """Same keys, byte-identical tensors (the checkpoint's object graph too),
  and the SavedModels' object graphs."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=g-import-not-at-top
  readers = [tf.compat.v1.train.NewCheckpointReader(
      os.path.join(path, 'variables', 'variables')) for path in (a, b)]
  keys = [sorted(r.get_variable_to_shape_map()) for r in readers]
  identical = keys[0] == keys[1] and all(
      _bytes(readers[0].get_tensor(k)) == _bytes(readers[1].get_tensor(k))
      for k in keys[0])
  graphs = []
  for path in (a, b):
    with open(os.path.join(path, 'saved_model.pb'), 'rb') as f:
      proto = saved_model_pb2.SavedModel.FromString(f.read())
    graph = proto.meta_graphs[0].object_graph_def
    graph.ClearField('concrete_functions')  # names carry TF's uid counter
    for node in graph.nodes:
      node.ClearField('function')
      node.ClearField('bare_concrete_function')
    graphs.append(graph)
  return {'identical': identical, 'keys': len(keys[0]),
          'keys_other': len(keys[1]),
          'object_graphs_equal': graphs[0] == graphs[1]}


def _serve(export_dir: str, ids: List[int]) -> Dict:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  loaded = tf.saved_model.load(export_dir)
  y = loaded.signatures['serving_default'](ids=tf.constant(ids, tf.int64))
  return {'y': y['y'].numpy().reshape(-1).tolist()}


def worker(args: Dict) -> Dict:
  kind = args['kind']
  if kind in ('load', 'no_values'):
    return _save(kind, args['prefix'], args['out'])
  if kind == 'import_tf':
    import tensorflow  # pylint: disable=g-import-not-at-top,unused-import
    import multimode_export  # pylint: disable=g-import-not-at-top,unused-import
    return {'save_seconds': 0.0, 'save_cpu': 0.0}
  if kind == 'compare_tf2':
    return _compare(args['a'], args['b'])
  if kind == 'serve_tf2':
    return _serve(args['export_dir'], args['ids'])
  return export_cost.worker(args)


def run_worker(args: Dict) -> export_cost.Run:
  return export_cost.run_worker(args, script=__file__,
                                rss_limit=int(FLAGS.rss_limit_gib * GIB))


# --------------------------------------------------------------------------
# The runner.


def measure(size_gib: float, partitions: int, work: str) -> Dict:
  """Every kind at one checkpoint size, alternating; then the checks."""
  rows = max(partitions, int(size_gib * GIB / 3 / (FLAGS.dim * 4)))
  model_dir = os.path.join(work, f'model-{size_gib}')
  written = run_worker({'kind': 'write_checkpoint', 'model_dir': model_dir,
                        'rows': rows, 'dim': FLAGS.dim,
                        'partitions': partitions})
  prefix = written['prefix']
  files = export_cost._checkpoint_files(prefix)  # pylint: disable=protected-access
  ckpt_bytes = sum(os.path.getsize(f) for f in files)
  print(f'== {size_gib} GiB: {rows} x {FLAGS.dim}, {partitions} '
        f'partition(s), {ckpt_bytes / GIB:.2f} GiB', flush=True)
  runs: Dict[str, List] = {k: [] for k in KINDS}
  kept = {}
  for repeat in range(FLAGS.repeats):
    for kind in KINDS if repeat % 2 == 0 else KINDS[::-1]:
      out = os.path.join(work, f'tf2-{kind}-{repeat}')
      result = run_worker({'kind': kind, 'prefix': prefix, 'out': out})
      runs[kind].append({k: result[k] for k in (
          'wall', 'rss', 'cpu', 'save_seconds', 'save_cpu', 'method',
          'variables_bytes') if k in result})
      print(f'  {kind:9s} wall {result["wall"]:6.2f} s  save '
            f'{result["save_seconds"]:6.2f} s  rss '
            f'{result["rss"] / GIB:5.2f} GiB', flush=True)
      if kind != 'import_tf' and kind not in kept:
        kept[kind] = out
      elif kind != 'import_tf':
        shutil.rmtree(out, ignore_errors=True)
  checks = run_worker({'kind': 'compare_tf2', 'a': kept['load'],
                       'b': kept['no_values']})
  checks = {k: checks[k] for k in ('identical', 'keys', 'keys_other',
                                   'object_graphs_equal')}
  ids = [0, rows // 2, rows - 1]
  for kind, out in kept.items():
    checks[f'serve_{kind}'] = run_worker({'kind': 'serve_tf2',
                                          'export_dir': out, 'ids': ids})['y']
    shutil.rmtree(out, ignore_errors=True)
  print(f'  checks: {checks}', flush=True)
  shutil.rmtree(model_dir, ignore_errors=True)
  return {'rows': rows, 'dim': FLAGS.dim, 'partitions': partitions,
          'ckpt_bytes': ckpt_bytes, 'runs': runs, 'checks': checks}


# --------------------------------------------------------------------------
# The page and the plot.


def _median(runs: List[Dict], key: str) -> float:
  return statistics.median(r[key] for r in runs)


def _ordered(data: Dict) -> List:
  return sorted(data['sizes'].items(),
                key=lambda kv: (kv[1]['ckpt_bytes'], kv[1]['partitions']))


def render_markdown(data: Dict) -> str:
  """convert.md from the data of convert.json."""
  lines = ['# A TF2 SavedModel from a big checkpoint, without loading it', '',
           f'Command: `{data["command"]}` (re-render this page from '
           f'`{JSON_NAME}`: `python benchmarks/convert_cost.py --render`)', '',
           data['machine'], '',
           'The checkpoint of [export_cost](results.md) (embedding + dense '
           'head + Adam: the embedding and its two slots are 3x the '
           'embedding). The object saved is what a conversion builds: one TF2 '
           'variable per checkpoint tensor (per stored slice of a '
           'partitioned one) and a serving function. *load*: every value '
           'restored into its variable, then `tf.saved_model.save`. '
           '*no_values*: the variables left without values, '
           '`save_without_values` (the SavedModel written by '
           '`tf.saved_model.save` with no value in it, then the checkpoint\'s '
           'keys pointed at the source\'s extents, its data file linked). '
           '*import_tf*: a process that only imports TensorFlow and the '
           'package. Each run is a fresh subprocess, the kinds alternating; '
           'medians. *process* is the whole subprocess; *save* is building '
           'the object and saving it; *peak RSS* is `ru_maxrss` from `wait4`.',
           '', f'![Save time and peak RSS]({PLOT_NAME})', '',
           '| ckpt GiB | partitions | kind | process s | save s | save CPU s '
           '| peak RSS GiB | save /load | variables/ written by |',
           '|---|---|---|---|---|---|---|---|---|']
  for _, size in _ordered(data):
    runs = size['runs']
    base = _median(runs['load'], 'save_seconds')
    for kind in KINDS:
      rs = runs[kind]
      save = _median(rs, 'save_seconds')
      ratio = f'{save / base:.3f}' if kind != 'import_tf' else ''
      lines.append(
          f'| {size["ckpt_bytes"] / GIB:.2f} | {size["partitions"]} | {kind} '
          f'| {_median(rs, "wall"):.2f} | {save:.2f} | '
          f'{_median(rs, "save_cpu"):.2f} | {_median(rs, "rss") / GIB:.2f} | '
          f'{ratio} | {rs[0].get("method", "")} |')
  lines += _checks(data) + _targets(data)
  return '\n'.join(lines) + '\n'


def _checks(data: Dict) -> List[str]:
  lines = ['', '## The two outputs compared', '',
           '| ckpt GiB | partitions | same keys, tensors byte-identical | '
           'object graphs equal | keys | served y (load) | served y '
           '(no_values) |', '|---|---|---|---|---|---|---|']
  for _, size in _ordered(data):
    c = size['checks']
    lines.append(
        f'| {size["ckpt_bytes"] / GIB:.2f} | {size["partitions"]} | '
        f'{c["identical"]} | '
        f'{c["object_graphs_equal"]} | {c["keys"]} | '
        f'{[round(v, 6) for v in c["serve_load"]]} | '
        f'{[round(v, 6) for v in c["serve_no_values"]]} |')
  lines += ['', 'Object graphs compared without the function names, which '
            'carry a process-wide counter of TensorFlow\'s; '
            '`tests/without_values_test.py` compares the whole '
            '`saved_model.pb`.']
  return lines


def _targets(data: Dict) -> List[str]:
  """Issue 23's targets, checked at the largest size measured."""
  largest = max(s['rows'] for s in data['sizes'].values())
  met = lambda ok: 'yes' if ok else 'NO'  # pylint: disable=unnecessary-lambda-assignment
  lines = []
  for _, size in _ordered(data):
    if size['rows'] != largest:
      continue
    runs, checks = size['runs'], size['checks']
    ratio = (_median(runs['no_values'], 'save_seconds') /
             _median(runs['load'], 'save_seconds'))
    rss = _median(runs['no_values'], 'rss') / GIB
    same = (checks['identical'] and checks['object_graphs_equal'] and
            checks['serve_load'] == checks['serve_no_values'])
    lines += [
        '', f'## Targets at {size["ckpt_bytes"] / GIB:.2f} GiB, '
        f'{size["partitions"]} partition(s)', '',
        '| target | measured | met |', '|---|---|---|',
        f'| save <= 0.1x the load-and-save path | {ratio:.3f}x '
        f'({_median(runs["no_values"], "save_seconds"):.2f} s vs '
        f'{_median(runs["load"], "save_seconds"):.2f} s) | '
        f'{met(ratio <= 0.1)} |',
        f'| peak RSS <= 0.7 GiB | {rss:.2f} GiB (load: '
        f'{_median(runs["load"], "rss") / GIB:.2f} GiB; import alone: '
        f'{_median(runs["import_tf"], "rss") / GIB:.2f} GiB) | '
        f'{met(rss <= 0.7)} |',
        f'| tensors byte-identical to the load path\'s, same serving '
        f'outputs | {same} | {met(same)} |']
  return lines


def plot(data: Dict, path: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, (ax_time, ax_rss) = plt.subplots(1, 2, figsize=(11, 4.2))
  counts = sorted({s['partitions'] for s in data['sizes'].values()})
  for partitions, style in zip(counts, ('-', '--', ':', '-.')):
    sizes = sorted((s for s in data['sizes'].values()
                    if s['partitions'] == partitions),
                   key=lambda s: s['ckpt_bytes'])
    gib = [s['ckpt_bytes'] / GIB for s in sizes]
    for kind, marker in zip(KINDS, 'os^'):
      label = f'{kind}, {partitions} partition(s)'
      ax_time.plot(gib, [_median(s['runs'][kind], 'save_seconds')
                         for s in sizes], marker=marker, linestyle=style,
                   label=label)
      ax_rss.plot(gib, [_median(s['runs'][kind], 'rss') / GIB
                        for s in sizes], marker=marker, linestyle=style,
                  label=label)
  ax_time.set(xlabel='checkpoint size (GiB)', ylabel='save, s (median)',
              title='Time to write the TF2 SavedModel')
  ax_rss.set(xlabel='checkpoint size (GiB)', ylabel='peak RSS, GiB (median)',
             title='Peak memory of the process')
  for ax in (ax_time, ax_rss):
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def render(out: str) -> None:
  with open(os.path.join(out, JSON_NAME)) as f:
    data = json.load(f)
  text = render_markdown(data)
  with open(os.path.join(out, PAGE_NAME), 'w') as f:
    f.write(text)
  try:
    plot(data, os.path.join(out, PLOT_NAME))
  except ImportError:
    print('matplotlib is not installed: the plot was not redrawn')
  print(text)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if FLAGS.worker:
    print(json.dumps(worker(json.loads(FLAGS.worker)), default=float))
    return
  if FLAGS.render:
    render(FLAGS.out)
    return
  work = FLAGS.work_dir or tempfile.mkdtemp(prefix='convert_cost-')
  os.makedirs(work, exist_ok=True)
  try:
    sizes = {f'{size} GiB, {p} partition(s)': measure(float(size), int(p),
                                                       work)
             for size in FLAGS.convert_gib for p in FLAGS.convert_partitions}
  finally:
    if not FLAGS.work_dir:
      shutil.rmtree(work, ignore_errors=True)
  data = {'command': (f'python benchmarks/convert_cost.py --convert_gib '
                      f'{",".join(FLAGS.convert_gib)} --convert_partitions '
                      f'{",".join(FLAGS.convert_partitions)} --repeats {FLAGS.repeats} '
                      f'--out {FLAGS.out}'),
          'machine': export_cost._machine(),  # pylint: disable=protected-access
          'sizes': sizes}
  os.makedirs(FLAGS.out, exist_ok=True)
  with open(os.path.join(FLAGS.out, JSON_NAME), 'w') as f:
    json.dump(data, f, indent=1)
  render(FLAGS.out)


if __name__ == '__main__':
  app.run(main)
