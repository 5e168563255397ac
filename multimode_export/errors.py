"""Exceptions raised by multimode_export.

Every exception names the value that caused it and carries that value as an
attribute, so callers can react without parsing messages. Bad arguments raise
the built-in `ValueError` / `TypeError` (or a subclass of them defined here);
failures while exporting raise a subclass of `ExportError`.

Several export errors also derive from `ValueError`, because the stock
`Estimator.experimental_export_all_saved_models` raised `ValueError` in the
same situations and existing callers may catch it. Their messages start with
the stock export's wording (code may match it), followed by this package's
detail; docs/errors.md lists both.
"""

from typing import Iterable, Optional, Sequence


class Error(Exception):
  """Base class of every exception this package defines."""


class ExportError(Error):
  """An export could not be completed; nothing was published."""


class InvalidModeError(Error, ValueError):
  """A key of the receiver map is not a `tf.estimator.ModeKeys` value.

  Attributes:
    mode: the offending key.
  """

  def __init__(self, mode: object, keys: Optional[Iterable[object]] = None):
    """`keys`: all keys of the map, given when none of them is valid."""
    self.mode = mode
    # Stock ignored unknown keys and failed only when no valid one was left.
    stock = '' if keys is None else no_valid_modes(keys) + ' '
    hint = ''
    if isinstance(mode, str) and mode.lower() in ('predict', 'serve',
                                                  'serving', 'prediction'):
      hint = (" (ModeKeys.PREDICT is the string 'infer': use "
              'tf.estimator.ModeKeys.PREDICT as the key)')
    super().__init__(
        f'{stock}input_receiver_fn_map: expected keys among '
        f"tf.estimator.ModeKeys ('train', 'eval', 'infer'), got {mode!r}{hint}")


def no_valid_modes(keys: Iterable[object]) -> str:
  """The stock export's message for a receiver map with no usable mode."""
  return f'No valid modes for exporting found. Got {keys!r}.'


class ReceiverError(ExportError, TypeError, ValueError):
  """A receiver fn is not callable, raised, or returned the wrong type.

  A `TypeError`, and a `ValueError` too: the stock export let a receiver fn's
  (or, for a receiver without labels, the model_fn's) `ValueError` through.

  Attributes:
    mode: the mode whose receiver fn is at fault.
    receiver_fn: the receiver fn.
  """

  def __init__(self, message: str, mode: str, receiver_fn: object):
    self.mode = mode
    self.receiver_fn = receiver_fn
    super().__init__(message)


class ModelFnError(ExportError, ValueError):
  """The estimator's model_fn failed or returned an unusable spec for a mode.

  Attributes:
    mode: the mode being built.
  """

  def __init__(self, message: str, mode: str):
    self.mode = mode
    super().__init__(message)


class CheckpointNotFoundError(ExportError, ValueError):
  """No checkpoint to export from.

  Attributes:
    searched: the places that were looked at, in order.
  """

  def __init__(self, searched: Sequence[str], model_dir: Optional[str] = None):
    """`model_dir`: given when the checkpoint was searched for there."""
    self.searched = tuple(searched)
    if model_dir is not None:
      stock = f"Couldn't find trained model at {model_dir}."
    else:  # An explicit checkpoint_path, which stock handed to Saver.restore.
      stock = ('The passed save_path is not a valid checkpoint: '
               f'{self.searched[0]}')
    super().__init__(
        f'{stock} Could not find a checkpoint to export; looked at: ' +
        ', '.join(repr(s) for s in self.searched))


class CheckpointReadError(ExportError, ValueError):
  """A checkpoint exists but cannot be read (truncated, corrupt, wrong format).

  Attributes:
    checkpoint_path: the checkpoint prefix.
  """

  def __init__(self, checkpoint_path: str, reason: str):
    self.checkpoint_path = checkpoint_path
    super().__init__(f'Cannot read checkpoint {checkpoint_path!r}: {reason}')


