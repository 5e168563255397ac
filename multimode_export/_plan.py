"""Planning an export: every argument validated, every mode's graph built.

`plan_export` is the first step of every export entry point: it checks the
arguments (modes, tags, `assets_extra`, target directories, checkpoint),
builds each mode's MetaGraphDef with one `graph/_builder.MetaGraphBuilder`,
chooses the variables carrier (`graph/_modes.choose_variables_carrier`), and
checks from checkpoint metadata that every graph can restore. Nothing is written: a bad input is
refused before the first file exists.
"""

import dataclasses
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

import tensorflow as tf

from multimode_export import _filesystem as filesystem
from multimode_export import _options
from multimode_export import _tf_private
from multimode_export import errors
from multimode_export.checks import _warmup as warmup_lib
from multimode_export.graph import _builder as mode_graph
from multimode_export.graph import _modes as modes_lib
from multimode_export.publishing import _fixed_dir as target_dir
from multimode_export.publishing import _staging as publish
from multimode_export.saved_model import _assets_extra as assets_extra_lib
from multimode_export.saved_model import _writer as saved_model_writer
from multimode_export.variables import _checkpoint as checkpoint_lib

ReceiverMap = Mapping[str, Callable[[], object]]


@dataclasses.dataclass(frozen=True)
class ExportPlan:
  """Everything validated and built, before any file is written.

  Attributes:
    export_dir_base: where versions are published; with `export_dir`, its
      parent (where the export is staged).
    graphs: built ModeGraphs, in build order.
    carrier: the mode whose graph's saver decides `variables/`
      (`graph/_modes.choose_variables_carrier`), handed to the writer.
    checkpoint: the checkpoint the variables come from.
    assets: asset name -> source file for `assets/`.
    assets_extra: normalized destination -> source for `assets.extra/`.
    export_dir: the fixed target directory, if any.
    overwrite: whether an existing export at `export_dir` is replaced.
    session_config: the estimator's session config, for the rare writes
      that need a Session.
    warmup_records: serialized PredictionLogs for the serve graph's
      `assets.extra/tf_serving_warmup_requests`; empty for none.
  """
  export_dir_base: str
  graphs: Sequence[mode_graph.ModeGraph]
  carrier: str
  checkpoint: checkpoint_lib.CheckpointInfo
  assets: Dict[str, str]
  assets_extra: Dict[str, str]
  export_dir: Optional[str] = None
  overwrite: bool = False
  session_config: Optional[object] = None
  warmup_records: Tuple[bytes, ...] = ()


def _as_dir(value, argument: str) -> str:
  try:
    path = filesystem.as_str(value)
  except TypeError as e:
    raise TypeError(f'{argument}: expected str, bytes or os.PathLike, got '
                    f'{type(value).__name__}') from e
  if not path:
    raise ValueError(f'{argument}: expected a non-empty path, got {value!r}')
  try:
    return filesystem.dir_path(path)  # 's3://bucket' -> 's3://bucket/'
  except ValueError as e:
    raise ValueError(f'{argument}: {e}') from e


def plan_export(estimator: tf.compat.v1.estimator.Estimator,
                export_dir_base: Optional[filesystem.PathLike],
                input_receiver_fn_map: ReceiverMap,
                options: _options.ExportOptions,
                reuse: Optional[ExportPlan] = None) -> ExportPlan:
  """Validates the arguments and builds every mode's graph; writes nothing.

  Args:
    estimator: see `export_all_saved_models`.
    export_dir_base: see `export_all_saved_models`.
    input_receiver_fn_map: see `export_all_saved_models`.
    options: the keyword options.
    reuse: an earlier plan of the same estimator, receivers and graph
      options whose graphs (and assets) are taken instead of calling the
      model_fn again (`MultiModeExporter` across evaluations), with its
      warmup records; they are still checked against this plan's
      checkpoint.

  Raises:
    See `export_all_saved_models`.
  """
  export_dir, overwrite, tags = (options.export_dir, options.overwrite,
                                 options.tags)
  # tf.compat.v1.estimator.Estimator is the base of tf.estimator.Estimator.
  if not isinstance(estimator, tf.compat.v1.estimator.Estimator):
    raise TypeError('estimator: expected a tf.estimator.Estimator, got '
                    f'{type(estimator).__name__}')
  if export_dir is None:
    base = _as_dir(export_dir_base, 'export_dir_base')
  else:
    if export_dir_base is not None:
      raise ValueError('export_dir_base: expected None when export_dir is '
                       f'given, got {export_dir_base!r}')
    export_dir = _as_dir(export_dir, 'export_dir')
    base = target_dir.parent_of(export_dir)
  receivers = modes_lib.normalize_receiver_map(input_receiver_fn_map)
  modes_lib.check_tags(tags, receivers)
  extra = assets_extra_lib.normalize(options.assets_extra)
  _check_new_options(options, receivers, extra)
  publish.check_export_dir_base(base)
  if export_dir is not None:
    target_dir.check_export_dir(export_dir, overwrite)
  checkpoint_path = options.checkpoint_path
  if checkpoint_path is not None:
    checkpoint_path = _as_dir(checkpoint_path, 'checkpoint_path')
  checkpoint = checkpoint_lib.read(
      checkpoint_lib.resolve(estimator, checkpoint_path))

  if reuse is not None:
    graphs, assets = reuse.graphs, reuse.assets
  else:
    builder = mode_graph.MetaGraphBuilder(
        estimator, strip_default_attrs=options.strip_default_attrs,
        clear_devices=options.clear_devices,
        raw_signatures=options.raw_signatures)
    builder.add_modes(receivers,
                      {m: modes_lib.tags_for(m, tags) for m in receivers})
    graphs, assets = builder.graphs, builder.assets
  saved_model_writer.check_against_checkpoint(graphs, checkpoint)
  saved_model_writer.check_asset_sources(assets)
  return ExportPlan(base, graphs,
                    modes_lib.choose_variables_carrier(receivers), checkpoint,
                    assets, extra, export_dir, overwrite,
                    _tf_private.session_config(estimator),
                    (reuse.warmup_records if reuse is not None else
                     _warmup_records(graphs, options)))


def _check_new_options(options: _options.ExportOptions, receivers,
                       extra: Dict[str, str]) -> None:
  """Validates `raw_signatures`, `durable` and the warmup options."""
  for name in ('raw_signatures', 'durable'):
    if not isinstance(getattr(options, name), bool):
      raise TypeError(f'{name}: expected True or False, got '
                      f'{getattr(options, name)!r}')
  requests = options.warmup_requests
  warmup_lib.check_requests(requests, options.warmup_signatures)
  if not requests:
    return
  if tf.estimator.ModeKeys.PREDICT not in receivers:
    raise errors.WarmupRequestsError(
        'warmup_requests: expected a PREDICT receiver to warm up, got modes '
        f'{sorted(receivers)}', requests)
  if warmup_lib.FILE_NAME in extra:
    raise errors.WarmupRequestsError(
        'warmup_requests: assets_extra already writes '
        f'{warmup_lib.FILE_NAME!r}; give one or the other', requests)


def _warmup_records(graphs: Sequence[mode_graph.ModeGraph],
                    options: _options.ExportOptions) -> Tuple[bytes, ...]:
  if not options.warmup_requests:
    return ()
  [serve] = [g for g in graphs if g.mode == tf.estimator.ModeKeys.PREDICT]
  return warmup_lib.build_records(serve.meta_graph_def, serve.graph,
                                  options.warmup_requests,
                                  options.warmup_signatures)
