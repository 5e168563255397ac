r"""How long `verify`'s scan and `inspect` take on a huge `saved_model.pb`.

    python benchmarks/hostile_scan.py --hs_work_dir /tmp/hs_work \
        --hs_out docs/benchmarks/

Builds (once per --hs_no_ops, kept in --hs_work_dir) a small real
SavedModel whose serving graph gains --hs_no_ops extra `NoOp` nodes with
--hs_name_bytes-long names:
2 million of 100 bytes make a `saved_model.pb` of about 200 MB, the export
issue 25 used against `verify`. Then runs, each in a fresh subprocess,
--hs_repeats times:

  import     `import tensorflow` and the package: the floor of the others;
  scan       read the SavedModel and run the safety scan of every tag set
             (what `verify` does before anything loads); the verdict
             column shows the seconds of reading and scanning alone;
  inspect    `multimode-export inspect DIR` (reads, runs nothing);
  verify     `multimode-export verify --timeout=T DIR`: the scan, then the
             child process loading the graph, killed after --hs_timeout
             seconds; the exit status and the failing check are recorded;
  verify_capped  the same with --max_load_gib=0.5: the loading child's
             memory cap is then 3.5 GiB.

Reported: the process wall time, its CPU time and peak RSS (from `wait4`:
for `verify`, the CLI and the loading children it reaped). On a machine shared with other
jobs the wall time grows with the load; the CPU time much less. The
measurements go to <out>/hostile_scan.json and <out>/hostile_scan.md
(`--hs_render` re-renders the page from the json).
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
flags.DEFINE_integer('hs_no_ops', 2000000, 'NoOp nodes added to the graph.')
flags.DEFINE_integer('hs_name_bytes', 92, 'Length of each NoOp node name.')
flags.DEFINE_integer('hs_repeats', 1, 'Runs of each contender.')
flags.DEFINE_float('hs_timeout', 60, 'verify --timeout.')
flags.DEFINE_string('hs_work_dir', '/tmp/hostile_scan', 'Where the export is.')
flags.DEFINE_string('hs_out', None, 'Directory for the json and md results.')
flags.DEFINE_bool('hs_render', False, 'Re-render the md from the json, '
                  'measuring nothing.')
flags.DEFINE_list('hs_contenders', ['import', 'scan', 'inspect', 'verify',
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
_CAPPED_GIB = 0.5  # verify_capped's --max_load_gib: a 3.5 GiB memory cap
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
  export_dir = os.path.join(work_dir, f'no_ops_{FLAGS.hs_no_ops}')
  if not os.path.exists(os.path.join(export_dir, 'saved_model.pb')):
    subprocess.run([sys.executable, '-c', _BUILD.format(root=_ROOT),
                    export_dir, str(FLAGS.hs_no_ops), str(FLAGS.hs_name_bytes)],
                   check=True, env=dict(os.environ, PYTHONPATH=_ROOT))
  return export_dir


def render_markdown(results: Dict[str, object]) -> str:
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
  flags_of = {'verify': f"--timeout={results['timeout']:g}",
              'verify_capped': f"--timeout={results['timeout']:g} "
                               f'--max_load_gib={_CAPPED_GIB:g}'}
  for name, runs in results['runs'].items():
    if name in flags_of:
      name = f'{name} ({flags_of[name]})'
    wall = statistics.median(r['wall_s'] for r in runs)
    cpu = statistics.median(r.get('cpu_s', float('nan')) for r in runs)
    peak = statistics.median(r['peak_gib'] for r in runs)
    verdict = '; '.join(runs[0]['lines'])[:160].replace('|', '/')
    lines.append(f"| {name} | {wall:.1f} | {cpu:.1f} | {peak:.2f} | "
                 f"{runs[0]['exit']} | {verdict} |")
  return '\n'.join(lines) + '\n'


def main(argv):
  del argv
  if FLAGS.hs_render:
    with open(os.path.join(FLAGS.hs_out, 'hostile_scan.json')) as f:
      results = json.load(f)
    with open(os.path.join(FLAGS.hs_out, 'hostile_scan.md'), 'w') as f:
      f.write(render_markdown(results))
    return
  export_dir = _export(FLAGS.hs_work_dir)
  python = sys.executable
  contenders = {
      'import': [python, '-c', _IMPORT],
      'scan': [python, '-c', _SCAN, export_dir],
      'inspect': [python, '-m', 'multimode_export', 'inspect', export_dir],
      'verify': [python, '-m', 'multimode_export', 'verify',
                 f'--timeout={FLAGS.hs_timeout:g}', export_dir],
      'verify_capped': [python, '-m', 'multimode_export', 'verify',
                        f'--timeout={FLAGS.hs_timeout:g}',
                        f'--max_load_gib={_CAPPED_GIB:g}', export_dir],
  }
  json_path = os.path.join(FLAGS.hs_out or '', 'hostile_scan.json')
  runs = {}
  if FLAGS.hs_out and os.path.exists(json_path):
    with open(json_path) as f:
      runs = json.load(f)['runs']
  for name in FLAGS.hs_contenders:
    runs[name] = []
  for _ in range(FLAGS.hs_repeats):
    for name in FLAGS.hs_contenders:
      runs[name].append(_measure(contenders[name]))
      print(name, runs[name][-1], flush=True)
  runs = {name: runs[name] for name in contenders if name in runs}
  results = {
      'no_ops': FLAGS.hs_no_ops, 'repeats': FLAGS.hs_repeats,
      'pb_bytes': os.path.getsize(os.path.join(export_dir, 'saved_model.pb')),
      'machine': f'{platform.machine()}, {os.cpu_count()} cores, '
                 f'load average {os.getloadavg()[0]:.1f} at the end',
      'timeout': FLAGS.hs_timeout, 'runs': runs}
  if FLAGS.hs_out:
    os.makedirs(FLAGS.hs_out, exist_ok=True)
    with open(json_path, 'w') as f:
      json.dump(results, f, indent=1)
    with open(os.path.join(FLAGS.hs_out, 'hostile_scan.md'), 'w') as f:
      f.write(render_markdown(results))
  print(render_markdown(results))


if __name__ == '__main__':
  app.run(main)
