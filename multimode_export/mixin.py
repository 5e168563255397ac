"""`MultiModeExportMixin`: multi-mode export as a method of an Estimator.

    class MyEstimator(MultiModeExportMixin, tf.estimator.Estimator):
      ...

The mixin only adds names that `tf.estimator.Estimator` does not have, so
Estimator's own check against overridden members keeps passing and every
stock method behaves as before. Each method is the free function of the same
name with `self` as the estimator: same arguments, defaults and errors.
"""

import functools
import inspect
from typing import Callable, TypeVar

from multimode_export import _export as export_lib
from multimode_export import _per_mode as per_mode

_Result = TypeVar('_Result')


def _as_method(function: Callable[..., _Result]) -> Callable[..., _Result]:
  """`function(estimator, ...)` as a method whose `self` is the estimator."""

  @functools.wraps(function)
  def method(self, *args, **kwargs):
    return function(self, *args, **kwargs)

  signature = inspect.signature(function)
  self_param = inspect.Parameter('self', inspect.Parameter.POSITIONAL_OR_KEYWORD)
  method.__signature__ = signature.replace(
      parameters=[self_param] + list(signature.parameters.values())[1:])
  summary = (function.__doc__ or '').strip().split('\n')[0]
  method.__doc__ = (f'{summary}\n\nSee `multimode_export.{function.__name__}`, '
                    'which this calls with `self` as the estimator.')
  del method.__wrapped__  # its signature is the one above, without estimator
  return method


class MultiModeExportMixin:
  """Adds `export_all_saved_models` and `export_saved_models_per_mode` to a
  `tf.estimator.Estimator` subclass."""

  export_all_saved_models = _as_method(export_lib.export_all_saved_models)
  export_saved_models_per_mode = _as_method(
      per_mode.export_saved_models_per_mode)
