"""`MultiModeExporter`: multi-mode exports from `tf.estimator.train_and_evaluate`.

    exporter = multimode_export.MultiModeExporter(
        'multimode', {ModeKeys.TRAIN: train_receiver_fn,
                      ModeKeys.EVAL: eval_receiver_fn,
                      ModeKeys.PREDICT: serving_receiver_fn},
        exports_to_keep=3)
    tf.estimator.train_and_evaluate(
        estimator, train_spec,
        tf.estimator.EvalSpec(eval_input_fn, exporters=[exporter]))

After each evaluation the exporter writes one SavedModel holding every
requested mode to `<model_dir>/export/<name>/<version>`, like the stock
`LatestExporter`, then deletes its own oldest exports beyond
`exports_to_keep` (see `publishing/_gc`). With a `compare_fn` it behaves like the
stock `BestExporter`: it exports only an evaluation better than every one
before it, including those of earlier runs of the job, read from the event
files (see `eval_history`).

With `layout='per_mode'` each export is instead one SavedModel per mode
(`export_saved_models_per_mode`), under
`<model_dir>/export/<name>/{train,eval,serve}/<version>`, and garbage
collection keeps the newest `exports_to_keep` versions across the mode
directories (`publishing/_gc.collect_per_mode`).

With `export_dir_base` (any `tf.io.gfile` filesystem) the versions go
directly under it instead, as `export_all_saved_models` publishes them, e.g.
checkpoints on local disk and exports in the model server's `s3://` bucket;
garbage collection runs there, best mode still reads `model_dir`'s event
files. The arguments only the exporter uses are validated into an
`ExporterSettings` (`_exporter_settings`).

Which task exports (`is_exporting_task`): the evaluator (task 0), or, in a
job without a cluster, the single process; in a training cluster only the
chief/master. Workers and parameter servers never export, whoever calls them.
"""

import abc
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

import tensorflow as tf
from absl import logging

from multimode_export import _export as export_lib
from multimode_export import _filesystem as filesystem
from multimode_export import _options
from multimode_export import _per_mode as per_mode
from multimode_export import _plan as plan_lib
from multimode_export import errors
from multimode_export.graph import _modes as modes_lib
from multimode_export.integration import _distribution as distribution
from multimode_export.integration import _eval_history as eval_history
from multimode_export.integration import _exporter_settings as settings_lib
from multimode_export.publishing import _gc as export_gc
from multimode_export.publishing import _layout as layout_lib
from multimode_export.saved_model import _assets_extra as assets_extra_lib

_EVALUATOR = 'evaluator'


def loss_smaller(best_eval_result: Mapping[str, float],
                 current_eval_result: Mapping[str, float]) -> bool:
  """A `compare_fn`: True if the current result's `loss` is smaller.

  Raises:
    ValueError: if either result has no `loss`.
  """
  for argument, result in (('best_eval_result', best_eval_result),
                           ('current_eval_result', current_eval_result)):
    if not result or 'loss' not in result:
      raise ValueError(f"{argument}: expected a dict with a 'loss', got "
                       f'{result!r}')
  return float(current_eval_result['loss']) < float(best_eval_result['loss'])


def is_exporting_task(config: tf.estimator.RunConfig) -> bool:
  """Whether the task described by `config` may write exports.

  The rule, from the RunConfig (filled from `TF_CONFIG`):
  * `evaluator` task 0: yes. It is where `train_and_evaluate` evaluates and
    calls exporters in a distributed job (it has no cluster_spec).
  * no cluster_spec (a single-machine job, `MirroredStrategy` included): yes.
  * in a training cluster: only the chief (`chief`, or `master`, which
    evaluates in-process); never a `worker` or `ps`, so several processes
    of one job never export into the same directory.

  Args:
    config: the estimator's `tf.estimator.RunConfig`.

  Returns:
    True if this task exports.
  """
  if config.task_type == _EVALUATOR:
    return not config.task_id
  if not config.cluster_spec:
    return True
  return bool(config.is_chief)


