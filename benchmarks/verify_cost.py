r"""The cost of `verify`, and of exports of one huge tensor and of 30 GiB.

    python benchmarks/verify_cost.py --work_dir /tmp/vc_work \
        --out docs/benchmarks/

Three parts (`--parts`), each reusing export_cost.py's synthetic checkpoint,
model and measured subprocesses:

  load_ratio  the 3-mode export of the --verify_gib checkpoint (export_cost's
              embedding + 2 Adam slots). Alternating, --repeats times, each
              in a fresh subprocess: `verify` (every check, train step
              included) against one process that imports TensorFlow and
              loads the `train` tag set once with the TF1 loader. Reported:
              medians of the process wall time and of the peak RSS.
  big_tensor  a PREDICT-only export (subset by extent copy) of a checkpoint
              whose largest tensor is one unpartitioned --big_rows x --dim
              float32 embedding (with its 2 Adam slots: 3x that on disk,
              written one tensor per bundle, merged); then the stock
              `export_saved_model`, and the two `variables/` compared.
  huge        export_cost's larger-than-RAM checkpoint of --huge_gib GiB
              (partitioned, written slice by slice), exported by link, then
              `verify --max_load_gib`: wall, peak RSS, the tag sets loaded
              and skipped, the crc32c check of every data file.

Every process runs under export_cost's RSS watchdog (--rss_limit_gib). The
measurements go to <out>/verify.json, and <out>/verify.md is rendered from
it (`--render` re-renders without measuring).
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
flags.DEFINE_list('parts', ['load_ratio', 'big_tensor', 'huge'],
                  'Which parts to run (the others keep their last results '
                  'in verify.json).')
flags.DEFINE_float('verify_gib', 3, 'load_ratio: checkpoint GiB.')
flags.DEFINE_integer('big_rows', 16777216, 'big_tensor: embedding rows.')
flags.DEFINE_float('huge_gib', 30, 'huge: checkpoint GiB.')
flags.DEFINE_float('huge_max_load_gib', 12, 'huge: the max_load_gib of verify.')
# export_cost defines --repeats, --dim, --partitions, --rss_limit_gib,
# --work_dir, --out, --render and --worker; this script uses them too.

GIB = export_cost.GIB
PARTS = ('load_ratio', 'big_tensor', 'huge')
JSON_NAME, PAGE_NAME = 'verify.json', 'verify.md'
# The profile's row for the crc32c pass of the `variables` check.
CRC_PASS = 'variables: crc32c pass'

# --------------------------------------------------------------------------
# One measured run (in a fresh subprocess).


def worker(args: dict) -> dict:
  """The runs of this benchmark; the others are export_cost's."""
  kind = args['kind']
  if kind == 'tf1_load':
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    start = time.perf_counter()
    with tf.compat.v1.Session(graph=tf.Graph()) as session:
      tf.compat.v1.saved_model.loader.load(session, args['tags'],
                                           args['export_dir'])
    return {'load_seconds': time.perf_counter() - start}
  if kind in ('verify', 'verify_no_train_step', 'verify_phases'):
    import multimode_export  # pylint: disable=g-import-not-at-top
    phases = _time_checks() if kind == 'verify_phases' else None
    start = time.perf_counter()
    report = multimode_export.verify(
        args['export_dir'], max_load_gib=args.get('max_load_gib'),
        run_train_step=kind != 'verify_no_train_step')
    return {'verify_seconds': time.perf_counter() - start, 'ok': report.ok,
            'phases': phases,
            'report': str(report),
            'checks': [[c.name, ','.join(c.tags), c.ok, c.skipped, c.detail]
                       for c in report.checks]}
  return export_cost.worker(args)


def _time_checks() -> List:
  """Times each check of `verify` from now on; returns the list it fills.

  A profile, not part of the measured runs: it wraps the private
  `Recorder.run` that runs each check.
  """
  from multimode_export.checks import _report as report_lib  # pylint: disable=g-import-not-at-top
  from multimode_export.variables import _bundle_check as bundle_check  # pylint: disable=g-import-not-at-top
  phases = []
  run = report_lib.Recorder.run
  check = bundle_check.check

  def timed(self, name, tags, fn, **kwargs):
    start = time.perf_counter()
    try:
      return run(self, name, tags, fn, **kwargs)
    finally:
      phases.append([name, ','.join(tags), time.perf_counter() - start,
                     _vm_kib('VmRSS') * 1024, _vm_kib('VmHWM') * 1024])

  def timed_pass(*args, **kwargs):
    # The `variables` check's crc32c pass, which may run on a thread beside
    # the loads: its own row, appended when it ends.
    start = time.perf_counter()
    try:
      return check(*args, **kwargs)
    finally:
      phases.append([CRC_PASS, '', time.perf_counter() - start,
                     _vm_kib('VmRSS') * 1024, _vm_kib('VmHWM') * 1024])

  report_lib.Recorder.run = timed
  bundle_check.check = timed_pass
  return phases


