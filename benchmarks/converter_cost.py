r"""`convert_to_tf2` on a big export: without loading the variables, or loading them.

    python benchmarks/converter_cost.py --converter_gib 3 --repeats 3 \
        --work_dir /tmp/cv_work --out docs/benchmarks/

The export is export_cost.py's: its checkpoint (an embedding of ROWS x --dim
float32, a dense head, Adam: the embedding's two slots make it 3x the
embedding) exported by `multimode_export.export_all_saved_models` with the
TRAIN, EVAL and PREDICT graphs. Then the real converter, alternating,
--repeats times, each in a fresh subprocess:

  convert        `multimode_export.convert_to_tf2(export, out)`: the default
                 writer, `_save.save_without_loading` (no value read; the
                 checkpoint's keys point at the source's extents, its data
                 file linked).
  load_and_save  `_convert.convert_with(export, out, _save.load_and_save)`:
                 every value restored into memory, `tf.saved_model.save`.

and `import_tf`, a process that imports TensorFlow and the package and does
nothing else (the floor of any process's RSS). Reported: medians of the
process wall time, of the convert call, and of the peak RSS (`wait4`
rusage). Then the two outputs are compared (same keys, byte-identical
tensors, object graphs equal), and each is loaded with `tf.saved_model.load`
in its own process, serves and runs one `train_step`.

Results: <out>/converter.json, rendered into <out>/converter.md and the plot
<out>/converter_cost.png (`--converter_render` re-renders them; the plot
needs matplotlib). Disk: about 2x the checkpoint under --work_dir.
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
import convert_cost  # pylint: disable=g-import-not-at-top,wrong-import-position
import export_cost  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_list('converter_gib', ['3'], 'Checkpoint sizes in GiB.')
flags.DEFINE_list('converter_partitions', ['1'], 'Embedding partition counts '
                  'to measure at each size.')
flags.DEFINE_bool('converter_render', False, 'Only re-render '
                  '<out>/converter.md and the plot from converter.json.')
# export_cost defines --repeats, --dim, --work_dir, --out, --worker and
# --rss_limit_gib; this script uses them too.

GIB = export_cost.GIB
KINDS = ('convert', 'load_and_save', 'import_tf')
JSON_NAME, PAGE_NAME, PLOT_NAME = ('converter.json', 'converter.md',
                                   'converter_cost.png')

# --------------------------------------------------------------------------
# One measured run (in a fresh subprocess).


def _convert(kind: str, export_dir: str, out: str) -> Dict:
  import multimode_export  # pylint: disable=g-import-not-at-top
  from multimode_export.tf2 import _convert as convert_lib  # pylint: disable=g-import-not-at-top
  from multimode_export.tf2 import _save  # pylint: disable=g-import-not-at-top
  start, cpu = time.perf_counter(), time.process_time()
  if kind == 'convert':
    multimode_export.convert_to_tf2(export_dir, out)
  else:
    convert_lib.convert_with(export_dir, out, _save.load_and_save)
  seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
  source = os.path.join(export_dir, 'variables')
  data = [os.path.join(source, n) for n in os.listdir(source) if '.data-' in n]
  written = os.path.join(out, 'variables')
  linked = any(os.path.samefile(d, os.path.join(written, n))
               for d in data for n in os.listdir(written))
  return {'convert_seconds': seconds, 'convert_cpu': cpu,
          'method': 'linked' if linked else 'written',
          'variables_bytes': export_cost._variables_bytes(out)}  # pylint: disable=protected-access


def _use(export_dir: str, ids: List[int]) -> Dict:
  """Serves, then runs one train step.

  One: the synthetic checkpoint's Adam slots are random, its second moments
  negative too, so a second step would compute from NaN.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  loaded = tf.saved_model.load(export_dir)
  ids_t = tf.constant(ids, tf.int64)
  before = loaded.signatures['serving_default'](ids=ids_t)['y']
  before = before.numpy().reshape(-1).tolist()
  _, specs = loaded.train_step.structured_input_signature
  inputs = {k: ids_t if k == 'ids' else tf.ones([len(ids), 1], s.dtype)
            for k, s in specs.items()}
  [step] = [v for v in loaded.variables if v.name == 'global_step:0']
  loss = float(loaded.train_step(**inputs)['loss'])
  return {'y': before, 'loss': loss, 'global_step': int(step.numpy())}


