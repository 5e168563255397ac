"""`convert_to_tf2`: an export -> one object-based TF2 SavedModel.

The pipeline: read the source export (`_source`), map every mode's
variables onto the carrier's (`_variable_map`), import the graphs into one
(`_graph_merge`), cut the functions (`_functions`), build the object to save
(`_model`); everything that cannot be carried is refused up to here, before
anything is written. Then the SavedModel is written into a staging directory
beside `output_dir` (`_save`), its method names restored (`_method_names`),
and the staging directory renamed to `output_dir`.
"""

from absl import logging

from multimode_export import _filesystem as filesystem
from multimode_export import errors
from multimode_export.publishing import _fixed_dir
from multimode_export.publishing import _staging
from multimode_export.tf2 import _functions
from multimode_export.tf2 import _graph_merge
from multimode_export.tf2 import _method_names
from multimode_export.tf2 import _model
from multimode_export.tf2 import _save
from multimode_export.tf2 import _source
from multimode_export.tf2 import _variable_map


def _output_dir(output_dir: filesystem.PathLike) -> str:
  output_dir = filesystem.as_str(output_dir)
  if not output_dir:
    raise ValueError(f'output_dir: expected a directory, got {output_dir!r}')
  _fixed_dir.check_export_dir(output_dir, overwrite=False)
  return output_dir


def convert_to_tf2(export_dir: filesystem.PathLike,
                   output_dir: filesystem.PathLike) -> str:
  """Converts an export of this package into one TF2 SavedModel.

  The result loads with `tf.saved_model.load(output_dir)` (no tags) in
  TensorFlow 2.16+ and has: `signatures` (every serving signature; their
  method names are kept in `saved_model.pb`, for TF Serving's Classify and
  Regress), `serve(features)` (the default signature taking one dict, for
  Keras 3's `TFSMLayer`), `train_step(**inputs)` -> `{'loss': ...}`,
  `eval_update(**inputs)`, `eval_result()`, `eval_reset()`, `variables`,
  `trainable_variables`; only those of the modes the export has. Every
  function shares one set of variables and captures only those it reads;
  lookup tables initialise from the converted model's own `assets/`. See
  docs/leaving-estimator.md.

  The variables' values are not read: the new checkpoint's keys point at
  the source checkpoint's tensors, whose data files are hard-linked (or
  copied) into `output_dir` (`_save.save_without_loading`).

  Args:
    export_dir: an export (either layout; for a base of versions, the newest).
    output_dir: where to write; must not exist, or be an empty directory.

  Returns:
    `output_dir`.

  Raises:
    errors.NotASavedModelError: `export_dir` holds no export.
    errors.ExportDirError: `output_dir` exists and is not empty.
    errors.ConversionError: part of the export cannot be carried over (it
      names what); nothing was written.
    errors.PublishError: writing or publishing failed; nothing was left.
  """
  return convert_with(export_dir, output_dir, _save.save_without_loading)


def convert_with(export_dir: filesystem.PathLike,
                 output_dir: filesystem.PathLike,
                 save_fn: _save.SaveFn) -> str:
  """`convert_to_tf2` with the given writer of the SavedModel's files.

  `save_fn` writes `saved_model.pb` and `variables/` into the staging
  directory (`_save.save_without_loading`, the default, indexes the source's
  tensors; `_save.load_and_save` restores every value into memory and calls
  `tf.saved_model.save`). Arguments and errors as `convert_to_tf2`.
  """
  output_dir = _output_dir(output_dir)
  source = _source.read_source(export_dir)
  plan = _variable_map.plan_variables(source)
  merged = _graph_merge.import_graphs(source, plan)
  functions = _functions.cut_functions(source, merged)
  root = _model.build_root(merged, functions)
  base = _fixed_dir.parent_of(output_dir)
  with _staging.open_staging(base) as staging:
    request = _save.SaveRequest(root, functions.signatures, staging.path,
                                source, merged, plan, functions)
    try:
      save_fn(request)
      _method_names.restore_method_names(staging.path, functions.method_names)
    except (OSError, errors.NotASavedModelError) as e:
      raise errors.PublishError(
          f'writing the TF2 SavedModel for {output_dir!r} failed: '
          f'{type(e).__name__}: {e}', base) from e
    published = _fixed_dir.publish_to(staging, output_dir)
  logging.info('Converted %s to the TF2 SavedModel %s', export_dir, published)
  return published