def _vm_kib(field: str) -> int:
  with open('/proc/self/status') as f:
    for line in f:
      if line.startswith(field + ':'):
        return int(line.split()[1])
  return 0


def run_worker(args: dict) -> export_cost.Run:
  return export_cost.run_worker(args, script=__file__,
                                rss_limit=int(FLAGS.rss_limit_gib * GIB))


def _write(work: str, name: str, rows: int, partitions: int,
           bundle_per_tensor: bool = False) -> Dict:
  """Writes a synthetic checkpoint; returns the worker args that use it."""
  common = {'model_dir': os.path.join(work, name), 'rows': rows,
            'dim': FLAGS.dim, 'partitions': partitions}
  written = run_worker(dict(common, kind='write_checkpoint',
                            bundle_per_tensor=bundle_per_tensor))
  files = export_cost._checkpoint_files(written['prefix'])  # pylint: disable=protected-access
  common['ckpt_bytes'] = sum(os.path.getsize(f) for f in files)
  common['data_files'] = len(files) - 1
  print(f'== {name}: {rows} x {FLAGS.dim}, {partitions} partition(s): '
        f'{common["ckpt_bytes"] / GIB:.2f} GiB in {common["data_files"]} data '
        f'files written in {written["wall"]:.1f} s (rss '
        f'{written["rss"] / GIB:.2f} GiB)', flush=True)
  return common


def _export(common: Dict, kind: str, base: str) -> export_cost.Run:
  result = run_worker(dict(common, kind=kind, export_base=base))
  if result['killed']:
    return result
  print(f'  {kind}: {result["wall"]:.1f} s, rss {result["rss"] / GIB:.2f} '
        f'GiB, variables/ {result["variables_bytes"] / GIB:.2f} GiB',
        flush=True)
  return result


def _variables_method(export_dir: str) -> str:
  """'hard link' if variables/ shares its data file with the checkpoint."""
  variables = os.path.join(export_dir, 'variables')
  links = [os.stat(os.path.join(variables, n)).st_nlink
           for n in os.listdir(variables) if '.data-' in n]
  return 'hard link' if any(n > 1 for n in links) else 'a new file'


def _summary(result: export_cost.Run, *keys: str) -> Dict:
  """What verify.json keeps of a run."""
  return {k: result[k] for k in ('wall', 'rss', 'cpu', 'killed') + keys
          if k in result}


def _load_avg() -> List[float]:
  return [round(v, 2) for v in os.getloadavg()]


# --------------------------------------------------------------------------
# The parts.


def load_ratio(work: str) -> Dict:
  """verify against one TF1 load of the train tag set, alternating."""
  rows = max(1, int(FLAGS.verify_gib * GIB / 3 / (FLAGS.dim * 4)))
  common = _write(work, 'model-verify', rows, 1)
  export = _export(common, 'package', os.path.join(work, 'export-verify'))
  export_dir = export['export_dir']
  kinds = ('verify', 'tf1_load', 'verify_no_train_step')
  runs = {k: [] for k in kinds}
  loads = []
  for repeat in range(FLAGS.repeats):
    # Alternate the order so page-cache warmth and drift even out.
    for kind in kinds if repeat % 2 == 0 else kinds[::-1]:
      loads.append(_load_avg())
      result = run_worker({'kind': kind, 'export_dir': export_dir,
                           'tags': ['train']})
      if kind.startswith('verify') and not result['ok']:
        raise RuntimeError(f'verify failed:\n{result["report"]}')
      runs[kind].append(_summary(result, 'verify_seconds', 'load_seconds'))
      print(f'  {kind:8s} wall {result["wall"]:6.2f} s  rss '
            f'{result["rss"] / GIB:5.2f} GiB', flush=True)
  profile = run_worker({'kind': 'verify_phases', 'export_dir': export_dir})
  shutil.rmtree(os.path.dirname(export_dir), ignore_errors=True)
  shutil.rmtree(common['model_dir'], ignore_errors=True)
  return {'rows': rows, 'dim': FLAGS.dim, 'ckpt_bytes': common['ckpt_bytes'],
          'variables_bytes': export['variables_bytes'], 'runs': runs,
          'load_avg': loads,
          'profile': _summary(profile, 'verify_seconds', 'phases')}


