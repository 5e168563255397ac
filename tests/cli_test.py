"""The command line, run for real: the installed console script and -m.

The package is pip-installed (no dependencies, no index) into a temporary
prefix, so `multimode-export` is the script pip generates from setup.py's
entry point and imports the installed copy, not the source tree.
`python -m multimode_export` runs from the source tree. Every run is a
subprocess with its own TensorFlow.
"""

# bazel-data: //:setup.py //:README.md //:multimode_export_cli.py //multimode_export:sources

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
import sysconfig

import tensorflow as tf
from absl import app
from absl import flags
from absl.testing import absltest
from absl.testing import flagsaver

import multimode_export
import multimode_export_cli
from multimode_export.checks import _inspection as inspection
from multimode_export.integration import _cli as cli
from testing import crafted
from testing import faults
from testing import models
from testing import receiver_fns
SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _install(prefix: str) -> str:
  """pip-installs a copy of the sources under `prefix`; returns site-packages.

  A copy, because setuptools would leave build/ and *.egg-info/ in the
  source tree, and a stale build/lib would be installed with it.
  """
  source = os.path.join(os.path.dirname(prefix), 'source')
  # The package under test: the checkout's, or the installed wheel's when
  # the suite runs from outside the source tree.
  shutil.copytree(os.path.dirname(multimode_export.__file__),
                  os.path.join(source, 'multimode_export'),
                  ignore=shutil.ignore_patterns('__pycache__', 'BUILD'))
  shutil.copy(multimode_export_cli.__file__, source)
  for name in ('setup.py', 'README.md'):
    shutil.copy(os.path.join(SOURCE_ROOT, name), source)
  subprocess.run(
      # --ignore-installed: never uninstall the copy the venv already has
      # (e.g. the editable install the README's command makes).
      [sys.executable, '-m', 'pip', 'install', '--quiet', '--no-deps',
       '--no-index', '--no-build-isolation', '--ignore-installed',
       '--prefix', prefix, source],
      check=True, capture_output=True, cwd=os.path.dirname(prefix))
  return sysconfig.get_path('purelib', vars={'base': prefix,
                                             'platbase': prefix})