def worker(args: Dict) -> Dict:
  kind = args['kind']
  if kind in ('convert', 'load_and_save'):
    return _convert(kind, args['export_dir'], args['out'])
  if kind == 'use_tf2':
    return _use(args['export_dir'], args['ids'])
  if kind in ('import_tf', 'compare_tf2'):
    return convert_cost.worker(args)
  return export_cost.worker(args)


def run_worker(args: Dict) -> export_cost.Run:
  return export_cost.run_worker(args, script=__file__,
                                rss_limit=int(FLAGS.rss_limit_gib * GIB))


# --------------------------------------------------------------------------
# The runner.


def _export(size_gib: float, partitions: int, work: str) -> Dict:
  """Writes the checkpoint and exports it; returns the export's facts."""
  rows = max(partitions, int(size_gib * GIB / 3 / (FLAGS.dim * 4)))
  common = {'model_dir': os.path.join(work, f'model-{size_gib}-{partitions}'),
            'rows': rows, 'dim': FLAGS.dim, 'partitions': partitions}
  written = run_worker(dict(common, kind='write_checkpoint'))
  files = export_cost._checkpoint_files(written['prefix'])  # pylint: disable=protected-access
  exported = run_worker(dict(common, kind='package',
                             export_base=os.path.join(work, 'export')))
  print(f'== {size_gib} GiB: {rows} x {FLAGS.dim}, {partitions} '
        f'partition(s); exported in {exported["export_seconds"]:.1f} s',
        flush=True)
  return {'rows': rows, 'model_dir': common['model_dir'],
          'export_dir': exported['export_dir'],
          'ckpt_bytes': sum(os.path.getsize(f) for f in files)}


