"""`export_all_saved_models`: one SavedModel with a MetaGraphDef per mode.

The steps, each in its own module:
1. validate every argument (`modes`, `assets_extra`, `checkpoint`);
2. build each mode's graph (`mode_graph`), carrier first;
3. check from checkpoint metadata that every graph can restore;
4. write into a staging directory (`saved_model_writer`) and publish it
   atomically as a new version (`publish`).
Nothing is written before step 4, and a failure in step 4 removes the
staging directory.
"""

import contextlib
import dataclasses
from typing import (Callable, Dict, Iterable, Iterator, List, Mapping,
                    Optional, Sequence)

import tensorflow as tf
from absl import logging

from multimode_export.saved_model import _assets_extra as assets_extra_lib
from multimode_export.variables import _checkpoint as checkpoint_lib
from multimode_export import errors
from multimode_export import _filesystem as filesystem
from multimode_export.graph import _builder as mode_graph
from multimode_export.graph import _modes as modes_lib
from multimode_export.publishing import _staging as publish
from multimode_export.saved_model import _writer as saved_model_writer
from multimode_export.publishing import _fixed_dir as target_dir
from multimode_export import _tf_private

ReceiverMap = Mapping[str, Callable[[], object]]


@dataclasses.dataclass(frozen=True)
class ExportPlan:
  """Everything validated and built, before any file is written.

  Attributes:
    export_dir_base: where versions are published; with `export_dir`, its
      parent (where the export is staged).
    graphs: built ModeGraphs, the variables carrier first.
    checkpoint: the checkpoint the variables come from.
    assets: asset name -> source file for `assets/`.
    assets_extra: normalized destination -> source for `assets.extra/`.
  """
  export_dir_base: str
  graphs: Sequence[mode_graph.ModeGraph]
  checkpoint: checkpoint_lib.CheckpointInfo
  assets: Dict[str, str]
  assets_extra: Dict[str, str]
  export_dir: Optional[str] = None
  overwrite: bool = False


def _as_dir(value, argument: str) -> str:
  try:
    path = filesystem.as_str(value)
  except TypeError as e:
    raise TypeError(f'{argument}: expected str, bytes or os.PathLike, got '
                    f'{type(value).__name__}') from e
  if not path:
    raise ValueError(f'{argument}: expected a non-empty path, got {value!r}')
  return path


def _check_tags(tags: Optional[Mapping[str, Iterable[str]]],
                modes: Iterable[str]) -> None:
  if tags is None:
    return
  for mode, tag_set in tags.items():
    if mode not in modes_lib.MODE_ORDER:
      raise errors.InvalidModeError(mode)
    if isinstance(tag_set, str) or not tag_set or not all(
        isinstance(t, str) and t for t in tag_set):
      raise ValueError(f'tags[{mode!r}]: expected a non-empty list of tag '
                       f'strings, got {tag_set!r}')
  used = [frozenset(modes_lib.tags_for(m, tags)) for m in modes]
  if len(set(used)) != len(used):
    raise ValueError(f'tags: every exported mode needs a distinct tag set, got '
                     f'{[sorted(u) for u in used]}')


def plan_export(estimator, export_dir_base, input_receiver_fn_map: ReceiverMap,
                *, assets_extra=None, checkpoint_path=None,
                strip_default_attrs: bool = False, clear_devices: bool = False,
                tags: Optional[Mapping[str, Iterable[str]]] = None,
                export_dir=None, overwrite: bool = False) -> ExportPlan:
  """Validates the arguments and builds every mode's graph; writes nothing.

  Raises:
    See `export_all_saved_models`.
  """
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
    export_dir = _as_dir(export_dir, 'export_dir').rstrip('/') or '/'
    base = target_dir.parent_of(export_dir)
  receivers = modes_lib.normalize_receiver_map(input_receiver_fn_map)
  _check_tags(tags, receivers)
  extra = assets_extra_lib.normalize(assets_extra)
  publish.check_export_dir_base(base)
  if export_dir is not None:
    target_dir.check_export_dir(export_dir, overwrite)
  if checkpoint_path is not None:
    checkpoint_path = _as_dir(checkpoint_path, 'checkpoint_path')
  checkpoint = checkpoint_lib.read(
      checkpoint_lib.resolve(estimator, checkpoint_path))

  assets = mode_graph.AssetTable()
  graphs: List[mode_graph.ModeGraph] = []
  for mode, receiver_fn in receivers.items():
    logging.info('Building the %s graph', mode)
    graphs.append(mode_graph.build_mode_graph(
        estimator, mode, receiver_fn, tags=modes_lib.tags_for(mode, tags),
        assets=assets, strip_default_attrs=strip_default_attrs,
        clear_devices=clear_devices))
  saved_model_writer.check_against_checkpoint(graphs, checkpoint)
  saved_model_writer.check_asset_sources(assets.files)
  return ExportPlan(base, tuple(graphs), checkpoint, assets.files, extra,
                    export_dir, overwrite)


@contextlib.contextmanager
def write_errors_as_publish_error(export_dir_base: str) -> Iterator[None]:
  """Turns a filesystem or TF error while writing into a PublishError."""
  try:
    yield
  except errors.Error:
    raise
  except (OSError, tf.errors.OpError) as e:
    raise errors.PublishError(
        f'writing the export under {export_dir_base!r} failed: '
        f'{type(e).__name__}: {e}', export_dir_base) from e


def verify_staged(path: str) -> None:
  """Raises VerificationError unless the SavedModel at `path` verifies."""
  # Imported here: verification loads TF SavedModel machinery that a plain
  # export does not need.
  from multimode_export.checks import _verification as verification  # pylint: disable=g-import-not-at-top
  report = verification.verify(path)
  if not report.ok:
    raise errors.VerificationError(
        f'the export failed verification, not published:\n{report}', report)


