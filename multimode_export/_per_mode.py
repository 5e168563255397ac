"""`export_saved_models_per_mode`: one SavedModel per mode, one version.

The shared layout (`export_all_saved_models`) keeps one copy of the
variables for every mode. This layout gives each mode its own SavedModel
with a single MetaGraphDef and only the variables that mode's graph
restores, which is what single-graph consumers need: `tf.saved_model.load`
without `tags=`, Keras 3's `TFSMLayer`, a serving fleet that should not
receive optimizer slots.

    <export_dir_base>/train/<version>/   TRAIN graph; all training variables
    <export_dir_base>/eval/<version>/    EVAL graph; the model's variables
    <export_dir_base>/serve/<version>/   PREDICT graph; the model's variables

Every mode of one export has the same version, so `<export_dir_base>/serve`
can be handed as-is to a model server that polls for numbered versions. See
`publishing/_group` for what a poller may see, and `publishing/_layout` for
telling the two layouts apart.
"""

from typing import (Any, Callable, Dict, Iterable, Mapping, Optional, Sequence,
                    Union)

import tensorflow as tf

from multimode_export import _export as export_lib
from multimode_export import _filesystem as filesystem
from multimode_export import _options
from multimode_export import _plan
from multimode_export.graph import _builder as mode_graph
from multimode_export.publishing import _fixed_dir as target_dir
from multimode_export.publishing import _layout as layout
from multimode_export.publishing import _staging as publish
from multimode_export.saved_model import _format as saved_model_format
from multimode_export.saved_model import _writer as saved_model_writer


def _assets_of(graph: mode_graph.ModeGraph,
               assets: Dict[str, str]) -> Dict[str, str]:
  """The entries of the export-wide asset table this graph refers to."""
  names = {a.filename
           for a in saved_model_format.asset_file_defs(graph.meta_graph_def)}
  return {name: source for name, source in assets.items() if name in names}


def write_plan_per_mode(plan: _plan.ExportPlan,
                        options: _options.ExportOptions) -> Dict[str, str]:
  """Stages one SavedModel per planned mode and publishes them as a group.

  Returns:
    mode -> published SavedModel directory.

  Raises:
    errors.PublishError: writing or publishing failed; nothing is published.
    errors.VerificationError: `options.verify` was set and a mode failed it.
  """
  base = plan.export_dir_base
  write_options = export_lib.write_options(plan, options)
  publish.remove_stale_staging(base)
  names = {g.mode: layout.MODE_DIRS[g.mode] for g in plan.graphs}
  with publish.open_staging(base, options.durable) as staging:
    for graph in plan.graphs:
      path = filesystem.join(staging.path, names[graph.mode])
      with export_lib.write_errors_as_publish_error(base):
        filesystem.makedirs(path)
        saved_model_writer.write_saved_model(
            path, [graph], graph.mode, plan.checkpoint,
            _assets_of(graph, plan.assets), plan.assets_extra, write_options)
        if graph.mode == tf.estimator.ModeKeys.PREDICT:
          export_lib.write_warmup(plan, path)
      if options.verify:
        export_lib.verify_staged(path)
    if options.tf2:  # into the mode directory published last
      export_lib.write_tf2_form(
          staging.path,
          filesystem.join(staging.path, names[plan.graphs[-1].mode]))
    if plan.export_dir is not None:
      target_dir.publish_to(staging, plan.export_dir, plan.overwrite)
      return {mode: filesystem.join(plan.export_dir, name)
              for mode, name in names.items()}
    # plan.graphs is in MODE_ORDER, so PREDICT (`serve`) is published last.
    # Locking the base or writing the journal can fail too: PublishError.
    with export_lib.write_errors_as_publish_error(base):
      published = staging.publish_group(
          [names[g.mode] for g in plan.graphs], layout.MODE_DIRS.values())
  return {mode: published[name] for mode, name in names.items()}


def export_saved_models_per_mode(
    estimator: tf.compat.v1.estimator.Estimator,
    export_dir_base: Optional[filesystem.PathLike],
    input_receiver_fn_map: Mapping[str, Callable[[], object]],
    assets_extra: Optional[Mapping[str, filesystem.PathLike]] = None,
    as_text: bool = False,
    checkpoint_path: Optional[filesystem.PathLike] = None,
    strip_default_attrs: bool = False,
    *,
    allow_links: bool = True,
    clear_devices: bool = False,
    tags: Optional[Mapping[str, Iterable[str]]] = None,
    verify: bool = False,
    export_dir: Optional[filesystem.PathLike] = None,
    overwrite: bool = False,
    raw_signatures: bool = False,
    warmup_requests: Union[bool, Sequence[Any], None] = None,
    warmup_signatures: Optional[Sequence[str]] = None,
    durable: bool = True,
) -> Dict[str, str]:
  """Exports each requested mode as its own single-graph SavedModel.

  The graphs are built and checked against the checkpoint exactly as in
  `export_all_saved_models` (same arguments, same errors). Then each mode is
  written as a SavedModel with one MetaGraphDef and a `variables/` holding
  only the checkpoint entries that mode's saver restores (the PREDICT part
  has no optimizer slots), its tensors' extents copied from the checkpoint
  files with bounded memory, or linked when a mode needs the whole
  checkpoint.

  Layout: `<export_dir_base>/<mode dir>/<version>/`, mode dirs `train`,
  `eval`, `serve` (`layout.MODE_DIRS`), one version number shared by every
  mode of this export and larger than any version in any of the three mode
  directories. All modes are written completely in a hidden staging
  directory of `export_dir_base` first; then, under a lock of the base, each
  is renamed into place in the order TRAIN, EVAL, PREDICT. So when
  `<export_dir_base>/serve/<version>` appears, the other modes of that
  version are already there; if a rename fails, the renamed modes are moved
  back and nothing stays published.

  With `export_dir=`, the modes are published together as
  `<export_dir>/<mode dir>/` in one step instead (see `publishing/_fixed_dir`).

  Args:
    estimator: a `tf.estimator.Estimator`.
    export_dir_base: directory under which the mode directories are; None
      when `export_dir` is set.
    input_receiver_fn_map: `tf.estimator.ModeKeys` value -> receiver fn, as
      for `export_all_saved_models`.
    assets_extra: optional dict of destination -> source file, copied into
      every mode's `assets.extra/`.
    as_text: write `saved_model.pbtxt` instead of `saved_model.pb`.
    checkpoint_path: checkpoint prefix or directory to export.
    strip_default_attrs: remove default-valued attributes from the graphs.
    allow_links: let a mode's `variables/` reflink or hard-link the
      checkpoint files when it needs exactly all of them.
    clear_devices: drop device placements from every graph.
    tags: optional mode -> tag list, replacing that mode's default tags.
    verify: verify each mode's SavedModel before publishing any.
    export_dir: publish the modes as `<export_dir>/<mode dir>/`, no version.
    overwrite: with `export_dir`, replace an existing export there.
    raw_signatures: add `raw:<key>` signatures to the serve part (see
      `export_all_saved_models`).
    warmup_requests: TF Serving warmup records for the serve part (see
      `export_all_saved_models`).
    warmup_signatures: the serving signatures they warm up.
    durable: see `export_all_saved_models` (here every mode's directory,
      and the group's journal, is synced).

  Returns:
    `{mode: path}`: ModeKeys value -> published SavedModel directory.

  Raises:
    The errors of `export_all_saved_models`.
  """
  options = _options.ExportOptions.from_arguments(locals())
  plan = _plan.plan_export(estimator, export_dir_base, input_receiver_fn_map,
                           options)
  return write_plan_per_mode(plan, options)
