"""One clear sentence instead of a deep traceback when TensorFlow won't do."""

import importlib
import importlib.metadata

SUPPORTED = '>=2.13,<2.16'


def _version_tuple(version: str):
  return tuple(int(p) for p in version.split('.')[:2] if p.isdigit())


def check_tensorflow() -> None:
  """Raises ImportError unless TensorFlow 2.13-2.15 with tf.estimator is here."""
  try:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ImportError(
        'multimode_export needs TensorFlow 2.13-2.15 (the releases that still '
        "have tf.estimator); install it with: pip install 'multimode-export"
        "[cpu]' (or '[gpu]')") from None
  version = _version_tuple(tf.__version__)
  if not (2, 13) <= version < (2, 16):
    raise ImportError(
        f'multimode_export needs TensorFlow 2.13-2.15, found {tf.__version__}: '
        'TensorFlow 2.16 removed tf.estimator. Install tensorflow<2.16 for '
        'exporting; exports load in newer TensorFlow without this package.')
  try:
    importlib.metadata.version('tensorflow-estimator')
    importlib.import_module('tensorflow_estimator')
  except (ImportError, importlib.metadata.PackageNotFoundError):
    raise ImportError(
        f'multimode_export needs tensorflow-estimator matching TensorFlow '
        f'{tf.__version__}: pip install "tensorflow-estimator'
        f'=={".".join(map(str, version))}.*"') from None