class MissingVariablesError(ExportError, ValueError):
  """The checkpoint lacks variables a mode's graph needs.

  Attributes:
    mode: the mode whose graph needs them.
    names: the missing checkpoint keys, sorted.
    checkpoint_path: the checkpoint prefix.
  """

  def __init__(self, mode: str, names: Iterable[str], checkpoint_path: str):
    self.mode = mode
    self.names = tuple(sorted(names))
    self.checkpoint_path = checkpoint_path
    shown = ', '.join(self.names[:20])
    more = f' and {len(self.names) - 20} more' if len(self.names) > 20 else ''
    super().__init__(
        'Could not load all requested variables from checkpoint. Please make '
        'sure your model_fn does not expect variables that were not saved in '
        f'the checkpoint.\n\nEncountered error with mode `{mode}` while '
        f'restoring checkpoint from: `{checkpoint_path}`. Mode {mode!r} needs '
        f'variables that checkpoint {checkpoint_path!r} does not have: '
        f'{shown}{more}.')


class VariableMismatchError(ExportError, ValueError):
  """A checkpoint variable has a different shape or dtype than a graph needs.

  Attributes:
    mode: the mode whose graph needs the variable.
    name: the checkpoint key.
    expected: (dtype name, shape) the graph needs.
    actual: (dtype name, shape) the checkpoint holds.
    checkpoint_path: the checkpoint prefix.
  """

  def __init__(self, mode: str, name: str, expected: tuple, actual: tuple,
               checkpoint_path: str):
    self.mode = mode
    self.name = name
    self.expected = expected
    self.actual = actual
    self.checkpoint_path = checkpoint_path
    super().__init__(
        f'Variable {name!r} of mode {mode!r}: expected dtype/shape '
        f'{expected[0]}{list(expected[1]) if expected[1] is not None else "?"}'
        f', checkpoint {checkpoint_path!r} has '
        f'{actual[0]}{list(actual[1]) if actual[1] is not None else "?"}')


class AssetsExtraError(ExportError, ValueError):
  """An `assets_extra` entry is unsafe or its source is missing.

  Attributes:
    destination: the offending destination key.
    source: its source path.
  """

  def __init__(self, message: str, destination: object, source: object):
    self.destination = destination
    self.source = source
    super().__init__(message)


class RawSignatureError(ExportError, ValueError):
  """`raw_signatures=True` cannot add raw signatures to this serve graph."""


class WarmupRequestsError(ExportError, ValueError):
  """`warmup_requests` or `warmup_signatures` cannot be turned into records.

  Attributes:
    value: the offending request, signature key or argument.
  """

  def __init__(self, message: str, value: object):
    self.value = value
    super().__init__(message)


class ExportDirError(ExportError, ValueError):
  """The export directory base (or an explicit target) cannot be used.

  Attributes:
    path: the offending path.
  """

  def __init__(self, message: str, path: str):
    self.path = path
    super().__init__(message)


class UnloadableGraphError(ExportError):
  """A mode's MetaGraphDef would not import into a fresh graph.

  Checked at export time, without loading variables, so that no export one
  of whose tag sets cannot load is ever published.

  Attributes:
    mode: the mode whose MetaGraphDef fails.
    node: the node name the import could not resolve.
  """

  def __init__(self, mode: str, node: str, reason: str):
    self.mode = mode
    self.node = node
    super().__init__(
        f'the MetaGraphDef of mode {mode!r} does not import into a fresh '
        f'graph (node {node!r}): {reason}')


class PublishError(ExportError):
  """Writing or publishing the export failed; the staging data was removed.

  Attributes:
    export_dir_base: where the export was going.
  """

  def __init__(self, message: str, export_dir_base: str):
    self.export_dir_base = export_dir_base
    super().__init__(message)


class VerificationError(ExportError):
  """An export failed verification before it was published.

  Attributes:
    report: the `VerifyReport` with the failed checks, or None.
  """

  def __init__(self, message: str, report: Optional[object] = None):
    self.report = report
    super().__init__(message)


class NotASavedModelError(Error, ValueError):
  """A directory given to `verify`, `inspect` or a loader is not a SavedModel.

  Attributes:
    export_dir: the offending directory.
  """

  def __init__(self, export_dir: str, reason: str):
    self.export_dir = export_dir
    super().__init__(f'{export_dir!r} is not a SavedModel: {reason}')


class ConversionError(Error, ValueError):
  """Part of an export cannot be carried into one TF2 SavedModel.

  Raised by `convert_to_tf2` before anything is written.

  Attributes:
    export_dir: the export being converted.
    what: the offending item (a tag set, a checkpoint key, a node name).
  """

  def __init__(self, export_dir: str, what: object, reason: str):
    self.export_dir = export_dir
    self.what = what
    super().__init__(f'cannot convert {export_dir!r} to TF2: {what!r}: '
                     f'{reason}')
