"""Where a small model's export time goes (issue 12 item 4, "Small models").

For the small canned DNNClassifier of `export_cost.py` (`small_estimator`,
trained 5 steps), TRAIN+EVAL+PREDICT:

1. `--profile`: in one process per contender, one export call under cProfile
   cold (the first in the process) and one warm (the second); the time is
   broken down into phases (model_fn calls, signatures, saver, MetaGraphDef,
   import check, variables, SavedModel writing, publishing, ...) from the
   cumulative times of the functions that own them. Stored under `--label`
   (e.g. `before` with `--code_root` pointing at an older checkout, `after`).
2. `--export_call`: `multimode_export.export_all_saved_models` against the
   stock `experimental_export_all_saved_models`, each in a fresh subprocess,
   alternating, `--repeats` times (export_cost.py's `small_package` and
   `small_stock_all` workers).
3. `--train_and_evaluate`: `tf.estimator.train_and_evaluate` with the
   package's `MultiModeExporter` (3 modes), with `tf.estimator.LatestExporter`
   (PREDICT only) and with no exporter, each in a fresh subprocess,
   alternating; the exporter's `export()` is timed from the outside at every
   evaluation.

Results go to <out>/small_model.json; <out>/small_model.md is rendered from it
(`--render` re-renders without measuring; tests/benchmark_results_test.py
fails when the page is not what the JSON renders to).

    python benchmarks/small_model.py --out docs/benchmarks/
"""

import cProfile
import json
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export_cost  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_integer('sm_repeats', 5, 'Fresh-process runs of each contender '
                     'of the export call; medians reported.')
flags.DEFINE_integer('sm_tae_repeats', 3, 'Fresh-process train_and_evaluate '
                     'runs of each exporter.')
flags.DEFINE_integer('sm_evaluations', 4, 'Evaluations (hence exports) per '
                     'train_and_evaluate run.')
flags.DEFINE_string('sm_label', 'after', 'Label of the profile measured '
                    '(e.g. before, after).')
flags.DEFINE_string('sm_code_root', None, 'Run the profile against the '
                    'package at this root (e.g. an older checkout) instead '
                    'of this one.')
flags.DEFINE_bool('sm_profile', True, 'Measure the profile.')
flags.DEFINE_bool('sm_export_call', True, 'Measure the export call.')
flags.DEFINE_bool('sm_train_and_evaluate', True, 'Measure train_and_evaluate.')
flags.DEFINE_bool('sm_render', False, 'Only re-render <out>/small_model.md '
                  'from <out>/small_model.json.')
flags.DEFINE_string('sm_worker', None, 'Internal: JSON arguments of one run.')

EXPORT_CONTENDERS = ('small_package', 'small_stock_all')
TAE_CONTENDERS = ('multimode', 'multimode_rebuild', 'latest', 'none')
STEPS_PER_EVALUATION = 5

# Phase -> (file suffix, function) whose cumulative time it is; `None` rows
# are remainders computed in `phases`. A function matched several times (a
# wrapper and the wrapped method of the same name) counts once, its largest.
PACKAGE_PHASES = (
    ('receiver fns', ('graph/_builder.py', '_call_receiver')),
    ('model_fn calls', ('_tf_private.py', 'call_model_fn')),
    ('signatures', ('export_utils.py', 'build_all_signature_defs')),
    ('global step', ('_tf_private.py', 'create_global_step')),
    ('saver construction', ('graph/_builder.py', '_saver_for')),
    ('MetaGraphDef export (as_graph_def)', ('training/saver.py',
                                            'export_meta_graph')),
    ('import check (import_meta_graph)', ('graph/_importable.py',
                                          'check_importable')),
    ('saver def reading', ('graph/_builder.py', '_read_saver')),
    ('graph building, other', None),
    ('plan: validation, checkpoint metadata', None),
    ('variables transfer + read-back', ('saved_model/_writer.py',
                                        '_write_variables')),
    ('written-variables check', ('saved_model/_writer.py', '_check_written')),
    ('fingerprint', ('saved_model/_fingerprint.py', 'write')),
    ('SavedModel serialization + write, other', None),
    ('publishing (staging, lock, rename)', None),
)
STOCK_PHASES = (
    ('model_fn calls', ('estimator.py', '_call_model_fn')),
    ('signatures', ('export_utils.py', 'build_all_signature_defs')),
    ('saver construction', ('training/saver.py', '__init__')),
    ('Session creation', ('client/session.py', '__init__')),
    ('variables restore (Session)', ('training/saver.py', 'restore')),
    ('variables save + MetaGraphDef (builder)', ('builder_impl.py',
                                                 'add_meta_graph_and_variables')),
    ('MetaGraphDef (builder, other modes)', ('builder_impl.py',
                                             'add_meta_graph')),
    ('SavedModel serialization + write (builder.save)', ('builder_impl.py',
                                                         'save')),
    ('other (graph building, temp dir, rename)', None),
)


