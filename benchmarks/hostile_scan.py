r"""How long `verify`'s scan and `inspect` take on a huge `saved_model.pb`.

    python benchmarks/hostile_scan.py --work_dir /tmp/hs_work \
        --out docs/benchmarks/

Builds (once per --no_ops, kept in --work_dir) a small real SavedModel whose
serving graph gains --no_ops extra `NoOp` nodes with --name_bytes-long names:
2 million of 100 bytes make a `saved_model.pb` of about 200 MB, the export
issue 25 used against `verify`. Then runs, each in a fresh subprocess,
--repeats times:

  import     `import tensorflow` and the package: the floor of the others;
  scan       read the SavedModel and run the safety scan of every tag set
             (what `verify` does before anything loads); the verdict
             column shows the seconds of reading and scanning alone;
  inspect    `multimode-export inspect DIR` (reads, runs nothing);
  verify     `multimode-export verify --timeout=T DIR`: the scan, then the
             child process loading the graph, killed after --timeout
             seconds; the exit status and the failing check are recorded;
  verify_capped  the same with --max_load_gib=0.5: the loading child's
             memory cap is then 3.5 GiB.

Reported: the process wall time, its CPU time and peak RSS (from `wait4`:
for `verify`, the CLI and its loading child; the CPU time counts a child
only when it was reaped, not one killed). On a machine shared with other
jobs the wall time grows with the load; the CPU time much less. The
measurements go to <out>/hostile_scan.json and <out>/hostile_scan.md.
"""

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Dict, List

from absl import app
from absl import flags

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = flags.FLAGS
flags.DEFINE_integer('no_ops', 2000000, 'NoOp nodes added to the graph.')
flags.DEFINE_integer('name_bytes', 92, 'Length of each NoOp node name.')
flags.DEFINE_integer('repeats', 1, 'Runs of each contender.')
flags.DEFINE_float('timeout', 60, 'verify --timeout.')
flags.DEFINE_string('work_dir', '/tmp/hostile_scan', 'Where the export is.')
flags.DEFINE_string('out', None, 'Directory for the json and md results.')
flags.DEFINE_list('contenders', ['import', 'scan', 'inspect', 'verify',
                                 'verify_capped'],
                  'Which to run (the others keep their results in the json).')

_BUILD = r'''
import os, sys
sys.path.insert(0, os.path.join({root!r}, 'tests'))
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from testing import crafted
export_dir, count, name_bytes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
crafted._build(export_dir, lambda x, v: {{'y': x * v[0]}})
path = os.path.join(export_dir, 'saved_model.pb')
saved_model = saved_model_pb2.SavedModel()
with open(path, 'rb') as f:
  saved_model.ParseFromString(f.read())
nodes = saved_model.meta_graphs[0].graph_def.node
pad = 'x' * max(name_bytes - 18, 1)
for i in range(count):
  nodes.add(name=f'padding/{{i:09d}}/{{pad}}', op='NoOp')
with open(path, 'wb') as f:
  f.write(saved_model.SerializeToString())
'''
_IMPORT = 'import tensorflow, multimode_export'
_SCAN = ('import sys, time, multimode_export; '
         'from multimode_export.saved_model import _format; '
         'from multimode_export.checks import _safety; '
         'd = sys.argv[1]; start, cpu = time.monotonic(), time.process_time(); '
         'scans = _safety.scan_saved_model(d, _format.read_saved_model(d)); '
         "print(f'SCANNED in {time.monotonic() - start:.1f} s wall, '"
         "f'{time.process_time() - cpu:.1f} s CPU:', "
         '[s.scanned for s in scans])')


def _measure(argv: List[str]) -> Dict[str, object]:
  """Runs argv; its wall time, peak RSS (GiB), exit status and last lines."""
  env = dict(os.environ, PYTHONPATH=_ROOT, TF_CPP_MIN_LOG_LEVEL='2')
  start = time.monotonic()
  process = subprocess.Popen(argv, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, env=env)
  output = process.stdout.read().decode('utf-8', 'replace')
  _, status, usage = os.wait4(process.pid, 0)
  process.returncode = os.waitstatus_to_exitcode(status)
  failed = [line.strip() for line in output.splitlines()
            if line.strip().startswith(('FAIL ', 'FAILED', 'PASSED',
                                        'SCANNED'))]
  return {'wall_s': round(time.monotonic() - start, 2),
          'cpu_s': round(usage.ru_utime + usage.ru_stime, 2),
          'peak_gib': round(usage.ru_maxrss / (1 << 20), 3),
          'exit': process.returncode, 'lines': failed[:3]}


