"""One task of a cluster trained with a tf.distribute strategy (strategy_cluster_test.py).

Every task runs the same `tf.estimator.train_and_evaluate` call, with its
role from TF_CONFIG and `RunConfig(train_distribute=...)`:

* `--strategy=mwms`: `tf.distribute.MultiWorkerMirroredStrategy` (chief,
  worker and evaluator; synchronous all-reduce of the gradients);
* `--strategy=ps`: `tf.compat.v1.distribute.experimental.ParameterServerStrategy`
  (chief, worker, parameter servers and evaluator; asynchronous updates of
  variables on the parameter servers, the embedding partitioned over them).

As a distributed Estimator job must, each task turns eager execution off
before anything else (`--eager` leaves it on, to show the exporter's early
error). The evaluator exports through a `MultiModeExporter` and records every
call in `--record_file`, with the global step stored in the checkpoint.
"""

import json
import os
import time

from absl import app
from absl import flags
import tensorflow as tf

from testing import datasets
from testing import models
from testing import receiver_fns

_MODEL_DIR = flags.DEFINE_string('model_dir', None, 'Model directory.',
                                 required=True)
_RECORD_FILE = flags.DEFINE_string('record_file', None,
                                   "JSON lines: the evaluator's export calls.",
                                   required=True)
_STRATEGY = flags.DEFINE_enum('strategy', 'mwms', ['mwms', 'ps'],
                              'The train_distribute strategy.')
_MAX_STEPS = flags.DEFINE_integer('max_steps', 20, 'Training steps.')
_SAVE_STEPS = flags.DEFINE_integer('save_steps', 10, 'Checkpoint every N.')
_EXPORT_DIR_BASE = flags.DEFINE_string('export_dir_base', None,
                                       'MultiModeExporter export_dir_base.')
_EAGER = flags.DEFINE_bool('eager', False,
                           'Leave eager execution on (a mistake).')
_STARTED_DIR = flags.DEFINE_string(
    'started_dir', None, 'Trainers count their steps here; the chief waits '
    'for the worker before its second step, so both really train.')
_WAIT_SECONDS = 60.0
_STEP_PAUSE_SECONDS = 0.02


def _wait_for(path: str) -> None:
  deadline = time.time() + _WAIT_SECONDS
  while not os.path.exists(path) and time.time() < deadline:
    time.sleep(0.05)


class JoinHook(tf.compat.v1.train.SessionRunHook):
  """Makes both trainers really train: the chief waits (at most
  `_WAIT_SECONDS`) before its second step until the worker has run one, and
  each trainer pauses `_STEP_PAUSE_SECONDS` after a step, so that under
  asynchronous PS training their steps interleave. Keeps the number of steps
  this trainer ran in `<started_dir>/<task>.steps` (not in `end()`: the
  strategies' training ends without calling it)."""

  def __init__(self, task: str, started_dir: str):
    self._steps_file = os.path.join(started_dir, task + '.steps')
    self._worker_steps_file = os.path.join(started_dir, 'worker-0.steps')
    self._is_chief = task == 'chief-0'
    self._steps = 0

  def before_run(self, run_context):
    if self._is_chief and self._steps == 1:
      _wait_for(self._worker_steps_file)

  def after_run(self, run_context, run_values):
    self._steps += 1
    with open(self._steps_file, 'w') as f:
      f.write(str(self._steps))
    time.sleep(_STEP_PAUSE_SECONDS)


class StepRecordingExporter(models.RecordingExporter):
  """Records each call in `step_record_file` with the global step stored in
  the exported checkpoint, which under asynchronous training can be past the
  step in its file name."""

  def __init__(self, *args, step_record_file: str, **kwargs):
    super().__init__(*args, **kwargs)
    self._step_record_file = step_record_file

  def export(self, estimator, export_path, checkpoint_path, eval_result,
             is_the_final_export):
    path = super().export(estimator, export_path, checkpoint_path,
                          eval_result, is_the_final_export)
    call = dict(self.calls[-1], stored_step=int(tf.train.load_variable(
        checkpoint_path, 'global_step')))
    with open(self._step_record_file, 'a') as f:
      f.write(json.dumps(call) + '\n')
    return path


def _strategy():
  if _STRATEGY.value == 'mwms':
    return tf.distribute.MultiWorkerMirroredStrategy()
  return tf.compat.v1.distribute.experimental.ParameterServerStrategy()


def main(argv):
  del argv
  if not _EAGER.value:
    tf.compat.v1.disable_eager_execution()
  # The exporter first: it warns about a setup the strategy would fail on.
  exporter = StepRecordingExporter(
      'multimode', receiver_fns.id_receiver_map(), exports_to_keep=2,
      step_record_file=_RECORD_FILE.value,
      export_dir_base=_EXPORT_DIR_BASE.value)
  config = tf.estimator.RunConfig(
      model_dir=_MODEL_DIR.value, tf_random_seed=1,
      train_distribute=_strategy(), save_checkpoints_steps=_SAVE_STEPS.value,
      keep_checkpoint_max=100, experimental_max_worker_delay_secs=0)
  estimator = tf.estimator.Estimator(
      models.embedding_model_fn, config=config,
      params={'partitions': 2 if _STRATEGY.value == 'ps' else 1})
  # From TF_CONFIG: with train_distribute, `config.task_type` is 'worker'
  # (id 0) on every task.
  task_env = json.loads(os.environ['TF_CONFIG'])['task']
  task = f"{task_env['type']}-{task_env['index']}"
  hooks = [JoinHook(task, _STARTED_DIR.value)] if _STARTED_DIR.value else []
  if _STRATEGY.value == 'ps' and task == 'worker-0' and _STARTED_DIR.value:
    # A PS worker that asks before the chief has initialized the variables
    # polls again only 30 s later: it waits for the chief's session here,
    # with TensorFlow already imported.
    _wait_for(os.path.join(_STARTED_DIR.value, 'chief-0.steps'))
  tf.estimator.train_and_evaluate(
      estimator,
      tf.estimator.TrainSpec(datasets.id_input_fn(), max_steps=_MAX_STEPS.value,
                             hooks=hooks),
      tf.estimator.EvalSpec(datasets.id_input_fn(seed=1), steps=2,
                            exporters=[exporter], start_delay_secs=0,
                            throttle_secs=1))
  print(f'task {task} done', flush=True)


if __name__ == '__main__':
  app.run(main)