class CliTest(models.ClassRootMixin, tf.test.TestCase):
  """Each command runs once, in setUpClass; the tests check the results.

  After the demo (whose export the others use), the runs are started
  together: each is mostly a TensorFlow import.
  """

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    prefix = os.path.join(cls.root, 'prefix')
    # (command, PYTHONPATH): the installed script, and -m from the source.
    script = ([os.path.join(prefix, 'bin', 'multimode-export')],
              _install(prefix))
    module = ([sys.executable, '-m', 'multimode_export'], SOURCE_ROOT)

    # As a user who has not set TF_CPP_MIN_LOG_LEVEL runs it.
    env = {k: v for k, v in os.environ.items() if k != 'TF_CPP_MIN_LOG_LEVEL'}

    def start(how, args):
      command, pythonpath = how
      return subprocess.Popen(
          command + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
          text=True, env=dict(env, PYTHONPATH=pythonpath), cwd=cls.root)

    cls.demo = _finish(start(script, ['demo', '--export_dir_base',
                                      os.path.join(cls.root, 'demo')]))
    match = re.search(r'^Wrote (\S+)$', cls.demo.stdout, re.M)
    cls.export = match.group(1) if match else os.path.join(cls.root, 'none')
    cls.broken = os.path.join(cls.root, 'broken')
    if match:
      shutil.copytree(cls.export, cls.broken)
      faults.truncate_variables_data(cls.broken, keep_fraction=0.3)
    cls.missing = os.path.join(cls.root, 'missing')
    cls.per_mode = os.path.join(cls.root, 'per_mode')
    multimode_export.export_saved_models_per_mode(
        models.train_custom(os.path.join(cls.root, 'model'), steps=1),
        cls.per_mode, receiver_fns.receiver_map())
    cls.runs = {
        'verify_base': start(script, ['verify', os.path.join(cls.root,
                                                             'demo')]),
        'verify_per_mode': start(script, ['verify', cls.per_mode]),
        'verify': start(module, ['verify', cls.export]),
        'verify_broken': start(module, ['verify', cls.broken]),
        'inspect_missing': start(module, ['inspect', cls.missing]),
        'help': start(script, ['--help']),
        'unknown_command': start(script, ['frob']),
    }

  @classmethod
  def tearDownClass(cls):
    for process in cls.runs.values():
      if process.poll() is None:
        process.kill()
      process.communicate()
    super().tearDownClass()

  def _result(self, name):
    result = _finish(self.runs[name])
    self.assertNotIn('Traceback', result.stderr + result.stdout)
    return result

  def test_demo_trains_exports_inspects_and_verifies(self):
    self.assertEqual(self.demo.returncode, 0, self.demo.stderr)
    self.assertNotIn('Traceback', self.demo.stderr)
    self.assertEqual(os.path.dirname(self.export),
                     os.path.join(self.root, 'demo'))
    out = self.demo.stdout
    self.assertIn('Training a linear model on 256 made-up examples', out)
    self.assertIn(inspection.inspect(self.export), out)
    self.assertRegex(out, r'PASSED: all \d+ checks of ' + re.escape(
        self.export))
    # verify's losses come from synthetic inputs: the demo says so.
    self.assertIn("verify's losses come from synthetic inputs", out)
    self.assertIn("on synthetic inputs of 'train', loss", out)

  def test_console_script_is_quiet_by_default(self):
    # No TensorFlow C++ (I/W lines) or Python INFO/WARNING logs.
    for result in (self.demo, self._result('help')):
      self.assertNotRegex(result.stderr, r'(?m)^\S+ \S+: [IW] tensorflow/')
      self.assertNotIn('WARNING', result.stderr)
      self.assertNotIn('no default signature', result.stderr)

  def test_inspect_prints_the_table(self):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
      status = cli.main(['multimode-export', 'inspect', self.export])
    self.assertEqual(status, 0)
    self.assertEqual(out.getvalue(), inspection.inspect(self.export) + '\n')

  def test_verify_passes_on_the_demo_export(self):
    result = self._result('verify')
    self.assertEqual(result.returncode, 0, result.stderr)
    self.assertStartsWith(result.stdout, 'PASSED: all ')
    self.assertRegex(result.stdout, r'ok\s+train\s+train_step\s+ran 1 train')

  def test_verify_fails_cleanly_on_truncated_variables(self):
    result = self._result('verify_broken')
    self.assertEqual(result.returncode, 1, result.stderr)
    self.assertStartsWith(result.stdout, 'FAILED: ')
    self.assertRegex(result.stdout,
                     r"FAIL\s+\*\s+variables\s+variable '.+' unreadable")
    self.assertRegex(result.stdout, r'FAIL\s+train\s+tf1_load')

  def test_verify_an_export_base_checks_its_newest_version(self):
    result = self._result('verify_base')
    self.assertEqual(result.returncode, 0, result.stderr)
    self.assertStartsWith(result.stdout, 'PASSED: all ')
    self.assertIn(f' checks of {self.export}\n', result.stdout)
    self.assertRegex(result.stdout, r'ok\s+\*\s+layout\s+shared layout: '
                     r'versions \[\d+\], newest \d+')

  def test_verify_a_per_mode_base_checks_every_mode(self):
    result = self._result('verify_per_mode')
    self.assertEqual(result.returncode, 0, result.stderr)
    self.assertStartsWith(result.stdout,
                          f'PASSED: all {{}} checks of {self.per_mode}'.format(
                              len(result.stdout.splitlines()) - 2))
    for pattern in (r'ok\s+\*\s+layout\s+per-mode layout',
                    r'ok\s+train\s+train/train_step',
                    r'ok\s+eval\s+eval/tf2_signature:eval',
                    r'ok\s+serve\s+serve/tf1_signature:serving_default'):
      self.assertRegex(result.stdout, pattern)

  def test_inspect_a_per_mode_base(self):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
      status = cli.main(['multimode-export', 'inspect', self.per_mode])
    self.assertEqual(status, 0)
    self.assertEqual(out.getvalue(), inspection.inspect(self.per_mode) + '\n')
    for mode_dir in ('train', 'eval', 'serve'):
      self.assertIn(f'== {mode_dir} ==', out.getvalue())

  def test_verify_without_train_step(self):
    out = io.StringIO()
    with flagsaver.flagsaver(run_train_step=False), \
         contextlib.redirect_stdout(out):
      flags.FLAGS['run_train_step'].present = 1
      status = cli.main(['multimode-export', 'verify', self.export])
    self.assertEqual(status, 0, out.getvalue())
    self.assertStartsWith(out.getvalue(), 'PASSED: all ')
    self.assertNotRegex(out.getvalue(), r'train\s+train_step')
    self.assertIn('tf1_signature:train', out.getvalue())

  def test_verify_with_a_memory_budget_skips_loads(self):
    out = io.StringIO()
    with flagsaver.flagsaver(max_load_gib=1e-9), \
         contextlib.redirect_stdout(out):
      flags.FLAGS['max_load_gib'].present = 1
      status = cli.main(['multimode-export', 'verify', self.export])
    self.assertEqual(status, 0, out.getvalue())
    self.assertRegex(out.getvalue(), r'ok\s+\*\s+variables\s+.*crc32c')
    self.assertRegex(out.getvalue(),
                     r'skip\s+train\s+loads\s+not loaded: .*max_load_gib=1e-09')
    self.assertNotIn('tf1_load', out.getvalue())

  def test_error_is_one_line(self):
    result = self._result('inspect_missing')
    self.assertEqual(result.returncode, 1)
    self.assertEqual(result.stdout, '')
    self.assertEqual(
        result.stderr.strip().splitlines()[-1],
        "multimode-export inspect: error: NotASavedModelError: "
        f"'{self.missing}' is not a SavedModel: it does not exist")

  def test_usage_errors_exit_2(self):
    result = self._result('unknown_command')
    self.assertEqual(result.returncode, 2, result.stderr)
    self.assertIn("unknown command 'frob'", result.stderr)
    self.assertIn('Usage:', result.stderr)

  def test_help_documents_every_command_and_flag(self):
    result = self._result('help')
    self.assertEqual(result.returncode, 0, result.stderr)
    for text in ('multimode-export demo', 'multimode-export inspect EXPORT_DIR',
                 'multimode-export verify', '--export_dir_base', '--steps',
                 '--[no]run_train_step', '--max_load_gib',
                 '--allow_ops', 'Exit status: 0'):
      self.assertIn(text, result.stdout)


