"""Two setup mistakes of MultiWorkerMirroredStrategy jobs, told early.

Measured with TensorFlow 2.15 and `tf.estimator.train_and_evaluate` on
real clusters of separate processes: with
`RunConfig(train_distribute=tf.distribute.MultiWorkerMirroredStrategy())`

* every task must call `tf.compat.v1.disable_eager_execution()` first, else
  the evaluator fails ("MultiWorkerMirroredStrategy cannot be deep copied in
  eager mode"), while chief and worker train;
* the evaluator must be listed in `TF_CONFIG`'s cluster, else creating the
  strategy on the evaluator fails (`KeyError: 'evaluator'` in
  `multi_worker_util.worker_count`).

(`tf.compat.v1.distribute.experimental.ParameterServerStrategy` exported
correctly with neither setting, and plain between-graph training needs
neither.) Both failures happen before the first evaluation, so the exporter
is never called; and the exporter never sees the `RunConfig` before that.
What it sees when it is constructed is `TF_CONFIG` and the eager state: it
logs a warning saying what to set when they look like either mistake.
"""

import json
import os
from typing import List, Mapping, Optional

import tensorflow as tf
from absl import logging

_EVALUATOR = 'evaluator'

EAGER_ON = (
    "TF_CONFIG describes a cluster and eager execution is on: with "
    "MultiWorkerMirroredStrategy call "
    "tf.compat.v1.disable_eager_execution() first thing in every task, else "
    "the evaluator fails ('... cannot be deep copied in eager mode') before "
    "any export")
EVALUATOR_NOT_IN_CLUSTER = (
    "this task is the evaluator and TF_CONFIG's cluster has no 'evaluator' "
    "job (jobs {jobs}): with MultiWorkerMirroredStrategy list it, e.g. "
    "\"evaluator\": [\"host:port\"], else creating the strategy fails with "
    "KeyError: 'evaluator'")


def read_tf_config(environ: Optional[Mapping[str, str]] = None) -> dict:
  """`TF_CONFIG` parsed, or {} when unset or not a JSON object."""
  text = (os.environ if environ is None else environ).get('TF_CONFIG', '')
  try:
    config = json.loads(text) if text else {}
  except ValueError:
    return {}  # RunConfig reports a malformed TF_CONFIG itself
  return config if isinstance(config, dict) else {}


def setup_problems(tf_config: Mapping[str, object],
                   executing_eagerly: bool) -> List[str]:
  """The warnings for a task with `tf_config` and this eager state.

  Args:
    tf_config: the parsed `TF_CONFIG`.
    executing_eagerly: whether eager execution is on.

  Returns:
    `EAGER_ON` and/or `EVALUATOR_NOT_IN_CLUSTER` (filled in), or [].
  """
  cluster = tf_config.get('cluster')
  if not isinstance(cluster, dict) or not cluster:
    return []
  task = tf_config.get('task')
  task_type = task.get('type') if isinstance(task, dict) else None
  problems = []
  if executing_eagerly:
    problems.append(EAGER_ON)
  if task_type == _EVALUATOR and _EVALUATOR not in cluster:
    problems.append(EVALUATOR_NOT_IN_CLUSTER.format(jobs=sorted(cluster)))
  return problems


def warn_about_setup(exporter_name: str) -> List[str]:
  """Logs a warning per `setup_problems` of this process; returns them."""
  problems = setup_problems(read_tf_config(), tf.executing_eagerly())
  for problem in problems:
    logging.warning('Exporter %r: %s (docs/distributed.md).', exporter_name,
                    problem)
  return problems
