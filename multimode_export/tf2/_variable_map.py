"""One set of variables for every mode, matched through the checkpoint keys.

Each mode's graph has its own variable nodes; its saver says which checkpoint
entry (key and slice) each one is restored from. Two variables restored from
the same entry are the same variable: the non-carrier modes' variables are
mapped onto the carrier's. This is also how a serve graph whose Scaffold
saver restores `w` from `w/ExponentialMovingAverage` (an EMA model) keeps
serving the shadow: its `w` becomes the carrier's `w/ExponentialMovingAverage`.

What cannot be mapped is refused: a checkpoint entry restored into something
other than a resource variable (a `MutableHashTable`'s contents, as SDCA
optimizers keep; a reference variable), a key the carrier's saver does not
restore, a saver whose keys cannot be read from its graph.
"""

import dataclasses
from typing import Dict, Mapping, Tuple

from multimode_export import errors
from multimode_export.graph import _saver_spec
from multimode_export.tf2 import _source

_VARIABLE_WRITE = 'AssignVariableOp'


@dataclasses.dataclass(frozen=True)
class VariablePlan:
  """Which variable node of each mode is which carrier variable.

  Attributes:
    shared: mode -> {variable node of that mode: the carrier's variable
      node}, for every non-carrier mode.
    checkpoint_entries: carrier variable node -> (checkpoint key, slice spec)
      it is restored from in the source's `variables/`.
  """
  shared: Mapping[str, Mapping[str, str]]
  checkpoint_entries: Mapping[str, Tuple[str, str]]


def _targets(source: _source.Source, part: _source.Part
            ) -> Tuple[_saver_spec.RestoreTarget, ...]:
  if not part.meta_graph_def.saver_def.restore_op_name:
    return ()
  try:
    targets = _saver_spec.restore_targets(part.meta_graph_def)
  except _saver_spec.UnsupportedSaverError as e:
    raise errors.ConversionError(
        source.export_dir, part.meta_graph_def.saver_def.restore_op_name,
        f'the saver of mode {part.mode!r} cannot be read from its graph '
        f'({e}): which variable each checkpoint key restores is unknown') from e
  for target in targets:
    if target.op == _VARIABLE_WRITE:
      continue
    if target.op and target.op.startswith('LookupTableImport'):
      raise errors.ConversionError(
          source.export_dir, target.node,
          f'mode {part.mode!r} restores the contents of lookup table '
          f'{target.node!r} from checkpoint key {target.key!r} (e.g. the '
          'example state of an SDCA optimizer); a TF2 SavedModel keeps no '
          'table contents in its checkpoint')
    raise errors.ConversionError(
        source.export_dir, target.key,
        f'mode {part.mode!r} restores checkpoint key {target.key!r} into '
        f'{target.node!r} through {target.op!r}, not into a resource '
        'variable (reference variables cannot be converted)')
  return targets


def plan_variables(source: _source.Source) -> VariablePlan:
  """Maps every mode's restored variables onto the carrier's.

  Raises:
    errors.ConversionError: something restored that is not a resource
      variable, a key the carrier does not restore, an unreadable saver.
  """
  primary = source.primary
  entries: Dict[str, Tuple[str, str]] = {}
  by_entry: Dict[Tuple[str, str], str] = {}
  for target in _targets(source, primary):
    entries[target.node] = (target.key, target.slice_spec)
    by_entry[(target.key, target.slice_spec)] = target.node
  shared: Dict[str, Dict[str, str]] = {}
  for part in source.parts[1:]:
    mapping = shared.setdefault(part.mode, {})
    for target in _targets(source, part):
      entry = (target.key, target.slice_spec)
      if entry not in by_entry:
        raise errors.ConversionError(
            source.export_dir, target.key,
            f'mode {part.mode!r} restores checkpoint key {target.key!r}'
            f'{" slice " + repr(target.slice_spec) if target.slice_spec else ""}'
            f', which the variables carrier (mode {primary.mode!r}) does not '
            'restore: its variable would not be shared with the other modes')
      mapping[target.node] = by_entry[entry]
  return VariablePlan(shared, entries)
