"""`MultiModeExportMixin`: multi-mode export as a method of an Estimator.

    class MyEstimator(MultiModeExportMixin, tf.estimator.Estimator):
      ...

The mixin only adds names that `tf.estimator.Estimator` does not have, so
Estimator's own check against overridden members keeps passing and every
stock method behaves as before.
"""

from typing import Callable, Dict, Mapping, Optional

from multimode_export import _export as export_lib
from multimode_export import _per_mode as per_mode


class MultiModeExportMixin:
  """Adds `export_all_saved_models` and `export_saved_models_per_mode` to a
  `tf.estimator.Estimator` subclass."""

  def export_all_saved_models(
      self,
      export_dir_base,
      input_receiver_fn_map: Mapping[str, Callable[[], object]],
      assets_extra: Optional[Mapping] = None,
      as_text: bool = False,
      checkpoint_path=None,
      strip_default_attrs: bool = False,
      **options) -> str:
    """Exports one SavedModel with a MetaGraphDef per mode.

    See `multimode_export.export_all_saved_models`, which this calls with
    `self` as the estimator; `options` are its keyword-only arguments
    (`allow_links`, `clear_devices`, `tags`, `verify`).

    Returns:
      The path of the new export directory, as `str`.
    """
    return export_lib.export_all_saved_models(
        self, export_dir_base, input_receiver_fn_map, assets_extra=assets_extra,
        as_text=as_text, checkpoint_path=checkpoint_path,
        strip_default_attrs=strip_default_attrs, **options)

  def export_saved_models_per_mode(
      self,
      export_dir_base,
      input_receiver_fn_map: Mapping[str, Callable[[], object]],
      assets_extra: Optional[Mapping] = None,
      as_text: bool = False,
      checkpoint_path=None,
      strip_default_attrs: bool = False,
      **options) -> Dict[str, str]:
    """Exports each mode as its own SavedModel, all under one version.

    See `multimode_export.export_saved_models_per_mode`, which this calls
    with `self` as the estimator; `options` are its keyword-only arguments.

    Returns:
      ModeKeys value -> published SavedModel directory.
    """
    return per_mode.export_saved_models_per_mode(
        self, export_dir_base, input_receiver_fn_map, assets_extra=assets_extra,
        as_text=as_text, checkpoint_path=checkpoint_path,
        strip_default_attrs=strip_default_attrs, **options)
