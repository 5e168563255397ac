"""Modes, their tags, and which mode carries the variables.

A multi-mode SavedModel holds one MetaGraphDef per mode and one `variables/`
directory. The variables are those of one mode's graph, the *carrier*,
chosen by a fixed preference: TRAIN (its graph has everything training saved,
optimizer slots included), then EVAL, then PREDICT.
"""

from typing import Callable, Dict, Iterable, Mapping, Optional, Tuple

import tensorflow as tf
from absl import logging

from multimode_export import errors

ModeKeys = tf.estimator.ModeKeys

# Build order (and the order of the MetaGraphDefs), most complete graph first.
MODE_ORDER: Tuple[str, ...] = (ModeKeys.TRAIN, ModeKeys.EVAL, ModeKeys.PREDICT)
# Which mode's graph carries the variables when several are exported: the
# most complete (TRAIN has everything training saved, optimizer slots too).
CARRIER_PREFERENCE: Tuple[str, ...] = MODE_ORDER

# The tag set each mode's MetaGraphDef gets by default.
DEFAULT_TAGS: Dict[str, Tuple[str, ...]] = {
    ModeKeys.TRAIN: (tf.saved_model.TRAINING,),
    ModeKeys.EVAL: ('eval',),
    ModeKeys.PREDICT: (tf.saved_model.SERVING,),
}


def choose_variables_carrier(modes: Iterable[str]) -> str:
  """Returns the mode whose graph's variables the export saves.

  Args:
    modes: the modes being exported (any order, no unknown keys).

  Returns:
    The first of `CARRIER_PREFERENCE` (TRAIN, EVAL, PREDICT) present in
    `modes`.

  Raises:
    ValueError: if `modes` holds none of them.
  """
  present = set(modes)
  for mode in CARRIER_PREFERENCE:
    if mode in present:
      return mode
  raise ValueError(f'modes: expected at least one of {CARRIER_PREFERENCE}, '
                   f'got {sorted(present)!r}')


def ordered_modes(modes: Iterable[str]) -> Tuple[str, ...]:
  """The given modes in build order (carrier first)."""
  present = set(modes)
  return tuple(m for m in MODE_ORDER if m in present)


def normalize_receiver_map(
    input_receiver_fn_map: Mapping[str, Optional[Callable[[], object]]]
) -> Dict[str, Callable[[], object]]:
  """Validates a receiver map and returns a copy in build order.

  Like the stock export, a mode whose receiver fn is None is not requested
  (TFMA's `export_eval_savedmodel` passes `{EVAL: fn, PREDICT: None}` when
  given no serving fn); it is left out and logged at INFO.

  Args:
    input_receiver_fn_map: mode key -> receiver fn or None, as the caller
      gave it.

  Returns:
    A new dict of the requested modes, keys in `MODE_ORDER` order; the
    caller's dict is not touched.

  Raises:
    TypeError: if the map is not a mapping.
    ValueError: if no receiver fn in it is other than None (an empty map
      included), with the stock export's wording.
    errors.InvalidModeError: for any key that is not a ModeKeys value, even
      when other keys are valid.
    errors.ReceiverError: for a receiver fn that is neither None nor
      callable.
  """
  if not isinstance(input_receiver_fn_map, Mapping):
    raise TypeError('input_receiver_fn_map: expected a dict of ModeKeys to '
                    f'receiver fns, got {type(input_receiver_fn_map).__name__}')
  keys = input_receiver_fn_map.keys()
  # Stock ignored unknown keys and said so only when no valid one was left.
  none_valid = bool(keys) and not any(mode in MODE_ORDER for mode in keys)
  for mode in keys:
    if mode not in MODE_ORDER:
      raise errors.InvalidModeError(mode, keys if none_valid else None)
  requested = []
  for mode, fn in input_receiver_fn_map.items():
    if fn is None:
      logging.info('input_receiver_fn_map[%r] is None: mode %r is not '
                   'exported', mode, mode)
    elif not callable(fn):
      raise errors.ReceiverError(
          f'input_receiver_fn_map[{mode!r}]: expected a callable that returns '
          f'an InputReceiver, got {fn!r}', mode, fn)
    else:
      requested.append(mode)
  if not requested:
    raise ValueError(
        errors.no_valid_modes(input_receiver_fn_map.keys()) +
        ' input_receiver_fn_map needs at least one receiver fn that is not '
        'None')
  return {m: input_receiver_fn_map[m] for m in ordered_modes(requested)}


def tags_for(mode: str, custom_tags: Mapping[str, Iterable[str]] = None
            ) -> Tuple[str, ...]:
  """The tag set of `mode`'s MetaGraphDef, custom tags taking precedence."""
  if custom_tags and mode in custom_tags:
    return tuple(custom_tags[mode])
  return DEFAULT_TAGS[mode]


def check_tags(tags: Optional[Mapping[str, Iterable[str]]],
               modes: Iterable[str]) -> None:
  """Validates custom tags for the exported `modes`.

  Raises:
    errors.InvalidModeError: a key of `tags` is not a ModeKeys value.
    ValueError: a tag set is empty or not a list of non-empty strings, or
      two exported modes would get the same tag set.
  """
  if tags is None:
    return
  for mode, tag_set in tags.items():
    if mode not in MODE_ORDER:
      raise errors.InvalidModeError(mode)
    if isinstance(tag_set, str) or not tag_set or not all(
        isinstance(t, str) and t for t in tag_set):
      raise ValueError(f'tags[{mode!r}]: expected a non-empty list of tag '
                       f'strings, got {tag_set!r}')
  used = [frozenset(tags_for(m, tags)) for m in modes]
  if len(set(used)) != len(used):
    raise ValueError(f'tags: every exported mode needs a distinct tag set, got '
                     f'{[sorted(u) for u in used]}')