def big_tensor(work: str) -> Dict:
  """PREDICT-only export of one huge unpartitioned tensor; stock next to it."""
  common = _write(work, 'model-big-tensor', FLAGS.big_rows, 1,
                  bundle_per_tensor=True)
  loads = [_load_avg()]
  ours = _export(common, 'package_predict',
                 os.path.join(work, 'export-big-package'))
  method = _variables_method(ours['export_dir'])
  loads.append(_load_avg())
  stock = _export(common, 'stock_predict',
                  os.path.join(work, 'export-big-stock'))
  identical = None
  if not stock['killed']:
    identical = run_worker({'kind': 'compare', 'a': os.path.join(
        ours['export_dir'], 'variables', 'variables'), 'b': os.path.join(
            stock['export_dir'], 'variables', 'variables')})['identical']
    print(f'  variables identical to stock: {identical}', flush=True)
  for name in ('export-big-package', 'export-big-stock'):
    shutil.rmtree(os.path.join(work, name), ignore_errors=True)
  shutil.rmtree(common['model_dir'], ignore_errors=True)
  return {'rows': FLAGS.big_rows, 'dim': FLAGS.dim,
          'ckpt_bytes': common['ckpt_bytes'],
          'data_files': common['data_files'], 'method': method,
          'package_predict': _summary(ours, 'export_seconds',
                                      'variables_bytes'),
          'stock_predict': _summary(stock, 'export_seconds',
                                    'variables_bytes'),
          'identical': identical, 'load_avg': loads}


def huge(work: str) -> Dict:
  """verify --max_load_gib of a link export larger than RAM."""
  partitions = FLAGS.partitions
  rows = int(FLAGS.huge_gib * GIB / 3 / (FLAGS.dim * 4)) // partitions * \
      partitions
  common = _write(work, 'model-huge', rows, partitions)
  export = _export(common, 'package', os.path.join(work, 'export-huge'))
  loads = [_load_avg()]
  result = run_worker({'kind': 'verify_phases',
                       'export_dir': export['export_dir'],
                       'max_load_gib': FLAGS.huge_max_load_gib})
  print(result.get('report', 'killed'), flush=True)
  shutil.rmtree(os.path.join(work, 'export-huge'), ignore_errors=True)
  shutil.rmtree(common['model_dir'], ignore_errors=True)
  return {'rows': rows, 'dim': FLAGS.dim, 'partitions': partitions,
          'ckpt_bytes': common['ckpt_bytes'],
          'data_files': common['data_files'],
          'max_load_gib': FLAGS.huge_max_load_gib,
          'export': _summary(export, 'export_seconds', 'variables_bytes'),
          'verify': _summary(result, 'verify_seconds', 'ok', 'checks',
                             'phases'),
          'load_avg': loads}


# --------------------------------------------------------------------------
# The page.


def _median(runs: List[Dict], key: str) -> float:
  return statistics.median(r[key] for r in runs)


def _met(ok: bool) -> str:
  return 'yes' if ok else 'NO'


def render_markdown(data: Dict) -> str:
  """verify.md from the data of verify.json."""
  lines = ['# The cost of `verify`; one huge tensor; 30 GiB verified', '',
           f'Each part below names the command that measured it; re-render '
           f'this page from `{JSON_NAME}` with '
           '`python benchmarks/verify_cost.py --render`.', '',
           data['machine'], '',
           'Each run is a fresh subprocess under an RSS watchdog; *wall* is '
           'the whole process (Python start, `import tensorflow`, the work); '
           '*peak RSS* is `ru_maxrss` of the child from `wait4`. *load avg* '
           'is the 1/5/15-minute load average before each run (the machine '
           'is shared).', '']
  for part, section in (('load_ratio', _render_load_ratio),
                        ('big_tensor', _render_big_tensor),
                        ('huge', _render_huge)):
    if data.get(part):
      heading, *rest = section(data[part])
      lines += [heading, '', f'Command: `{data[part]["command"]}`'] + rest
  return '\n'.join(lines).rstrip('\n') + '\n'


