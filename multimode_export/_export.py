"""`export_all_saved_models`: one SavedModel with a MetaGraphDef per mode.

The pipeline, one phase per subpackage:
1. `_plan`: validate every argument and build each mode's graph (`graph/`),
   checking from checkpoint metadata that every graph can restore;
2. `saved_model/_writer`: write one SavedModel into a staging directory,
   `variables/` straight from the checkpoint files (`variables/`);
3. `publishing/`: publish it atomically as a new version (or `export_dir`).
Nothing is written before step 2, and a failure in step 2 or 3 removes the
staging directory.
"""

import contextlib
from typing import (Any, Callable, Iterable, Iterator, Mapping, Optional,
                    Sequence, Union)

import tensorflow as tf
from absl import logging

from multimode_export import _filesystem as filesystem
from multimode_export import _options
from multimode_export import _plan
from multimode_export import _tf_private
from multimode_export import errors
from multimode_export.checks import _warmup as warmup_lib
from multimode_export.saved_model import _assets_extra as assets_extra_lib
from multimode_export.publishing import _fixed_dir as target_dir
from multimode_export.publishing import _layout as layout
from multimode_export.publishing import _staging as publish
from multimode_export.saved_model import _writer as saved_model_writer
from multimode_export.tf2 import _convert as tf2_convert


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
  # The graphs are the caller's own model, built in this process: what the
  # safety scan refuses in exports of unknown origin is accepted here, and
  # named, with the flag `multimode-export verify` needs for it.
  allowed = verification.refused_op_types(path)
  if allowed:
    logging.warning(
        'The export holds ops that act outside it (%s); `multimode-export '
        'verify` refuses them unless given --allow_ops=%s',
        ', '.join(allowed), ','.join(allowed))
  report = verification.verify(path, allow_ops=allowed)
  if not report.ok:
    raise errors.VerificationError(
        f'the export failed verification, not published:\n{report}', report)


_TF2_SCRATCH = '.tf2-scratch'


def write_tf2_form(staged: str, into: str) -> None:
  """Writes the TF2 form of the staged export `staged` to `into`.

  Raises:
    errors.ConversionError: the export cannot be carried over (nothing is
      published).
  """
  # Called by the exporter while the training graph is the finalized default
  # graph: the converter runs eagerly, beside a graph of its own.
  # The converter publishes into a directory it locks, and `into` is locked
  # by the export's own staging: it converts in a scratch directory inside
  # `into`, whose result is then renamed into place.
  scratch = filesystem.join(into, _TF2_SCRATCH)
  filesystem.makedirs(scratch)
  with tf.Graph().as_default(), _tf_private.eager_mode():
    converted = tf2_convert.convert_to_tf2(
        staged, filesystem.join(scratch, layout.TF2_FORM_DIR))
  tf.io.gfile.rename(converted, filesystem.join(into, layout.TF2_FORM_DIR))
  tf.io.gfile.rmtree(scratch)


def write_options(plan: _plan.ExportPlan,
                  options: _options.ExportOptions
                 ) -> saved_model_writer.WriteOptions:
  """What the SavedModel writer needs of the plan and the options."""
  return saved_model_writer.WriteOptions(
      as_text=options.as_text, allow_links=options.allow_links,
      chunk_bytes=options.chunk_bytes, session_config=plan.session_config)


def write_warmup(plan: _plan.ExportPlan, export_dir: str) -> None:
  """Writes the plan's warmup records into `export_dir/assets.extra/`."""
  if plan.warmup_records:
    warmup_lib.write_records(
        assets_extra_lib.path_in(export_dir, warmup_lib.FILE_NAME),
        plan.warmup_records)


def write_plan(plan: _plan.ExportPlan, options: _options.ExportOptions) -> str:
  """Stages the plan's graphs as one SavedModel and publishes it.

  Returns:
    The published version directory, or `plan.export_dir` if set (the
    plan's `export_dir_base` is then its parent).

  Raises:
    errors.PublishError: writing failed (the staging data is removed).
    errors.VerificationError: `options.verify` was set and the export failed
      it.
  """
  base = plan.export_dir_base
  publish.remove_stale_staging(base)
  with publish.open_staging(base, options.durable) as staging:
    with write_errors_as_publish_error(base):
      saved_model_writer.write_saved_model(
          staging.path, plan.graphs, plan.carrier, plan.checkpoint,
          plan.assets, plan.assets_extra, write_options(plan, options))
      write_warmup(plan, staging.path)
    if options.verify:
      verify_staged(staging.path)
    if options.tf2:
      write_tf2_form(staging.path, staging.path)
    # A failure while publishing is a PublishError too, not a raw OSError.
    with write_errors_as_publish_error(base):
      if plan.export_dir is not None:
        return target_dir.publish_to(staging, plan.export_dir, plan.overwrite)
      return staging.publish()


def export_all_saved_models(
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
) -> str:
  """Exports one SavedModel with a MetaGraphDef for each requested mode.

  For each mode in `input_receiver_fn_map` (in the order TRAIN, EVAL,
  PREDICT), a fresh graph is built: the receiver fn gives the features (and
  labels for TRAIN and EVAL), the estimator's model_fn is called in that
  mode, and its signatures, saver, train op and main op are recorded. The
  graphs share one `variables/`, taken from the checkpoint: the entries the
  first graph's saver restores (TRAIN, else EVAL, else PREDICT), plus any
  another graph needs. The variables come from the checkpoint files directly
  (linked, copied, or a subset by extent copy), not through a Session.

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
      version (see `publishing/_fixed_dir`); staged in its parent.
    overwrite: with `export_dir`, replace an existing export there
      atomically (local disk) instead of refusing a non-empty directory.
    raw_signatures: give the serve graph, beside its tf.Example signatures,
      `raw:<key>` signatures whose inputs are the parsed feature tensors
      (for TFLite, tf2onnx, JSON serving; see docs/loading.md).
    warmup_requests: write TF Serving warmup records
      (`assets.extra/tf_serving_warmup_requests`) for the serve graph: True
      for synthetic inputs, or a list of `tf.train.Example`s, serialized
      examples or feature dicts. Needs the tensorflow-serving-api protos.
    warmup_signatures: the serving signatures to warm up; default every
      classify, regress and predict signature.
    durable: on a local filesystem, `fsync` every file and directory of
      the export before publishing it and the new name after, so that a
      returned export survives a power cut or kernel crash (hard-linked
      checkpoint files are synced too: they share the checkpoint's data).
      False for scratch exports that need not survive one. Nothing to do
      on object stores and `ram://` (see docs/publishing.md).

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
    RawSignatureError: `raw_signatures=True` but the serve graph cannot get
      a raw signature (no predict output, a clashing alternative or key).
    WarmupRequestsError: a warmup request or signature is unusable.
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
  options = _options.ExportOptions.from_arguments(locals())
  plan = _plan.plan_export(estimator, export_dir_base, input_receiver_fn_map,
                           options)
  return write_plan(plan, options)