def write_plan(plan: ExportPlan, options: saved_model_writer.WriteOptions,
               verify: bool = False) -> str:
  """Stages the plan's graphs as one SavedModel and publishes it.

  Returns:
    The published version directory, or `plan.export_dir` if set (the
    plan's `export_dir_base` is then its parent).

  Raises:
    errors.PublishError: writing failed (the staging data is removed).
    errors.VerificationError: `verify` was set and the export failed it.
  """
  base = plan.export_dir_base
  publish.remove_stale_staging(base)
  with publish.open_staging(base) as staging:
    with write_errors_as_publish_error(base):
      saved_model_writer.write_saved_model(
          staging.path, plan.graphs, plan.checkpoint, plan.assets,
          plan.assets_extra, options)
    if verify:
      verify_staged(staging.path)
    # A failure while publishing is a PublishError too, not a raw OSError.
    with write_errors_as_publish_error(base):
      if plan.export_dir is not None:
        return target_dir.publish_to(staging, plan.export_dir, plan.overwrite)
      return staging.publish()


def export_all_saved_models(
    estimator,
    export_dir_base,
    input_receiver_fn_map: ReceiverMap,
    assets_extra: Optional[Mapping] = None,
    as_text: bool = False,
    checkpoint_path=None,
    strip_default_attrs: bool = False,
    *,
    allow_links: bool = True,
    clear_devices: bool = False,
    tags: Optional[Mapping[str, Iterable[str]]] = None,
    verify: bool = False,
    export_dir=None,
    overwrite: bool = False,
) -> str:
  """Exports one SavedModel with a MetaGraphDef for each requested mode.

  For each mode in `input_receiver_fn_map` (in the order TRAIN, EVAL,
  PREDICT), a fresh graph is built: the receiver fn gives the features (and
  labels for TRAIN and EVAL), the estimator's model_fn is called in that
  mode, and its signatures, saver, train op and main op are recorded. The
  graphs share one `variables/`, taken from the checkpoint: the entries the
  first graph's saver restores (TRAIN, else EVAL, else PREDICT), plus any
  another graph needs. The variables come from the checkpoint files directly
  (linked, copied or streamed), not through a Session.

  The export is staged in a hidden directory and published as
  `<export_dir_base>/<version>` (or as `export_dir`) only when complete; on
  any error nothing is published and the staging data is removed.

  Args:
    estimator: a `tf.estimator.Estimator` (any subclass, canned or not).
    export_dir_base: directory (str, bytes or os.PathLike) in which a new
      numbered version directory is created; None when `export_dir` is set.
    input_receiver_fn_map: `tf.estimator.ModeKeys` value -> a function of no
      arguments returning the mode's InputReceiver: a
      `SupervisedInputReceiver` (or `UnsupervisedInputReceiver`) for TRAIN and
      EVAL, a `ServingInputReceiver` / `TensorServingInputReceiver` for
      PREDICT.
    assets_extra: optional dict of destination (relative to `assets.extra/`)
      -> source file.
    as_text: write `saved_model.pbtxt` instead of `saved_model.pb`.
    checkpoint_path: checkpoint prefix or directory to export; by default
      the latest in `model_dir`, else the warm-start checkpoint.
    strip_default_attrs: remove default-valued attributes from the graphs
      (smaller, and readable by older TensorFlow consumers).
    allow_links: let `variables/` reflink or hard-link the checkpoint files
      when they hold exactly what is needed (local filesystems only).
    clear_devices: drop device placements, for serving on another machine.
    tags: optional mode -> tag set, replacing the default tags
      (`train`, `eval`, `serve`).
    verify: load and run every tag set (see `multimode_export.verify`) before
      publishing; raise `VerificationError` instead of publishing on failure.
    export_dir: publish at this fixed directory instead of a numbered
      version (see `target_dir`); staged in its parent.
    overwrite: with `export_dir`, replace an existing export there
      atomically (local disk) instead of refusing a non-empty directory.

  Returns:
    The path of the new export directory, as `str`.

  Raises:
    TypeError: `estimator`, a path or `assets_extra` has the wrong type.
    ValueError: the receiver map is empty, `tags` is malformed, or both
      `export_dir_base` and `export_dir` are given.
    InvalidModeError: a key of the receiver map is not a ModeKeys value.
    ReceiverError: a receiver fn is not callable, raises, or returns the
      wrong kind of receiver.
    ModelFnError: the model_fn fails in a mode.
    AssetsExtraError: an `assets_extra` entry escapes `assets.extra/` or its
      source is missing.
    ExportDirError: `export_dir_base` is a file or not writable, or
      `export_dir` is not empty (without `overwrite`, or not an export).
    CheckpointNotFoundError: no checkpoint was found.
    CheckpointReadError: the checkpoint is unreadable.
    MissingVariablesError, VariableMismatchError: the checkpoint does not
      hold what a mode's graph restores.
    PublishError: writing the export failed.
    VerificationError: `verify=True` and the export failed verification.
  """
  plan = plan_export(estimator, export_dir_base, input_receiver_fn_map,
                     assets_extra=assets_extra, checkpoint_path=checkpoint_path,
                     strip_default_attrs=strip_default_attrs,
                     clear_devices=clear_devices, tags=tags,
                     export_dir=export_dir, overwrite=overwrite)
  options = saved_model_writer.WriteOptions(
      as_text=as_text, allow_links=allow_links,
      session_config=_tf_private.session_config(estimator))
  return write_plan(plan, options, verify)