def measure(size_gib: float, partitions: int, work: str) -> Dict:
  """Every kind on one export, alternating; then the checks."""
  source = _export(size_gib, partitions, work)
  runs: Dict[str, List] = {k: [] for k in KINDS}
  kept = {}
  for repeat in range(FLAGS.repeats):
    for kind in KINDS if repeat % 2 == 0 else KINDS[::-1]:
      out = os.path.join(work, f'tf2-{kind}-{repeat}')
      result = run_worker({'kind': kind, 'export_dir': source['export_dir'],
                           'out': out})
      result.setdefault('convert_seconds', result.get('save_seconds', 0.0))
      result.setdefault('convert_cpu', result.get('save_cpu', 0.0))
      runs[kind].append({k: result[k] for k in (
          'wall', 'rss', 'cpu', 'convert_seconds', 'convert_cpu', 'method',
          'variables_bytes') if k in result})
      print(f'  {kind:13s} wall {result["wall"]:6.2f} s  convert '
            f'{result["convert_seconds"]:6.2f} s  rss '
            f'{result["rss"] / GIB:5.2f} GiB', flush=True)
      if kind != 'import_tf' and kind not in kept:
        kept[kind] = out
      elif kind != 'import_tf':
        shutil.rmtree(out, ignore_errors=True)
  checks = run_worker({'kind': 'compare_tf2', 'a': kept['load_and_save'],
                       'b': kept['convert']})
  checks = {k: checks[k] for k in ('identical', 'keys', 'keys_other',
                                   'object_graphs_equal')}
  ids = [0, source['rows'] // 2, source['rows'] - 1]
  for kind, out in kept.items():
    used = run_worker({'kind': 'use_tf2', 'export_dir': out, 'ids': ids})
    checks[f'use_{kind}'] = {k: used[k] for k in ('y', 'loss', 'global_step')}
    shutil.rmtree(out, ignore_errors=True)
  print(f'  checks: {checks}', flush=True)
  shutil.rmtree(source['model_dir'], ignore_errors=True)
  shutil.rmtree(os.path.join(work, 'export'), ignore_errors=True)
  return {'rows': source['rows'], 'dim': FLAGS.dim, 'partitions': partitions,
          'ckpt_bytes': source['ckpt_bytes'], 'runs': runs, 'checks': checks}


# --------------------------------------------------------------------------
# The page and the plot.


def _median(runs: List[Dict], key: str) -> float:
  return statistics.median(r[key] for r in runs)


def _ordered(data: Dict) -> List[Dict]:
  return sorted(data['sizes'].values(),
                key=lambda s: (s['ckpt_bytes'], s['partitions']))


def _same(checks: Dict) -> bool:
  return (checks['identical'] and checks['object_graphs_equal'] and
          checks['use_convert'] == checks['use_load_and_save'])


def render_markdown(data: Dict) -> str:
  """converter.md from the data of converter.json."""
  lines = ['# `convert_to_tf2` on a big export, without loading the variables',
           '', f'Command: `{data["command"]}` (re-render this page from '
           f'`{JSON_NAME}`: `python benchmarks/converter_cost.py '
           '--converter_render`)', '', data['machine'], '',
           'The checkpoint of [export_cost](results.md) (embedding + dense '
           'head + Adam: the embedding and its two slots are 3x the '
           'embedding), exported with `export_all_saved_models` (TRAIN, EVAL, '
           'PREDICT), then converted by the real converter. *convert*: '
           '`convert_to_tf2`, whose default writer reads no value (the TF2 '
           'checkpoint\'s keys point at the source\'s tensors, its data file '
           'linked). *load_and_save*: `convert_with(..., _save.load_and_save)`'
           ', every value restored into memory, then `tf.saved_model.save`. '
           '*import_tf*: a process that only imports TensorFlow and the '
           'package. Each run is a fresh subprocess, the kinds alternating; '
           'medians. *process* is the whole subprocess; *convert* is the '
           'call; *peak RSS* is `ru_maxrss` from `wait4`. The synthetic '
           'object of [convert.md](convert.md) isolates the writing step.',
           '', f'![Convert time and peak RSS]({PLOT_NAME})', '',
           '| ckpt GiB | partitions | kind | process s | convert s | '
           'convert CPU s | peak RSS GiB | convert /load_and_save | '
           'variables/ data |', '|---|---|---|---|---|---|---|---|---|']
  for size in _ordered(data):
    runs = size['runs']
    base = _median(runs['load_and_save'], 'convert_seconds')
    for kind in KINDS:
      rs = runs[kind]
      seconds = _median(rs, 'convert_seconds')
      ratio = f'{seconds / base:.3f}' if kind != 'import_tf' else ''
      lines.append(
          f'| {size["ckpt_bytes"] / GIB:.2f} | {size["partitions"]} | {kind} '
          f'| {_median(rs, "wall"):.2f} | {seconds:.2f} | '
          f'{_median(rs, "convert_cpu"):.2f} | '
          f'{_median(rs, "rss") / GIB:.2f} | {ratio} | '
          f'{rs[0].get("method", "")} |')
  return '\n'.join(lines + _checks(data) + _targets(data)) + '\n'


def _rounded(values: List[float]) -> List[float]:
  return [round(v, 6) for v in values]


def _checks(data: Dict) -> List[str]:
  lines = ['', '## The two outputs compared', '',
           '| ckpt GiB | partitions | same keys, tensors byte-identical | '
           'object graphs equal | keys | kind | served y | '
           'train_step loss | global_step after it |',
           '|---|---|---|---|---|---|---|---|---|']
  for size in _ordered(data):
    c = size['checks']
    for kind in ('load_and_save', 'convert'):
      used = c[f'use_{kind}']
      lines.append(
          f'| {size["ckpt_bytes"] / GIB:.2f} | {size["partitions"]} | '
          f'{c["identical"]} | {c["object_graphs_equal"]} | {c["keys"]} | '
          f'{kind} | {_rounded(used["y"])} | {used["loss"]!r} | '
          f'{used["global_step"]} |')
  lines += ['', 'Object graphs compared without the function names, which '
            'carry a process-wide counter of TensorFlow\'s; '
            '`tests/tf2_without_loading_test.py` compares the two writers on '
            'the test suite\'s models.']
  return lines


def _targets(data: Dict) -> List[str]:
  """Issue 23's targets, at every size measured."""
  met = lambda ok: 'yes' if ok else 'NO'  # pylint: disable=unnecessary-lambda-assignment
  lines = []
  for size in _ordered(data):
    runs = size['runs']
    fast = _median(runs['convert'], 'convert_seconds')
    slow = _median(runs['load_and_save'], 'convert_seconds')
    rss = _median(runs['convert'], 'rss') / GIB
    same = _same(size['checks'])
    lines += [
        '', f'## Targets at {size["ckpt_bytes"] / GIB:.2f} GiB, '
        f'{size["partitions"]} partition(s)', '',
        '| target | measured | met |', '|---|---|---|',
        f'| convert call <= 0.1x the load-and-save path | '
        f'{fast / slow:.3f}x ({fast:.2f} s vs {slow:.2f} s) | '
        f'{met(fast / slow <= 0.1)} |',
        f'| peak RSS <= 0.7 GiB | {rss:.2f} GiB (load_and_save: '
        f'{_median(runs["load_and_save"], "rss") / GIB:.2f} GiB; import '
        f'alone: {_median(runs["import_tf"], "rss") / GIB:.2f} GiB) | '
        f'{met(rss <= 0.7)} |',
        '| tensors byte-identical to the load-and-save path\'s, same '
        f'serving and train_step results | {same} | {met(same)} |']
  return lines


def plot(data: Dict, path: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, (ax_time, ax_rss) = plt.subplots(1, 2, figsize=(11, 4.2))
  sizes = _ordered(data)
  width = 0.8 / len(KINDS)
  for i, kind in enumerate(KINDS):
    xs = [j + (i - 1) * width for j in range(len(sizes))]
    ax_time.bar(xs, [_median(s['runs'][kind], 'wall') for s in sizes], width,
                label=f'{kind} (process)', alpha=0.35, color=f'C{i}')
    ax_time.bar(xs, [_median(s['runs'][kind], 'convert_seconds')
                     for s in sizes], width * 0.6, label=f'{kind} (call)',
                color=f'C{i}')
    ax_rss.bar(xs, [_median(s['runs'][kind], 'rss') / GIB for s in sizes],
               width, label=kind, color=f'C{i}')
  ax_rss.axhline(0.7, color='k', linestyle='--', linewidth=1,
                 label='target 0.7 GiB')
  labels = [f'{s["ckpt_bytes"] / GIB:.1f} GiB, {s["partitions"]} part.'
            for s in sizes]
  ax_time.set(ylabel='seconds (median)', title='convert_to_tf2: time')
  ax_rss.set(ylabel='peak RSS, GiB (median)', title='Peak memory of the process')
  for ax in (ax_time, ax_rss):
    ax.set_xticks(range(len(sizes)), labels)
    ax.grid(alpha=0.3, axis='y')
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
  if FLAGS.converter_render:
    render(FLAGS.out)
    return
  work = FLAGS.work_dir or tempfile.mkdtemp(prefix='converter_cost-')
  os.makedirs(work, exist_ok=True)
  try:
    sizes = {f'{size} GiB, {p} partition(s)': measure(float(size), int(p),
                                                       work)
             for size in FLAGS.converter_gib
             for p in FLAGS.converter_partitions}
  finally:
    if not FLAGS.work_dir:
      shutil.rmtree(work, ignore_errors=True)
  data = {'command': (f'python benchmarks/converter_cost.py --converter_gib '
                      f'{",".join(FLAGS.converter_gib)} '
                      f'--converter_partitions '
                      f'{",".join(FLAGS.converter_partitions)} '
                      f'--repeats {FLAGS.repeats} --out {FLAGS.out}'),
          'machine': export_cost._machine(),  # pylint: disable=protected-access
          'sizes': sizes}
  os.makedirs(FLAGS.out, exist_ok=True)
  with open(os.path.join(FLAGS.out, JSON_NAME), 'w') as f:
    json.dump(data, f, indent=1)
  render(FLAGS.out)


if __name__ == '__main__':
  app.run(main)