class MainTest(absltest.TestCase):
  """cli.main in this process: the usage checks, without a subprocess each."""

  USAGE_ERRORS = (
      ([], {}, 'expected a command: demo, inspect, verify, convert'),
      (['frob'], {},
       "unknown command 'frob'; expected one of demo, inspect, verify, convert"),
      (['inspect'], {}, 'inspect: expected EXPORT_DIR, got []'),
      (['verify', 'a', 'b'], {}, "verify: expected EXPORT_DIR, got ['a', 'b']"),
      (['demo', 'x'], {}, "demo: expected no arguments, got ['x']"),
      (['inspect', '/tmp'], {'steps': 3}, '--steps does not apply to inspect'),
      (['verify', '/tmp'], {'export_dir_base': '/tmp'},
       '--export_dir_base does not apply to verify'),
      (['demo'], {'run_train_step': False},
       '--run_train_step does not apply to demo'),
      (['inspect', '/tmp'], {'max_load_gib': 1.0},
       '--max_load_gib does not apply to inspect'),
      (['inspect', '/tmp'], {'allow_ops': ['PrintV2']},
       '--allow_ops does not apply to inspect'),
  )

  def test_usage_errors(self):
    for args, flag_values, message in self.USAGE_ERRORS:
      with self.subTest(args=args, flags=flag_values):
        with flagsaver.flagsaver(**flag_values):
          for name in flag_values:
            flags.FLAGS[name].present = 1  # As if given on the command line.
          with self.assertRaises(app.UsageError) as cm:
            cli.main(['multimode-export'] + args)
        self.assertEqual(cm.exception.exitcode, 2)
        self.assertEqual(str(cm.exception), message)

  def test_bad_flags_exit_2(self):
    for args, message in ((['verify', '--bogus', '/tmp'],
                           "Unknown command line flag 'bogus'"),
                          (['demo', '--steps=0'],
                           '0 is not a positive integer')):
      with self.subTest(args=args):
        err = io.StringIO()
        with flagsaver.flagsaver(), contextlib.redirect_stderr(err):
          with self.assertRaises(SystemExit) as cm:
            cli._parse_flags(['multimode-export'] + args)  # pylint: disable=protected-access
        self.assertEqual(cm.exception.code, 2)
        self.assertIn(message, err.getvalue())
        self.assertIn('Try multimode-export --help.', err.getvalue())

  def test_allow_ops_runs_what_verify_refuses(self):
    root = self.create_tempdir().full_path
    canary = os.path.join(root, 'canary')
    export = crafted.write_file_in_signature(os.path.join(root, 'export'),
                                             canary)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
      status = cli.main(['multimode-export', 'verify', export])
    self.assertEqual(status, 1)
    self.assertIn('--allow_ops=WriteFile', out.getvalue())
    self.assertRegex(out.getvalue(), r'skip\s+serve\s+tf1_load')
    self.assertFalse(os.path.exists(canary))
    with flagsaver.flagsaver(allow_ops=['WriteFile']), \
         contextlib.redirect_stdout(out):
      flags.FLAGS['allow_ops'].present = 1
      status = cli.main(['multimode-export', 'verify', export])
    self.assertEqual(status, 0, out.getvalue())
    self.assertTrue(os.path.exists(canary))

  def test_failed_verification_returns_1(self):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
      status = cli.main(['multimode-export', 'verify',
                         self.create_tempdir().full_path])
    self.assertEqual(status, 1)
    self.assertStartsWith(out.getvalue(), 'FAILED: 1 of 1 checks of ')
    self.assertRegex(out.getvalue(), r'FAIL\s+\*\s+saved_model\s+'
                     r'NotASavedModelError: .* is not a SavedModel')


def _finish(process) -> subprocess.CompletedProcess:
  stdout, stderr = process.communicate(timeout=300)
  return subprocess.CompletedProcess(process.args, process.returncode, stdout,
                                     stderr)


if __name__ == '__main__':
  tf.test.main()