class MultiModeExporter(tf.estimator.Exporter, abc.ABC):
  """Exports train, eval and serve graphs as one SavedModel after evaluations.

  Use it in `tf.estimator.EvalSpec(exporters=...)`. `train_and_evaluate`
  calls `export` after every evaluation with the evaluated checkpoint; the
  export lands in `<model_dir>/export/<name>/<version>`, or in
  `<export_dir_base>/<version>` when `export_dir_base` is given.

  * Latest mode (`compare_fn=None`): every call exports, then garbage
    collection keeps the newest `exports_to_keep` exports of this exporter.
  * Best mode (`compare_fn` given): a call exports only if `compare_fn`
    finds its evaluation better than the best one seen, including earlier
    runs of the job read from `event_file_pattern`, so a restarted job never
    exports a worse model over a better one.

  Only the task that should export does (`is_exporting_task`); on others
  `export` returns None without writing anything. Constructed in a process
  whose `TF_CONFIG` and eager state look like a setup that
  `MultiWorkerMirroredStrategy` fails on, it logs a warning saying what to
  set (docs/distributed.md).
  """

  def __init__(
      self,
      name: str,
      input_receiver_fn_map: Mapping[str, Callable[[], object]],
      exports_to_keep: Optional[int] = 5,
      compare_fn: Optional[Callable[..., bool]] = None,
      event_file_pattern: Optional[str] = 'eval/*.tfevents.*',
      assets_extra: Optional[Mapping] = None,
      as_text: bool = False,
      *,
      strip_default_attrs: bool = False,
      allow_links: bool = True,
      clear_devices: bool = False,
      tags: Optional[Mapping[str, Iterable[str]]] = None,
      verify: bool = False,
      layout: str = layout_lib.SHARED,
      raw_signatures: bool = False,
      warmup_requests: Union[bool, Sequence[Any], None] = None,
      warmup_signatures: Optional[Sequence[str]] = None,
      reuse_graphs: bool = True,
      export_dir_base: Optional[filesystem.PathLike] = None,
      durable: bool = True,
      tf2: bool = False):
    """Creates the exporter; validates every argument.

    Args:
      name: directory name under `<model_dir>/export/` (without
        `export_dir_base`), unique among the EvalSpec's exporters.
      input_receiver_fn_map: `tf.estimator.ModeKeys` value -> receiver fn,
        as for `multimode_export.export_all_saved_models`.
      exports_to_keep: how many of this exporter's newest exports to keep,
        or None to never delete any.
      compare_fn: None for latest mode; else
        `compare_fn(best_eval_result, current_eval_result) -> bool`, True if
        the current result is better (e.g. `loss_smaller`).
      event_file_pattern: glob relative to `model_dir` of the evaluator's
        event files, read in best mode to remember the best result across
        restarts; None forgets it on restart (the first evaluation of a run
        is then always exported).
      assets_extra: optional dict of destination -> source file for
        `assets.extra/`.
      as_text: write `saved_model.pbtxt` instead of `saved_model.pb`.
      strip_default_attrs: see `export_all_saved_models`.
      allow_links: see `export_all_saved_models`.
      clear_devices: see `export_all_saved_models`; useful when the training
        graph placed variables on parameter servers.
      tags: optional mode -> tag set, see `export_all_saved_models`.
      verify: load and run every tag set before publishing.
      layout: `'shared'` (one SavedModel holding every mode, in
        `<export_path>/<version>`) or `'per_mode'` (one SavedModel per mode,
        in `<export_path>/{train,eval,serve}/<version>`).
      raw_signatures: add `raw:<key>` signatures to the serve graph, see
        `export_all_saved_models`.
      warmup_requests: TF Serving warmup records in every export, see
        `export_all_saved_models`.
      warmup_signatures: the serving signatures they warm up.
      reuse_graphs: build each mode's graph (receiver fns, model_fn,
        signatures, saver) at the first export only, and write the same
        graphs with every later evaluation's checkpoint, as long as the
        estimator is the same object. An evaluation then costs what writing
        the files costs, not three model_fn calls. False rebuilds them at
        every export, for a model_fn whose graph depends on something that
        changes while training (e.g. a file it reads when called).
      export_dir_base: publish versions directly under this directory (any
        `tf.io.gfile` filesystem: local, `s3://`, `gs://`, `hdfs://`, ...),
        as `export_all_saved_models` does, instead of under
        `<model_dir>/export/<name>`; garbage collection runs there too. Give
        each exporter its own. Checked here without I/O (type, bucket, a
        registered filesystem scheme).
      durable: see `export_all_saved_models`.
      tf2: also write each export's TF2 form (`convert_to_tf2`: one
        SavedModel that TensorFlow 2.16+ and Keras 3 load without tags) into
        `<export>/tf2/`, where `<export>` is the path `export` returns (the
        version directory; per-mode, the mode directory published last,
        `serve/<version>` when PREDICT is exported). It is written before
        the export is published, appears with it and is garbage-collected
        with it; loaders, model servers and the version scanner ignore it.
        `export` raises `ConversionError` (nothing published) for a model
        the converter refuses.

    Raises:
      TypeError: an argument has the wrong type.
      ValueError: `name` is empty, `exports_to_keep` is not positive,
        `compare_fn` has the wrong parameters, `tags` is malformed, or
        `layout` is neither 'shared' nor 'per_mode', or `tf2=True` with
        `tags` other than the default tag sets.
      ExportDirError: `export_dir_base` is empty, a URL without a bucket, or
        on a filesystem TensorFlow has not registered.
      InvalidModeError, ReceiverError, AssetsExtraError: as
        `export_all_saved_models` would raise for these arguments.
    """
    self._settings = settings_lib.settings_from_arguments(
        name, input_receiver_fn_map, exports_to_keep, compare_fn,
        event_file_pattern, tags, layout, reuse_graphs, export_dir_base)
    settings_lib.check_tf2(tf2, self._settings.tags)
    assets_extra_lib.normalize(assets_extra)
    distribution.warn_about_setup(name)
    self._options = _options.ExportOptions.from_arguments(dict(
        locals(), tags=self._settings.tags,
        assets_extra=dict(assets_extra) if assets_extra else None))
    # Best mode: the model_dir whose history was read, and the best result.
    self._history_dir: Optional[str] = None
    self._best_eval_result: Optional[Mapping[str, object]] = None
    # reuse_graphs: the estimator last planned for, and that plan.
    self._planned: Optional[tuple] = None

  @property
  def name(self) -> str:
    """The exporter's name: exports go to `<model_dir>/export/<name>/`
    unless `export_dir_base` is given."""
    return self._settings.name

  @property
  def layout(self) -> str:
    """`'shared'` or `'per_mode'`: how each export is laid out."""
    return self._settings.layout

  @property
  def export_dir_base(self) -> Optional[str]:
    """Where versions are published, or None: `<model_dir>/export/<name>`."""
    return self._settings.export_dir_base

  @property
  def best_eval_result(self) -> Optional[Mapping[str, object]]:
    """Best mode: the best evaluation result seen so far, or None."""
    return self._best_eval_result

  def export(self, estimator: tf.compat.v1.estimator.Estimator,
             export_path: str, checkpoint_path: Optional[str],
             eval_result: Mapping[str, object],
             is_the_final_export: bool) -> Optional[str]:
    """Exports `checkpoint_path` if this task should and the result merits it.

    Args:
      estimator: the `tf.estimator.Estimator` being trained.
      export_path: the export directory base `train_and_evaluate` passes,
        `<model_dir>/export/<name>`; unused when the exporter has an
        `export_dir_base`.
      checkpoint_path: the evaluated checkpoint, which is exported.
      eval_result: the metrics of its evaluation (a dict).
      is_the_final_export: whether training has ended (unused: every
        evaluation is a candidate).

    Returns:
      The new export's path as `str`, or None if nothing was exported. With
      `layout='per_mode'`, the path of the mode published last (`serve`
      when PREDICT is exported).

    Raises:
      multimode_export.ExportError: the export failed (nothing published).
      multimode_export.ConversionError: `tf2=True` and the converter refuses
        the model (nothing published).
    """
    del is_the_final_export
    settings = self._settings
    if not is_exporting_task(estimator.config):
      logging.info('Exporter %r: task %s:%s does not export.', settings.name,
                   estimator.config.task_type, estimator.config.task_id)
      return None
    if settings.compare_fn is not None and not self._is_better(estimator,
                                                               eval_result):
      logging.info('Exporter %r: the evaluation is not better than the best '
                   '%s; no export.', settings.name, self._best_eval_result)
      return None
    write = (export_lib.write_plan if settings.layout == layout_lib.SHARED
             else per_mode.write_plan_per_mode)
    base = settings.base_for(export_path)
    options = self._options.replace(checkpoint_path=checkpoint_path)
    try:
      path = write(self._plan(estimator, base, options), options)
    except errors.CheckpointNotFoundError as e:
      # The chief's checkpoint GC can delete an evaluated checkpoint before
      # its export; a later evaluation brings the next one.
      logging.warning('Exporter %r: checkpoint %s is gone, skipping: %s',
                      settings.name, checkpoint_path, e)
      return None
    if isinstance(path, dict):  # per-mode: {mode: path}, in MODE_ORDER
      path = [path[m] for m in modes_lib.MODE_ORDER if m in path][-1]
    if settings.compare_fn is not None:
      self._best_eval_result = dict(eval_result)
    self.garbage_collect(base)
    return path

  def _plan(self, estimator, export_path: str,
            options: _options.ExportOptions) -> plan_lib.ExportPlan:
    """The plan of this export, with the graphs of the last one if allowed."""
    reuse = None
    if self._settings.reuse_graphs and self._planned is not None:
      planned_for, last = self._planned
      if planned_for is estimator:
        reuse = last
        logging.info('Exporter %r: reusing the graphs built for the first '
                     'export (reuse_graphs=True)', self._settings.name)
    plan = plan_lib.plan_export(estimator, export_path,
                                self._settings.receivers, options, reuse=reuse)
    if self._settings.reuse_graphs:
      self._planned = (estimator, plan)
    return plan

  def garbage_collect(self, export_path: filesystem.PathLike
                     ) -> Optional[export_gc.GcResult]:
    """Deletes this exporter's exports beyond `exports_to_keep`.

    Only numbered versions holding a SavedModel with exactly this
    exporter's tag sets are candidates (see `publishing/_gc`); with
    `layout='per_mode'`, a version's modes are kept or deleted together
    (`publishing/_gc.collect_per_mode`).

    Args:
      export_path: the directory to collect in; the exporter's
        `export_dir_base` instead, when it has one (where it exports).

    Returns:
      The `GcResult`, or None when `exports_to_keep` is None.
    """
    settings = self._settings
    if settings.exports_to_keep is None:
      return None
    base = settings.base_for(export_path)
    try:
      if settings.layout == layout_lib.PER_MODE:
        return export_gc.collect_per_mode(
            base, settings.own_tag_sets_by_dir(), settings.exports_to_keep)
      return export_gc.collect(base, settings.own_tag_sets(),
                               settings.exports_to_keep)
    except tf.errors.OpError as e:
      logging.warning('Exporter %r: garbage collection of %s failed: %s',
                      settings.name, base, e)
      return None

  def _is_better(self, estimator, eval_result) -> bool:
    model_dir = estimator.model_dir
    if self._history_dir != model_dir:
      self._history_dir = model_dir
      self._best_eval_result = None
      if self._settings.event_file_pattern:
        # The history is in model_dir's event files wherever exports go.
        self._best_eval_result = eval_history.best_previous_result(
            model_dir, self._settings.event_file_pattern,
            self._settings.compare_fn, current=eval_result)
        logging.info('Exporter %r: best previous evaluation: %s',
                     self._settings.name, self._best_eval_result)
    if self._best_eval_result is None:
      return True
    return bool(self._settings.compare_fn(
        best_eval_result=self._best_eval_result,
        current_eval_result=eval_result))