def _cum(stats: pstats.Stats, where: Tuple[str, str]) -> float:
  suffix, name = where
  times = [v[3] for (path, _, func), v in stats.stats.items()
           if func == name and path.endswith(suffix)]
  return max(times, default=0.0)


def phases(stats: pstats.Stats, contender: str) -> Dict[str, float]:
  """Phase -> seconds (cumulative, under cProfile) of one export call."""
  if contender == 'package':
    total = _cum(stats, ('_export.py', 'export_all_saved_models'))
    plan = _cum(stats, ('_plan.py', 'plan_export'))
    build = _cum(stats, ('graph/_builder.py', 'add_modes'))
    write_plan = _cum(stats, ('_export.py', 'write_plan'))
    writer = _cum(stats, ('saved_model/_writer.py', 'write_saved_model'))
    out = {name: _cum(stats, where) for name, where in PACKAGE_PHASES
           if where is not None}
    building = [n for n, w in PACKAGE_PHASES[:8]]
    writing = [n for n, w in PACKAGE_PHASES[10:13]]
    out['graph building, other'] = build - sum(out[n] for n in building)
    out['plan: validation, checkpoint metadata'] = plan - build
    out['SavedModel serialization + write, other'] = writer - sum(
        out[n] for n in writing)
    out['publishing (staging, lock, rename)'] = write_plan - writer
    order = [n for n, _ in PACKAGE_PHASES]
  else:
    total = _cum(stats, ('estimator.py',
                         'experimental_export_all_saved_models'))
    out = {name: _cum(stats, where) for name, where in STOCK_PHASES
           if where is not None}
    out['other (graph building, temp dir, rename)'] = total - sum(
        out.values())
    order = [n for n, _ in STOCK_PHASES]
  result = {n: out[n] for n in order}
  result['total'] = total
  return result


def top_functions(stats: pstats.Stats, n: int = 12) -> List[Tuple[str, float]]:
  """The n functions with the largest own (not cumulative) time."""
  rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:n]
  return [(f'{os.path.basename(path)}:{line}({func})', v[2])
          for (path, line, func), v in rows]


# --------------------------------------------------------------------------
# Workers (each in a fresh subprocess).


def _export_once(contender: str, est, base: str) -> str:
  import multimode_export  # pylint: disable=g-import-not-at-top
  receivers = export_cost.receivers(small=True)
  if contender == 'package':
    return multimode_export.export_all_saved_models(est, base, receivers)
  return est.experimental_export_all_saved_models(base, receivers)


def profile_worker(args: dict) -> dict:
  """Cold then warm export call under cProfile; phases of each."""
  import multimode_export  # pylint: disable=g-import-not-at-top
  est = export_cost.small_estimator(args['model_dir'])
  result = {'package_file': multimode_export.__file__}
  for call in ('cold', 'warm'):
    base = os.path.join(args['export_base'], call)
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.enable()
    _export_once(args['contender'], est, base)
    profile.disable()
    wall = time.perf_counter() - start
    stats = pstats.Stats(profile)
    result[call] = {'wall': wall, 'phases': phases(stats, args['contender']),
                    'top_own': top_functions(stats)}
  return result