def _render_load_ratio(part) -> List[str]:
  runs = part['runs']
  n = len(runs['verify'])
  lines = [f'## `verify` against one TF1 load of the `train` tag set '
           f'({part["ckpt_bytes"] / GIB:.2f} GiB checkpoint, 3 modes)', '',
           f'The export of export_cost.py\'s checkpoint (embedding '
           f'{part["rows"]} x {part.get("dim", 64)} float32 + 2 Adam slots), '
           'TRAIN+EVAL+PREDICT '
           f'by link: `variables/` {part["variables_bytes"] / GIB:.2f} GiB. '
           '`verify` runs every check (crc32c of every tensor, each tag set '
           'loaded with the TF1 and the TF2 loader, every signature, one '
           'train step); `verify_no_train_step` is `verify` with '
           '`run_train_step=False` (`--norun_train_step`); `tf1_load` '
           'imports TensorFlow and runs '
           '`tf.compat.v1.saved_model.loader.load(session, ["train"], ...)` '
           f'once in a fresh graph and session. {n} runs each, alternating; '
           'medians.', '',
           '| process | runs: wall s | median wall s | /tf1_load | median '
           'peak RSS GiB |', '|---|---|---|---|---|']
  base = _median(runs['tf1_load'], 'wall')
  for kind in runs:
    walls = ', '.join(f'{r["wall"]:.2f}' for r in runs[kind])
    wall = _median(runs[kind], 'wall')
    lines.append(f'| {kind} | {walls} | {wall:.2f} | {wall / base:.2f} | '
                 f'{_median(runs[kind], "rss") / GIB:.2f} |')
  ratio = _median(runs['verify'], 'wall') / base
  rss = _median(runs['verify'], 'rss') / GIB
  loads = ', '.join('/'.join(f'{v:.2f}' for v in l) for l in part['load_avg'])
  lines += ['', f'Load average before each run: {loads}.', '',
            '| target | measured | met |', '|---|---|---|',
            f'| verify wall <= 2.0x one TF1 load of `train` | {ratio:.2f}x | '
            f'{_met(ratio <= 2.0)} |',
            f'| verify peak RSS <= 4.1 GiB | {rss:.2f} GiB | '
            f'{_met(rss <= 4.1)} |']
  profile = part.get('profile')
  if profile:
    lines += ['', f'Where the time goes: one more `verify` run, each check '
              f'timed (the call took {profile["verify_seconds"]:.2f} s of a '
              f'{profile["wall"]:.2f} s process).', '']
    lines += _render_phases(profile['phases'])
  return lines + ['']


def _render_phases(phases) -> List[str]:
  """The checks of a timed `verify` run, those under 0.05 s left out."""
  lines = []
  if any(p[0] == CRC_PASS for p in phases):
    lines += [f'`{CRC_PASS}` is the pass over every data file, timed on '
              'the thread it ran on beside the loads, from their start; the '
              '`variables` check only waits for it after the loads, so its '
              'row (if shown) is that wait. Rows are in the order they ended; '
              'the report still lists `variables` first.', '']
  lines += ['| check | tags | s | RSS after GiB | peak RSS so far GiB |',
            '|---|---|---|---|---|']
  for name, tags, seconds, rss_now, hwm in phases:
    if seconds >= 0.05:
      lines.append(f'| {name} | {tags or "*"} | {seconds:.2f} | '
                   f'{rss_now / GIB:.2f} | {hwm / GIB:.2f} |')
  return lines


def _render_big_tensor(part) -> List[str]:
  ours, stock = part['package_predict'], part['stock_predict']
  tensor = part['rows'] * part.get('dim', 64) * 4 / GIB
  lines = [f'## PREDICT-only export of one unpartitioned {tensor:.2f} GiB '
           'tensor', '',
           f'Embedding {part["rows"]} x {part.get("dim", 64)} float32 in one '
           'variable, trained '
           'with Adam: the checkpoint holds it and its two slots, '
           f'{part["ckpt_bytes"] / GIB:.2f} GiB in {part["data_files"]} data '
           'files (written one tensor per bundle, then merged, so that the '
           'writer holds one tensor at a time). The package writes the '
           'PREDICT subset (the embedding and the head, no slots) by extent '
           f'copy (`variables/` data: {part["method"]}); the stock '
           '`export_saved_model` restores it into a Session and saves it. '
           'Load average before the runs: '
           + ', '.join('/'.join(f'{v:.2f}' for v in l)
                       for l in part['load_avg']) + '.', '',
           '| contender | wall s | export call s | peak RSS GiB | '
           'variables/ GiB |', '|---|---|---|---|---|']
  for name, run in (('package_predict', ours), ('stock_predict', stock)):
    if run.get('killed'):
      lines.append(f'| {name} | {run["wall"]:.1f} | killed by the watchdog | '
                   f'{run["rss"] / GIB:.2f} | |')
      continue
    lines.append(f'| {name} | {run["wall"]:.1f} | '
                 f'{run["export_seconds"]:.1f} | {run["rss"] / GIB:.2f} | '
                 f'{run["variables_bytes"] / GIB:.2f} |')
  rss = ours['rss'] / GIB
  identical = part['identical']
  lines += ['', '| target | measured | met |', '|---|---|---|',
            f'| package_predict peak RSS <= 0.7 GiB | {rss:.2f} GiB | '
            f'{_met(rss <= 0.7)} |',
            '| variables byte-identical to stock | ' + (
                'stock killed by the watchdog: not compared | n/a |'
                if identical is None else
                f'{identical} | {_met(identical)} |'), '']
  return lines