def _export(work_dir: str) -> str:
  export_dir = os.path.join(work_dir, f'no_ops_{FLAGS.no_ops}')
  if not os.path.exists(os.path.join(export_dir, 'saved_model.pb')):
    subprocess.run([sys.executable, '-c', _BUILD.format(root=_ROOT),
                    export_dir, str(FLAGS.no_ops), str(FLAGS.name_bytes)],
                   check=True, env=dict(os.environ, PYTHONPATH=_ROOT))
  return export_dir


def _render(results: Dict[str, object]) -> str:
  lines = [
      '# verify and inspect on a huge saved_model.pb',
      '',
      'Generated by `benchmarks/hostile_scan.py` from hostile_scan.json: do '
      'not edit.',
      '',
      f"Export: {results['no_ops']} extra `NoOp` nodes, `saved_model.pb` of "
      f"{results['pb_bytes'] / 1e6:.0f} MB. Machine: {results['machine']}. "
      f"Median of {results['repeats']} run(s) each; target: scan under 30 s "
      'and 2 GiB.',
      '',
      '| contender | wall (s) | CPU (s) | peak RSS (GiB) | exit | verdict |',
      '| --- | ---: | ---: | ---: | ---: | --- |']
  for name, runs in results['runs'].items():
    wall = statistics.median(r['wall_s'] for r in runs)
    cpu = statistics.median(r.get('cpu_s', float('nan')) for r in runs)
    peak = statistics.median(r['peak_gib'] for r in runs)
    verdict = '; '.join(runs[0]['lines'])[:160].replace('|', '/')
    lines.append(f"| {name} | {wall:.1f} | {cpu:.1f} | {peak:.2f} | "
                 f"{runs[0]['exit']} | {verdict} |")
  return '\n'.join(lines) + '\n'


def main(argv):
  del argv
  export_dir = _export(FLAGS.work_dir)
  python = sys.executable
  contenders = {
      'import': [python, '-c', _IMPORT],
      'scan': [python, '-c', _SCAN, export_dir],
      'inspect': [python, '-m', 'multimode_export', 'inspect', export_dir],
      'verify': [python, '-m', 'multimode_export', 'verify',
                 f'--timeout={FLAGS.timeout:g}', export_dir],
      'verify_capped': [python, '-m', 'multimode_export', 'verify',
                        f'--timeout={FLAGS.timeout:g}', '--max_load_gib=0.5',
                        export_dir],
  }
  json_path = os.path.join(FLAGS.out or '', 'hostile_scan.json')
  runs = {}
  if FLAGS.out and os.path.exists(json_path):
    with open(json_path) as f:
      runs = json.load(f)['runs']
  for name in FLAGS.contenders:
    runs[name] = []
  for _ in range(FLAGS.repeats):
    for name in FLAGS.contenders:
      runs[name].append(_measure(contenders[name]))
      print(name, runs[name][-1], flush=True)
  runs = {name: runs[name] for name in contenders if name in runs}
  results = {
      'no_ops': FLAGS.no_ops, 'repeats': FLAGS.repeats,
      'pb_bytes': os.path.getsize(os.path.join(export_dir, 'saved_model.pb')),
      'machine': f'{platform.machine()}, {os.cpu_count()} cores, '
                 f'load average {os.getloadavg()[0]:.1f} at the end',
      'timeout': FLAGS.timeout, 'runs': runs}
  if FLAGS.out:
    os.makedirs(FLAGS.out, exist_ok=True)
    with open(json_path, 'w') as f:
      json.dump(results, f, indent=1)
    with open(os.path.join(FLAGS.out, 'hostile_scan.md'), 'w') as f:
      f.write(_render(results))
  print(_render(results))


if __name__ == '__main__':
  app.run(main)