def _timed(exporter, log: List[float]):
  """`exporter`, recording the wall time of each `export()` call in `log`."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  class TimedExporter(tf.estimator.Exporter):

    @property
    def name(self):
      return exporter.name

    def export(self, *args, **kwargs):
      start = time.perf_counter()
      try:
        return exporter.export(*args, **kwargs)
      finally:
        log.append(time.perf_counter() - start)

  return TimedExporter()


def train_and_evaluate_worker(args: dict) -> dict:
  """train_and_evaluate with one exporter kind; export() times per eval."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import multimode_export  # pylint: disable=g-import-not-at-top
  x = np.random.RandomState(0).rand(64, 3).astype(np.float32)
  y = (x.sum(axis=1, keepdims=True) > 1.5).astype(np.int64)

  def input_fn():
    return tf.data.Dataset.from_tensor_slices(({'x': x}, y)).repeat().batch(16)

  est = tf.estimator.DNNClassifier(
      hidden_units=[16, 8], model_dir=args['model_dir'],
      feature_columns=[tf.feature_column.numeric_column('x', shape=[3])],
      config=tf.estimator.RunConfig(
          tf_random_seed=1, save_checkpoints_steps=STEPS_PER_EVALUATION,
          keep_checkpoint_max=None))
  receivers = export_cost.receivers(small=True)
  log: List[float] = []
  exporters = []
  if args['contender'].startswith('multimode'):
    exporters = [_timed(multimode_export.MultiModeExporter(
        'multimode', receivers, exports_to_keep=5,
        reuse_graphs=args['contender'] == 'multimode'), log)]
  elif args['contender'] == 'latest':
    exporters = [_timed(tf.estimator.LatestExporter(
        'latest', receivers['infer'], exports_to_keep=5), log)]
  start = time.perf_counter()
  tf.estimator.train_and_evaluate(
      est,
      tf.estimator.TrainSpec(input_fn, max_steps=STEPS_PER_EVALUATION *
                             args['evaluations']),
      tf.estimator.EvalSpec(input_fn, steps=1, exporters=exporters,
                            start_delay_secs=0, throttle_secs=0))
  return {'seconds': time.perf_counter() - start, 'export_seconds': log}


def worker(args: dict) -> dict:
  if args['kind'] == 'profile':
    return profile_worker(args)
  return train_and_evaluate_worker(args)


def run_worker(args: dict, code_root: Optional[str] = None):
  command = [sys.executable, os.path.abspath(__file__),
             '--sm_worker=' + json.dumps(args)]
  if code_root is None:
    return export_cost.run(command)
  saved = export_cost.ROOT
  export_cost.ROOT = os.path.abspath(code_root)  # the child's PYTHONPATH
  try:
    return export_cost.run(command)
  finally:
    export_cost.ROOT = saved


# --------------------------------------------------------------------------
# The runner.


def measure_profile(model_dir: str, work: str,
                    code_root: Optional[str]) -> Dict[str, dict]:
  out = {}
  for contender in ('package', 'stock'):
    base = os.path.join(work, f'profile-{contender}')
    out[contender] = run_worker({'kind': 'profile', 'contender': contender,
                                 'model_dir': model_dir,
                                 'export_base': base}, code_root)
    shutil.rmtree(base, ignore_errors=True)
    print(f'  profile {contender}: cold {out[contender]["cold"]["wall"]:.2f} '
          f's, warm {out[contender]["warm"]["wall"]:.2f} s', flush=True)
  return out


def _alternating(contenders: Sequence[str], repeats: int,
                 run_one: Callable[[str, int], dict]) -> Dict[str, List[dict]]:
  """contender -> its runs; the order is reversed at every other repeat."""
  runs: Dict[str, List[dict]] = {c: [] for c in contenders}
  for repeat in range(repeats):
    for contender in contenders[::(1 if repeat % 2 == 0 else -1)]:
      runs[contender].append(dict(run_one(contender, repeat)))
  return runs


def measure_export_call(model_dir: str, work: str,
                        repeats: int) -> Dict[str, List[dict]]:
  def run_one(contender: str, repeat: int) -> dict:
    del repeat
    base = os.path.join(work, f'export-{contender}')
    result = export_cost.run_worker({'kind': contender, 'model_dir': model_dir,
                                     'export_base': base})
    shutil.rmtree(base, ignore_errors=True)
    print(f'  {contender:16s} export {result["export_seconds"]:.2f} s  cpu '
          f'{result["export_cpu"]:.2f} s', flush=True)
    return result
  return _alternating(EXPORT_CONTENDERS, repeats, run_one)


def measure_train_and_evaluate(work: str, repeats: int,
                               evaluations: int) -> Dict[str, List[dict]]:
  def run_one(contender: str, repeat: int) -> dict:
    model_dir = os.path.join(work, f'tae-{contender}-{repeat}')
    result = run_worker({'kind': 'train_and_evaluate', 'contender': contender,
                         'model_dir': model_dir, 'evaluations': evaluations})
    shutil.rmtree(model_dir, ignore_errors=True)
    exports = ', '.join(f'{s:.2f}' for s in result['export_seconds'])
    print(f'  {contender:17s} train_and_evaluate {result["seconds"]:.1f} s; '
          f'export() s: [{exports}]', flush=True)
    return result
  return _alternating(TAE_CONTENDERS, repeats, run_one)