def _render_huge(part) -> List[str]:
  run = part['verify']
  lines = [f'## `verify --max_load_gib {part["max_load_gib"]:g}` of a '
           f'{part["ckpt_bytes"] / GIB:.2f} GiB export', '',
           f'export_cost.py\'s larger-than-RAM checkpoint: embedding '
           f'{part["rows"]} x {part.get("dim", 64)} float32 in '
           f'{part["partitions"]} partitions + '
           f'2 Adam slots, {part["data_files"]} data files, exported '
           f'TRAIN+EVAL+PREDICT by link (export call '
           f'{part["export"]["export_seconds"]:.1f} s). Load average before '
           'verify: ' + ', '.join('/'.join(f'{v:.2f}' for v in l)
                                   for l in part['load_avg']) + '.', '']
  if run.get('killed'):
    return lines + [f'verify was killed by the watchdog after '
                    f'{run["wall"]:.1f} s at {run["rss"] / GIB:.2f} GiB.', '']
  checks = run['checks']
  tag_sets = []
  for name, tags, _, skipped, _ in checks:
    if tags and tags not in tag_sets:
      tag_sets.append(tags)
  loaded = [t for t in tag_sets if any(
      c[1] == t and c[0] == 'tf1_load' and not c[3] for c in checks)]
  skipped = {c[1]: c[4] for c in checks if c[0] == 'loads' and c[3]}
  variables = [c for c in checks if c[0] == 'variables'][0]
  lines += ['| | |', '|---|---|',
            f'| verify wall (process) | {run["wall"]:.1f} s (the call '
            f'{run["verify_seconds"]:.1f} s) |',
            f'| peak RSS | {run["rss"] / GIB:.2f} GiB |',
            f'| report | {"PASSED" if run["ok"] else "FAILED"}, '
            f'{len(checks)} checks |',
            f'| `variables` | {variables[4]} |',
            '| loaded (TF1 and TF2) | ' +
            (', '.join(f'[{t}]' for t in loaded) or 'none') + ' |']
  for tags, reason in skipped.items():
    lines.append(f'| skipped [{tags}] | {reason} |')
  if run.get('phases'):
    lines += ['', 'Each check timed (the `variables` check reads every data '
              'file once; the loads read the variables of their tag set):',
              ''] + _render_phases(run['phases'])
  lines.append('')
  return lines


def _machine() -> str:
  return export_cost._machine().split(';')[0] + '.'  # pylint: disable=protected-access


def render(out: str) -> None:
  with open(os.path.join(out, JSON_NAME)) as f:
    text = render_markdown(json.load(f))
  with open(os.path.join(out, PAGE_NAME), 'w') as f:
    f.write(text)
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
  unknown = set(FLAGS.parts) - set(PARTS)
  if unknown:
    raise app.UsageError(f'--parts: expected some of {PARTS}, got {unknown}')
  path = os.path.join(FLAGS.out, JSON_NAME)
  data = {}
  if os.path.exists(path):
    with open(path) as f:
      data = json.load(f)
  work = FLAGS.work_dir or tempfile.mkdtemp(prefix='verify_cost-')
  os.makedirs(work, exist_ok=True)
  functions = {'load_ratio': load_ratio, 'big_tensor': big_tensor,
               'huge': huge}
  try:
    for part in PARTS:
      if part in FLAGS.parts:
        data[part] = functions[part](work)
        data[part]['command'] = ' '.join(
            ['python benchmarks/verify_cost.py'] + sys.argv[1:])
        data['machine'] = _machine()
        os.makedirs(FLAGS.out, exist_ok=True)
        with open(path, 'w') as f:
          json.dump(data, f, indent=1, default=str)
        render(FLAGS.out)
  finally:
    if not FLAGS.work_dir:
      shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
  app.run(main)
