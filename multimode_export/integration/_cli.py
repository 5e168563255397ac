"""multimode-export: try, inspect, verify and convert multi-mode SavedModels.

Usage:
  multimode-export demo [--export_dir_base=DIR] [--steps=N]
  multimode-export inspect EXPORT_DIR
  multimode-export verify [--norun_train_step] [--max_load_gib=GIB]
                          [--allow_ops=OP,...] [--timeout=SECONDS] EXPORT_DIR
  multimode-export convert EXPORT_DIR OUTPUT_DIR
  (or: python -m multimode_export ...)

Commands:
  demo     Train a tiny linear model on made-up data (no downloads), export
           its train, eval and serve graphs as one SavedModel, print what was
           written (as `inspect` does) and verify it (as `verify` does).
  inspect  Print every tag set of a SavedModel: signatures with input and
           output names, dtypes and shapes, method names; the train op, main
           op and assets; the variables (count, bytes, which MetaGraphDefs
           restore which), and what verify's scan would refuse. Reads
           files only; loads and runs nothing.
  verify   Scan every tag set, without running it: ops not on the list of
           ops that act only in memory, paths leaving the export, sizes
           that do not match what is stored, ambiguous tag sets (refused
           unless --allow_ops names the op); then, in a child process with
           --timeout seconds per check and a memory cap, load every tag set
           with the TF1 loader and with tf.saved_model.load(tags=...),
           check the variables each saver restores, run every signature on
           synthetic inputs and one train step, and print a report with one
           line per check. Every tensor's crc32c is checked in one
           bounded-memory pass; with --max_load_gib a tag set whose
           variables take more is not loaded (reported as skipped), and the
           child's memory cap is 2 GiB plus 3 times that.
  convert  Write one TF2 SavedModel at OUTPUT_DIR (which must not exist, or
           be empty) that loads without tags in TensorFlow 2.16+ and Keras 3:
           every serving signature (method names kept), train_step,
           eval_update/eval_result/eval_reset for the modes the export has,
           one set of variables, its own assets (docs/leaving-estimator.md).

EXPORT_DIR is a SavedModel directory, or an export base or per-mode export
(see docs/layouts.md): a base of numbered versions shows the newest; a
per-mode base (<base>/{train,eval,serve}/<version>) every mode of the newest
complete version; a per-mode export_dir= every mode. Per-mode verify checks
are named <mode dir>/<check>.

Exit status: 0 on success (verify: every check passed, and the report,
starting PASSED, was printed); 1 when verification fails (with the report)
or on an error (one line on stderr); 2 on bad usage.
Quiet by default: --verbosity=0 shows TensorFlow's INFO and WARNING logs
(the console script then leaves TF_CPP_MIN_LOG_LEVEL alone), --verbosity=1
also debug logs, including tracebacks of errors.
"""

import sys
from typing import List, Sequence

import tensorflow as tf
from absl import app
from absl import flags
from absl import logging

from multimode_export.checks import _inspection as inspection
from multimode_export.checks import _load_budget as load_budget
from multimode_export.checks import _verification as verification
from multimode_export.integration import _demo as demo
from multimode_export.tf2 import _convert as convert

PROGRAM = 'multimode-export'

_EXPORT_DIR_BASE = flags.DEFINE_string(
    'export_dir_base', None,
    'demo: directory in which the export version is created (default: a new '
    'temporary directory).')
_STEPS = flags.DEFINE_integer(
    'steps', demo.DEFAULT_STEPS, 'demo: training steps.', lower_bound=1)
_ALLOW_OPS = flags.DEFINE_list(
    'allow_ops', [],
    'verify: op types to run although they act outside the export or are '
    'not on its list of ops that act only in memory (e.g. PrintV2,WriteFile). '
    'Only for exports you trust: by default verify refuses them and loads '
    'nothing of a tag set that has one.')
_RUN_TRAIN_STEP = flags.DEFINE_boolean(
    'run_train_step', True,
    'verify: run one step of each train op (in memory; the export is not '
    'changed). --norun_train_step skips it.')
_MAX_LOAD_GIB = flags.DEFINE_float(
    'max_load_gib', None,
    'verify: do not load a tag set whose variables take more GiB than this '
    '(its checks are reported as skipped; every crc32c is still checked). '
    'The process loading tag sets may then hold 2 GiB plus 3 times this '
    "(default: 80% of the machine's memory).")
_TIMEOUT = flags.DEFINE_float(
    'timeout', load_budget.DEFAULT_TIMEOUT,
    'verify: seconds each load, signature run or train step may take; one '
    'that takes longer fails and its process is killed.', lower_bound=0.001)

# Which flags each command accepts, and how many positional arguments.
_COMMAND_FLAGS = {
    'demo': ('export_dir_base', 'steps'),
    'inspect': (),
    'verify': ('run_train_step', 'max_load_gib', 'allow_ops', 'timeout'),
    'convert': (),
}
_COMMAND_ARGS = {'demo': (), 'inspect': ('EXPORT_DIR',),
                 'verify': ('EXPORT_DIR',),
                 'convert': ('EXPORT_DIR', 'OUTPUT_DIR')}
