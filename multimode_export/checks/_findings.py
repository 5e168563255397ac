"""What the safety scan finds, and the `allow_ops` that accepts some of it.

`Finding` is one refused op, path or size; `ScanResult` the scan of one
MetaGraphDef (or of the export's files) with the one-line description the
report shows, naming the `--allow_ops` that would accept what it refuses.
"""

import dataclasses
import re
from typing import Dict, FrozenSet, Iterable, List, Optional, Tuple

_OP_TYPE = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9_.>-]*$')
_SHOWN_NODES = 3


@dataclasses.dataclass(frozen=True)
class Finding:
  """One thing the scan refuses (or was told to allow).

  Attributes:
    tags: the tag set of the MetaGraphDef; () for the export's files.
    where: the node ("node 'x'" / "node 'x' of function 'f'") or the file.
    reason: what it does, e.g. 'reads or writes files'.
    op_type: the op type `allow_ops` would name; None for a path or size.
  """
  tags: Tuple[str, ...]
  where: str
  reason: str
  op_type: Optional[str] = None

  def __str__(self) -> str:
    what = f'{self.op_type} at {self.where}' if self.op_type else self.where
    return f'{what}: {self.reason}'


@dataclasses.dataclass(frozen=True)
class ScanResult:
  """The scan of one MetaGraphDef, or of the export's files.

  Attributes:
    tags: the tag set; () for the export's files.
    scanned: what was looked at, e.g. '252 nodes, 0 functions'.
    refused: the findings that fail the scan.
    allowed: findings accepted by `allow_ops`.
  """
  tags: Tuple[str, ...]
  scanned: str
  refused: Tuple[Finding, ...] = ()
  allowed: Tuple[Finding, ...] = ()

  @property
  def ok(self) -> bool:
    return not self.refused

  def describe(self) -> str:
    """One line: what was scanned, what is refused and which flag runs it."""
    if self.refused:
      text = 'refused: ' + _summarize(self.refused)
      op_types = sorted({f.op_type for f in self.refused if f.op_type})
      if op_types:
        text += ('. To run them anyway (only if you trust this export): '
                 f'--allow_ops={",".join(op_types)} (API: allow_ops={op_types})')
    else:
      text = f'{self.scanned}: nothing acts outside the export'
    if self.allowed:
      text += '; allowed by allow_ops: ' + _summarize(self.allowed)
    return text


def _summarize(findings: Iterable[Finding]) -> str:
  """Findings grouped by op type and reason, a few nodes each."""
  groups: Dict[Tuple[Optional[str], str], List[str]] = {}
  for finding in findings:
    groups.setdefault((finding.op_type, finding.reason), []).append(
        finding.where)
  parts = []
  for (op_type, reason), places in groups.items():
    shown = ', '.join(places[:_SHOWN_NODES])
    more = (f' and {len(places) - _SHOWN_NODES} more'
            if len(places) > _SHOWN_NODES else '')
    parts.append(f'{op_type} ({reason}) at {shown}{more}' if op_type
                 else f'{shown}{more}: {reason}')
  return '; '.join(parts)


def check_allow_ops(allow_ops) -> FrozenSet[str]:
  """Validates the `allow_ops` argument of `verify`.

  Args:
    allow_ops: an iterable of op type names (not a single string).

  Returns:
    The names, as a frozenset.

  Raises:
    TypeError: `allow_ops` is a string or not iterable, or holds a non-str.
    ValueError: a name is not an op type name.
  """
  if isinstance(allow_ops, (str, bytes)):
    raise TypeError('allow_ops: expected a collection of op type names, got '
                    f'the string {allow_ops!r} (write [{allow_ops!r}])')
  try:
    names = list(allow_ops)
  except TypeError as e:
    raise TypeError('allow_ops: expected a collection of op type names, got '
                    f'{type(allow_ops).__name__}') from e
  for name in names:
    if not isinstance(name, str):
      raise TypeError(f'allow_ops: expected op type names (str), got {name!r}')
    if not _OP_TYPE.match(name):
      raise ValueError(f'allow_ops: {name!r} is not an op type name')
  return frozenset(names)
