"""Previous evaluation results, read back from the evaluator's event files.

`Estimator.evaluate` writes each evaluation's metrics as one summary event
(scalars as `simple_value`, the event's `step` being the global step) into
`<model_dir>/eval/` (`eval_<name>/` for a named EvalSpec). A best-model
exporter reads them when it starts, so that its memory of the best result
survives a restart of the job.
"""

import dataclasses
from typing import Callable, Dict, List, Mapping, Optional

import numpy as np
import tensorflow as tf
from absl import logging

from multimode_export import _filesystem as filesystem

CompareFn = Callable[..., bool]
GLOBAL_STEP_KEY = tf.compat.v1.GraphKeys.GLOBAL_STEP


@dataclasses.dataclass(frozen=True)
class EvalEvent:
  """One evaluation's scalar metrics as written to an event file.

  Attributes:
    step: the global step the evaluated checkpoint was saved at.
    wall_time: when the event was written (seconds since the epoch).
    metrics: metric name -> value; `global_step` included.
  """
  step: int
  wall_time: float
  metrics: Dict[str, float]


def read_events(pattern: str) -> List[EvalEvent]:
  """All evaluation events in the files matching `pattern`, oldest first.

  A file's unreadable tail (a writer still appending, a preempted job) ends
  that file's events; what was read before it is kept.
  """
  events = []
  for path in sorted(tf.io.gfile.glob(pattern)):
    try:
      for event in tf.compat.v1.train.summary_iterator(path):
        if not event.HasField('summary'):
          continue
        metrics = {v.tag: float(v.simple_value) for v in event.summary.value
                   if v.HasField('simple_value')}
        if metrics:
          metrics.setdefault(GLOBAL_STEP_KEY, float(event.step))
          events.append(EvalEvent(int(event.step), event.wall_time, metrics))
    except tf.errors.DataLossError as e:
      logging.warning('Stopped reading the truncated event file %s: %s',
                      path, e)
  return sorted(events, key=lambda e: e.wall_time)


def _same_result(event: EvalEvent, eval_result: Mapping[str, object]) -> bool:
  for key, value in event.metrics.items():
    if key not in eval_result:
      continue
    try:
      current = np.float32(eval_result[key])
    except (TypeError, ValueError):
      continue
    if not np.isclose(np.float32(value), current, rtol=1e-6, atol=0.0):
      return False
  return True


def without_current(events: List[EvalEvent],
                    eval_result: Optional[Mapping[str, object]]
                   ) -> List[EvalEvent]:
  """`events` minus the newest one that records `eval_result` itself.

  By the time an exporter runs, the evaluation it is called for has already
  been written to the event file. Comparing the result with itself would
  make a strict `compare_fn` refuse the first export of a fresh job, so that
  one event (same step, same values) is dropped; an identical result of an
  earlier run at the same step stays, and a restarted job then does not
  export the same model a second time.
  """
  if not eval_result or GLOBAL_STEP_KEY not in eval_result:
    return list(events)
  step = int(eval_result[GLOBAL_STEP_KEY])
  for i in range(len(events) - 1, -1, -1):
    if events[i].step == step and _same_result(events[i], eval_result):
      return events[:i] + events[i + 1:]
  return list(events)


def best_of(events: List[EvalEvent], compare_fn: CompareFn
           ) -> Optional[Dict[str, float]]:
  """The best metrics among `events` by `compare_fn`, or None if none.

  An event `compare_fn` cannot judge (it raises `KeyError`, `ValueError` or
  `TypeError`, e.g. a summary without the compared metric) is skipped.
  """
  best = None
  for event in events:
    try:
      # Comparing an event with itself tells whether compare_fn can judge it.
      compare_fn(best_eval_result=event.metrics,
                 current_eval_result=event.metrics)
      if best is None or compare_fn(best_eval_result=best,
                                    current_eval_result=event.metrics):
        best = event.metrics
    except (KeyError, ValueError, TypeError) as e:
      logging.warning('Skipping the eval event at step %d: %s', event.step, e)
  return best


def best_previous_result(model_dir: str, event_file_pattern: str,
                         compare_fn: CompareFn,
                         current: Optional[Mapping[str, object]] = None
                        ) -> Optional[Dict[str, float]]:
  """The best result of the evaluations before `current` in `model_dir`.

  Args:
    model_dir: the estimator's model directory.
    event_file_pattern: glob relative to `model_dir`, e.g.
      'eval/*.tfevents.*'.
    compare_fn: `compare_fn(best_eval_result, current_eval_result) -> bool`.
    current: the evaluation the exporter is being called for, whose own
      event is left out.

  Returns:
    A metrics dict, or None when there is no previous evaluation.
  """
  pattern = filesystem.join(filesystem.as_str(model_dir), event_file_pattern)
  events = without_current(read_events(pattern), current)
  logging.info('Read %d previous evaluation(s) from %s', len(events), pattern)
  return best_of(events, compare_fn)