def _load_avg() -> str:
  return ', '.join(f'{x:.2f}' for x in os.getloadavg())


# --------------------------------------------------------------------------
# Rendering.


def _median(values: Sequence[float]) -> float:
  return statistics.median(values)


def _profile_table(profiles: Dict[str, dict], contender: str) -> List[str]:
  labels = [l for l in profiles if contender in profiles[l]['runs']]
  head = '| phase | ' + ' | '.join(
      f'{l} {c} s | {l} {c} share' for l in labels for c in ('cold', 'warm'))
  lines = [head + ' |', '|---' * (1 + 4 * len(labels)) + '|']
  names = list(profiles[labels[0]]['runs'][contender]['cold']['phases'])
  for name in names:
    cells = []
    for l in labels:
      for call in ('cold', 'warm'):
        ph = profiles[l]['runs'][contender][call]['phases']
        seconds = ph.get(name, 0.0)
        cells += [f'{seconds:.3f}', f'{100 * seconds / ph["total"]:.0f}%']
    lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
  return lines


def render_markdown(data: dict) -> str:
  lines = ['# Small model: where the export time goes', '',
           'Issue 12 item 4: the small canned `DNNClassifier` of '
           '`benchmarks/export_cost.py` (hidden units [16, 8], 3 numeric '
           'inputs, trained 5 steps), TRAIN+EVAL+PREDICT.', '',
           f'Command: `{data["command"]}` (re-render: `python '
           'benchmarks/small_model.py --sm_render`)', '',
           data['machine'], '']
  profiles = data.get('profiles', {})
  if profiles:
    lines += ['## Profile of one export call', '',
              'cProfile cumulative times of the functions that own each '
              'phase, in one process per contender: *cold* is the first '
              'export call in the process, *warm* the second. cProfile slows '
              'Python code down, so the seconds are larger than unprofiled; '
              'the shares are what to read. Load average (1, 5, 15 min) when '
              'measured: ' + '; '.join(
                  f'{l}: {p["load_average"]}' for l, p in profiles.items())
              + '.', '']
    for label, p in profiles.items():
      lines.append(f'- *{label}*: {p["code"]}')
    lines += ['', '### multimode_export.export_all_saved_models', '']
    lines += _profile_table(profiles, 'package')
    lines += ['', '### Stock experimental_export_all_saved_models', '']
    lines += _profile_table(profiles, 'stock')
    last = list(profiles)[-1]
    lines += ['', f'Largest own times ({last}, package, cold):', '',
              '| function | own s |', '|---|---|']
    for func, seconds in profiles[last]['runs']['package']['cold']['top_own']:
      lines.append(f'| `{func}` | {seconds:.3f} |')
  call = data.get('export_call')
  if call:
    runs = call['runs']
    wall = {c: _median([r['export_seconds'] for r in rs])
            for c, rs in runs.items()}
    cpu = {c: _median([r['export_cpu'] for r in rs]) for c, rs in runs.items()}
    lines += ['', '## The export call, ours against stock', '',
              f'Each run a fresh subprocess, the two alternating, '
              f'{len(runs["small_package"])} runs each; medians. Load '
              f'average when measured: {call["load_average"]}.', '',
              '| contender | export s | export CPU s | /stock (wall) | '
              '/stock (CPU) |', '|---|---|---|---|---|']
    for c in EXPORT_CONTENDERS:
      lines.append(f'| {c} | {wall[c]:.2f} | {cpu[c]:.2f} | '
                   f'{wall[c] / wall["small_stock_all"]:.2f} | '
                   f'{cpu[c] / cpu["small_stock_all"]:.2f} |')
  tae = data.get('train_and_evaluate')
  if tae:
    runs = tae['runs']
    lines += ['', '## Per evaluation in train_and_evaluate', '',
              f'`tf.estimator.train_and_evaluate`, {tae["evaluations"]} '
              f'evaluations per run (a checkpoint every '
              f'{STEPS_PER_EVALUATION} steps, `throttle_secs=0`), '
              f'{len(runs["multimode"])} runs per exporter in fresh '
              'subprocesses, alternating. *export()* is the exporter\'s '
              '`export()` call timed from outside, per evaluation (median '
              'over every evaluation of every run; *mean* their mean; '
              '*first* the first evaluation of a run, *later* the others). '
              '*total* is the '
              'median train_and_evaluate time; *added* its difference to the '
              f'run without an exporter. Load average when measured: '
              f'{tae["load_average"]}.', '',
              '| exporter | export() s | mean s | first s | later s | total s '
              '| added per evaluation s |', '|---|---|---|---|---|---|---|']
    none_total = _median([r['seconds'] for r in runs['none']])
    per_eval, mean = {}, {}
    for c in TAE_CONTENDERS:
      total = _median([r['seconds'] for r in runs[c]])
      added = (total - none_total) / tae['evaluations']
      if c == 'none':
        lines.append(f'| none | | | | | {total:.1f} | |')
        continue
      every = [s for r in runs[c] for s in r['export_seconds']]
      first = [r['export_seconds'][0] for r in runs[c]]
      later = [s for r in runs[c] for s in r['export_seconds'][1:]]
      per_eval[c] = _median(every)
      mean[c] = statistics.mean(every)
      lines.append(f'| {c} | {per_eval[c]:.2f} | {mean[c]:.2f} | '
                   f'{_median(first):.2f} | '
                   f'{_median(later):.2f} | {total:.1f} | {added:.2f} |')
    lines += ['', '*multimode* is `MultiModeExporter` (TRAIN+EVAL+PREDICT) as '
              'it is now (`reuse_graphs=True`, the default: the graphs are '
              'built at the first export only); *multimode_rebuild* is '
              '`reuse_graphs=False`, which rebuilds them at every export as '
              'before this change; *latest* is `tf.estimator.LatestExporter` '
              '(PREDICT only).', '',
              '| per evaluation, export() | median ratio | mean ratio |',
              '|---|---|---|']
    for c in ('multimode', 'multimode_rebuild'):
      lines.append(f'| {c} / latest | {per_eval[c] / per_eval["latest"]:.2f}x '
                   f'| {mean[c] / mean["latest"]:.2f}x |')
  notes = data.get('notes')
  if notes:
    lines += ['', '## Findings', ''] + notes
  return '\n'.join(lines) + '\n'