_HELP_ARGS = ('-h', '--help', '-help', '-?', '--helpshort')
_OUR_FLAGS = ('export_dir_base', 'steps', 'run_train_step', 'max_load_gib',
              'allow_ops', 'timeout')


def _check_usage(argv: Sequence[str]) -> None:
  """Raises app.UsageError unless argv is one valid command invocation."""
  if len(argv) < 2:
    raise app.UsageError(
        f'expected a command: {", ".join(_COMMAND_FLAGS)}', exitcode=2)
  command, args = argv[1], argv[2:]
  if command not in _COMMAND_FLAGS:
    raise app.UsageError(
        f'unknown command {command!r}; expected one of '
        f'{", ".join(_COMMAND_FLAGS)}', exitcode=2)
  expected = _COMMAND_ARGS[command]
  if len(args) != len(expected):
    raise app.UsageError(
        f'{command}: expected {" ".join(expected) or "no arguments"}, got '
        f'{list(args)}', exitcode=2)
  for name in _OUR_FLAGS:
    if flags.FLAGS[name].present and name not in _COMMAND_FLAGS[command]:
      raise app.UsageError(f'--{name} does not apply to {command}',
                           exitcode=2)


def _demo() -> int:
  result = demo.run_demo(_EXPORT_DIR_BASE.value, steps=_STEPS.value,
                         progress=print)
  print()
  print(result.summary)
  print()
  print(result.report)
  print()
  print(f'The eval loss {result.loss:.4g} above is the trained model on the '
        "demo's data; verify's losses come from synthetic inputs (zeros, "
        "empty strings), so they say the graphs run, not how well the model "
        'fits.')
  return 0 if result.report.ok else 1


def _inspect(export_dir: str) -> int:
  print(inspection.inspect(export_dir))
  return 0


def _verify(export_dir: str) -> int:
  report = verification.verify(export_dir,
                               run_train_step=_RUN_TRAIN_STEP.value,
                               max_load_gib=_MAX_LOAD_GIB.value,
                               allow_ops=_ALLOW_OPS.value,
                               timeout=_TIMEOUT.value)
  print(report, flush=True)
  # 0 only for a report that says PASSED, printed in full.
  return 0 if report.ok and str(report).startswith('PASSED') else 1


def _convert(export_dir: str, output_dir: str) -> int:
  print(convert.convert_to_tf2(export_dir, output_dir))
  return 0


def main(argv: List[str]) -> int:
  """Runs one command; returns the exit status."""
  _check_usage(argv)
  if not flags.FLAGS['verbosity'].present:
    # The printed report is the output; per-check INFO logs, and
    # TensorFlow's deprecation warnings about the TF1 APIs an Estimator uses,
    # only on request (--verbosity).
    logging.set_verbosity(logging.WARNING)
    tf.get_logger().setLevel('ERROR')
  command, args = argv[1], argv[2:]
  try:
    if command == 'demo':
      return _demo()
    if command == 'inspect':
      return _inspect(*args)
    if command == 'convert':
      return _convert(*args)
    return _verify(*args)
  except Exception as e:  # pylint: disable=broad-except
    # One clear line instead of a traceback; --verbosity=1 shows it.
    logging.debug('%s failed', command, exc_info=True)
    message = e.message if isinstance(e, tf.errors.OpError) else str(e)
    print(f'{PROGRAM} {command}: error: {type(e).__name__}: {message}',
          file=sys.stderr)
    return 1


def _set_usage_text(text: str) -> None:
  # absl's usage() prints __main__'s docstring; for a console script that is
  # the generated wrapper (for `python -m`, __main__.py), so put ours there.
  sys.modules['__main__'].__doc__ = text


def _print_help(full: bool) -> None:
  _set_usage_text(__doc__)
  app.usage(shorthelp=not full, writeto_stdout=True)


def _parse_flags(argv: List[str]) -> List[str]:
  """Parses flags; bad flags exit 2, --help prints the usage and exits 0."""
  before_separator = argv[1:argv.index('--')] if '--' in argv else argv[1:]
  if any(a in _HELP_ARGS for a in before_separator):
    _print_help(full=False)
    sys.exit(0)
  if '--helpfull' in before_separator:
    _print_help(full=True)
    sys.exit(0)
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    print(f'{PROGRAM}: error: {e}\nTry {PROGRAM} --help.', file=sys.stderr)
    sys.exit(2)


def run() -> None:
  """The `multimode-export` console script."""
  # A usage error prints the synopsis, the flags and the error, on stderr.
  _set_usage_text(__doc__.split('\n\nCommands:')[0] + '\n')
  for name in _OUR_FLAGS:
    # Listed by --help, which shows the main module's key flags.
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[name])
  app.run(main, flags_parser=_parse_flags)
