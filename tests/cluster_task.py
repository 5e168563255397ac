"""One task of the real multi-process cluster started by cluster_test.py.

The task's role comes from TF_CONFIG (chief, worker, ps or evaluator); every
task runs the same `tf.estimator.train_and_evaluate` call, as a real job
would. Plain tf.estimator with TF_CONFIG trains by between-graph replication:
`RunConfig` gives the model_fn a `replica_device_setter`, so each partition
of the embedding lives on a parameter server. The evaluator exports through
a `MultiModeExporter` and records every call in `--record_file`.

Training is paced to the evaluator (`PaceHook`) so that every checkpoint is
evaluated and exported and the test does not depend on machine speed.
"""

import json
import os
import sys
import time

from absl import app
from absl import flags
from absl import logging
import tensorflow as tf

from testing import datasets
from testing import models
from testing import receiver_fns
_MODEL_DIR = flags.DEFINE_string('model_dir', None, 'Model directory.',
                                 required=True)
_RECORD_FILE = flags.DEFINE_string('record_file', None,
                                   "JSON lines: the evaluator's export calls.",
                                   required=True)
_MAX_STEPS = flags.DEFINE_integer('max_steps', 60, 'Training steps.')
_SAVE_STEPS = flags.DEFINE_integer('save_steps', 10, 'Checkpoint every N.')
_EXPORTS_TO_KEEP = flags.DEFINE_integer('exports_to_keep', 2,
                                        'MultiModeExporter exports_to_keep.')
_PACE_TIMEOUT = flags.DEFINE_float(
    'pace_timeout', 60.0, 'Longest wait of a trainer for the evaluator.')
_EXPORTER_NAME = flags.DEFINE_string('exporter_name', 'multimode',
                                     'MultiModeExporter name.')
_EXPORT_DIR_BASE = flags.DEFINE_string('export_dir_base', None,
                                       'MultiModeExporter export_dir_base.')


def _exported_step(record_file: str) -> int:
  steps = [r['global_step'] for r in models.read_records(record_file)]
  return max(steps, default=0)


class PaceHook(tf.compat.v1.train.SessionRunHook):
  """Holds a trainer back until the evaluator has exported recent checkpoints.

  Before each step, a trainer whose last seen global step is more than
  `save_steps + slack` past the newest exported checkpoint waits (at most
  `timeout` seconds). The wait is in `before_run`, so the chief's
  CheckpointSaverHook has already saved for the previous step.
  """

  def __init__(self, record_file, save_steps, timeout, slack=5,
               wait_for_file=None):
    self._record_file = record_file
    self._save_steps = save_steps
    self._ahead = save_steps + slack
    self._timeout = timeout
    self._wait_for_file = wait_for_file
    self._global_step = None
    self._last = None
    self.steps = 0

  def begin(self):
    self._global_step = tf.compat.v1.train.get_global_step()

  def _wait(self, condition):
    deadline = time.time() + self._timeout
    while not condition() and time.time() < deadline:
      time.sleep(0.05)

  def before_run(self, run_context):
    if self._last is not None:
      self._wait(lambda: self._last < (_exported_step(self._record_file) +
                                       self._ahead))
      if self._wait_for_file and self._last >= 2 * self._save_steps:
        # The chief lets the worker join before training much further, so
        # both trainers really share the job whatever the machine's load.
        self._wait(lambda: os.path.exists(self._wait_for_file))
    return tf.compat.v1.train.SessionRunArgs(self._global_step)

  def after_run(self, run_context, run_values):
    self._last = int(run_values.results)
    self.steps += 1


class TaskReportHook(tf.compat.v1.train.SessionRunHook):
  """Marks the session started; at the end writes devices and step count."""

  def __init__(self, path, pace_hook):
    self._path = path
    self._pace = pace_hook
    self._devices = {}

  def begin(self):
    self._devices = {v.op.name: v.device
                     for v in tf.compat.v1.global_variables()}

  def after_create_session(self, session, coord):
    with open(self._path + '.started', 'w') as f:
      f.write('started')

  def end(self, session):
    with open(self._path, 'w') as f:
      json.dump({'devices': self._devices, 'steps': self._pace.steps}, f)


def main(argv):
  del argv
  on_s3 = (_EXPORT_DIR_BASE.value or '').startswith('s3://')
  if on_s3:
    import tensorflow_io  # pylint: disable=g-import-not-at-top,unused-import
  config = tf.estimator.RunConfig(
      model_dir=_MODEL_DIR.value, tf_random_seed=1,
      save_checkpoints_steps=_SAVE_STEPS.value, keep_checkpoint_max=100,
      experimental_max_worker_delay_secs=0)
  task = f'{config.task_type}-{config.task_id}'
  logging.info('Task %s starting', task)
  estimator = tf.estimator.Estimator(models.embedding_model_fn, config=config,
                                     params={'partitions': 2})
  exporter = models.RecordingExporter(
      _EXPORTER_NAME.value, receiver_fns.id_receiver_map(),
      exports_to_keep=_EXPORTS_TO_KEEP.value, record_file=_RECORD_FILE.value,
      export_dir_base=_EXPORT_DIR_BASE.value)
  worker_started = os.path.join(_MODEL_DIR.value, 'task-worker-0.json.started')
  pace = PaceHook(_RECORD_FILE.value, _SAVE_STEPS.value, _PACE_TIMEOUT.value,
                  wait_for_file=(worker_started if config.task_type == 'chief'
                                 else None))
  report = TaskReportHook(
      os.path.join(_MODEL_DIR.value, f'task-{task}.json'), pace)
  tf.estimator.train_and_evaluate(
      estimator,
      tf.estimator.TrainSpec(datasets.id_input_fn(), max_steps=_MAX_STEPS.value,
                             hooks=[pace, report]),
      tf.estimator.EvalSpec(datasets.id_input_fn(seed=1), steps=2,
                            exporters=[exporter], start_delay_secs=0,
                            throttle_secs=1))
  print(f'task {task} done', flush=True)
  if on_s3:
    # tensorflow-io's s3:// aborts the interpreter's exit: close the event
    # writers, then end now (docs/object-stores.md).
    tf.compat.v1.summary.FileWriterCache.clear()
    sys.stderr.flush()
    os._exit(0)  # pylint: disable=protected-access


if __name__ == '__main__':
  app.run(main)