def render(out: str) -> str:
  with open(os.path.join(out, 'small_model.json'), encoding='utf-8') as f:
    data = json.load(f)
  text = render_markdown(data)
  with open(os.path.join(out, 'small_model.md'), 'w', encoding='utf-8') as f:
    f.write(text)
  return text


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if FLAGS.sm_worker:
    print(json.dumps(worker(json.loads(FLAGS.sm_worker)), default=float))
    return
  path = os.path.join(FLAGS.out, 'small_model.json')
  if FLAGS.sm_render:
    print(render(FLAGS.out))
    return
  data = {}
  if os.path.exists(path):
    with open(path, encoding='utf-8') as f:
      data = json.load(f)
  data['command'] = (f'python benchmarks/small_model.py --out {FLAGS.out} '
                     f'--sm_repeats {FLAGS.sm_repeats} --sm_tae_repeats '
                     f'{FLAGS.sm_tae_repeats} --sm_evaluations '
                     f'{FLAGS.sm_evaluations}')
  data['machine'] = export_cost._machine().replace(  # pylint: disable=protected-access
      'warm page cache (the checkpoint was just written)',
      'warm page cache')
  work = FLAGS.work_dir or tempfile.mkdtemp(prefix='small_model-')
  try:
    model_dir = os.path.join(work, 'small')
    export_cost.run_worker({'kind': 'small_train', 'model_dir': model_dir})
    if FLAGS.sm_profile:
      code = ('this checkout' if FLAGS.sm_code_root is None else
              f'the package at `{FLAGS.sm_code_root}`')
      load = _load_avg()
      data.setdefault('profiles', {})[FLAGS.sm_label] = {
          'code': code, 'load_average': load,
          'runs': measure_profile(model_dir, work, FLAGS.sm_code_root)}
    if FLAGS.sm_export_call:
      load = _load_avg()
      data['export_call'] = {'load_average': load, 'runs': measure_export_call(
          model_dir, work, FLAGS.sm_repeats)}
    if FLAGS.sm_train_and_evaluate:
      load = _load_avg()
      data['train_and_evaluate'] = {
          'load_average': load, 'evaluations': FLAGS.sm_evaluations,
          'runs': measure_train_and_evaluate(work, FLAGS.sm_tae_repeats,
                                             FLAGS.sm_evaluations)}
  finally:
    if not FLAGS.work_dir:
      shutil.rmtree(work, ignore_errors=True)
  os.makedirs(FLAGS.out, exist_ok=True)
  with open(path, 'w', encoding='utf-8') as f:
    json.dump(data, f, indent=1, default=float)
  print(render(FLAGS.out))


if __name__ == '__main__':
  app.run(main)
