"""`inspect`: what a SavedModel holds, per tag set, as a readable table.

`summarize` returns the facts as frozen value objects; `format_summary`
renders them; `inspect` does both. Only the SavedModel proto and the
variables' index are read: nothing is loaded or run, so this is fast on any
export, however large its variables, and safe on one you did not make. What
`verify`'s safety scan refuses is listed as `safety:` lines.
"""

import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

import tensorflow as tf

from multimode_export import _filesystem as filesystem
from multimode_export import errors
from multimode_export.checks import _findings as findings_lib
from multimode_export.checks import _safety as safety_lib
from multimode_export.checks import _wording as wording
from multimode_export.graph import _graph_def as graph_def_lib
from multimode_export.graph import _saver_spec as saver_spec
from multimode_export.publishing import _layout as layout
from multimode_export.saved_model import _format
from multimode_export.saved_model import _object_graph
from multimode_export.variables import _checkpoint as checkpoint

_MAX_LISTED_VARIABLES = 50
# TensorFlow Model Analysis' EvalSavedModel conventions.
_TFMA_SIGNATURE_KEY = 'eval'
_TFMA_VERSION_INPUT = 'tfma/version'


@dataclasses.dataclass(frozen=True)
class TensorSummary:
  """One input or output of a signature.

  Attributes:
    key: the signature's key for it.
    name: the graph tensor name (or, for a composite tensor, its encoding).
    dtype: dtype name, e.g. 'float32'.
    shape: e.g. '(-1, 3)', '()' or 'unknown'.
  """
  key: str
  name: str
  dtype: str
  shape: str


@dataclasses.dataclass(frozen=True)
class SignatureSummary:
  """One SignatureDef."""
  key: str
  method_name: str
  inputs: Tuple[TensorSummary, ...]
  outputs: Tuple[TensorSummary, ...]


@dataclasses.dataclass(frozen=True)
class MetaGraphSummary:
  """One MetaGraphDef (tag set).

  Attributes:
    tags: the tag set, sorted.
    num_ops: nodes in its GraphDef.
    signatures: its signatures, by key.
    train_ops: nodes of the `saved_model_train_op` collection.
    main_ops: the main op (or legacy init op) the loaders run.
    assets: (tensor name, file name under `assets/`) pairs.
    restored: the checkpoint keys its saver restores; None when the saver
      cannot be read from the graph (e.g. a TF2 object-based saver).
    tfma: for an eval graph TensorFlow Model Analysis can analyse (its
      `eval` signature has a `tfma/version` input), the TFMA version that
      built it ('unknown' if that input is not a constant); else None.
    safety: what the safety scan refuses in it (see `verify`).
    functions: the root object's functions (TF2 object-based SavedModels).
  """
  tags: Tuple[str, ...]
  num_ops: int
  signatures: Tuple[SignatureSummary, ...]
  train_ops: Tuple[str, ...]
  main_ops: Tuple[str, ...]
  assets: Tuple[Tuple[str, str], ...]
  restored: Optional[Tuple[str, ...]]
  tfma: Optional[str] = None
  safety: Tuple[findings_lib.Finding, ...] = ()
  functions: Tuple[_object_graph.ObjectFunction, ...] = ()


@dataclasses.dataclass(frozen=True)
class VariableSummary:
  """One entry of `variables/`.

  Attributes:
    name: the checkpoint key.
    dtype: dtype name.
    shape: the full shape.
    nbytes: tensor size in bytes (None for strings).
    used_by: tag sets of the MetaGraphDefs whose saver restores it.
  """
  name: str
  dtype: str
  shape: Tuple[int, ...]
  nbytes: Optional[int]
  used_by: Tuple[Tuple[str, ...], ...]


@dataclasses.dataclass(frozen=True)
class ExportSummary:
  """Everything `inspect` shows.

  Attributes:
    export_dir: the SavedModel directory.
    meta_graphs: one summary per MetaGraphDef, in file order.
    variables: the entries of `variables/`, sorted by name; () if none.
    variables_files: (file name, bytes) of `variables/`.
    variables_error: why `variables/` could not be read, or None.
    assets_extra: files under `assets.extra/`, relative paths.
    safety: what the safety scan refuses in the export's files (a
      `variables/` index claiming more than it stores, links out).
  """
  export_dir: str
  meta_graphs: Tuple[MetaGraphSummary, ...]
  variables: Tuple[VariableSummary, ...]
  variables_files: Tuple[Tuple[str, int], ...]
  variables_error: Optional[str]
  assets_extra: Tuple[str, ...]
  safety: Tuple[findings_lib.Finding, ...] = ()


def _shape_text(shape_proto) -> str:
  shape = tf.TensorShape(shape_proto)
  if shape.rank is None:
    return 'unknown'
  dims = [-1 if d is None else d for d in shape.as_list()]
  return '(' + ', '.join(map(str, dims)) + (',)' if len(dims) == 1 else ')')


def _tensor(key: str, info) -> TensorSummary:
  encoding = info.WhichOneof('encoding')
  name = info.name if encoding == 'name' else f'<{encoding}>'
  # DT_INVALID (0) marks e.g. the init op output of TF2 SavedModels.
  dtype = tf.as_dtype(info.dtype).name if info.dtype else 'invalid'
  return TensorSummary(key, name, dtype, _shape_text(info.tensor_shape))


def _tfma_version(meta_graph_def) -> Optional[str]:
  """The TFMA version that built an EvalSavedModel graph, or None.

  TFMA's `EvalInputReceiver` adds a constant `tfma/version` input to `eval`.
  """
  signature = meta_graph_def.signature_def.get(_TFMA_SIGNATURE_KEY)
  if signature is None or _TFMA_VERSION_INPUT not in signature.inputs:
    return None
  name = graph_def_lib.node_name(signature.inputs[_TFMA_VERSION_INPUT].name)
  node = next((n for n in meta_graph_def.graph_def.node if n.name == name),
              None)
  try:  # read from the proto: a hostile constant can claim [2**34]
    return graph_def_lib.const_strings(node)[0]
  except (ValueError, IndexError, UnicodeDecodeError):
    return 'unknown'


def _meta_graph(meta_graph_def, scan: findings_lib.ScanResult
               ) -> MetaGraphSummary:
  signatures = tuple(
      SignatureSummary(
          key, sig.method_name,
          tuple(_tensor(k, v) for k, v in sorted(sig.inputs.items())),
          tuple(_tensor(k, v) for k, v in sorted(sig.outputs.items())))
      for key, sig in sorted(meta_graph_def.signature_def.items()))
  try:
    restored = tuple(sorted(saver_spec.required_variables(meta_graph_def)))
  except saver_spec.UnsupportedSaverError:
    restored = None
  return MetaGraphSummary(
      tags=_format.tags_of(meta_graph_def),
      num_ops=len(meta_graph_def.graph_def.node),
      signatures=signatures,
      train_ops=_format.collection_names(
          meta_graph_def, _format.TRAIN_OP_COLLECTION),
      main_ops=_format.main_op_names(meta_graph_def),
      assets=_format.asset_files(meta_graph_def),
      restored=restored,
      tfma=_tfma_version(meta_graph_def),
      safety=scan.refused,
      functions=_object_graph.root_functions(meta_graph_def))


def _nbytes(dtype: tf.dtypes.DType, shape: Sequence[int]) -> Optional[int]:
  if dtype == tf.string or not dtype.is_numpy_compatible:
    return None
  count = 1
  for dim in shape:
    count *= dim
  return count * dtype.size


def _variables(export_dir: str, meta_graphs: Sequence[MetaGraphSummary]):
  """(variables, files, error) of `variables/`, from its index only."""
  if not _format.has_variables(export_dir):
    return (), (), None
  prefix = _format.variables_prefix(export_dir)
  try:
    reader = checkpoint.open_reader(prefix)
  except errors.CheckpointReadError as e:
    cause = e.__cause__
    return (), (), f'unreadable: {type(cause).__name__}: {cause}'.splitlines()[0]
  shapes = reader.get_variable_to_shape_map()
  dtypes = reader.get_variable_to_dtype_map()
  users: Dict[str, List[Tuple[str, ...]]] = {}
  for meta in meta_graphs:
    for name in meta.restored or ():
      users.setdefault(name, []).append(meta.tags)
  variables = tuple(
      VariableSummary(name, dtypes[name].name, tuple(shapes[name]),
                      _nbytes(dtypes[name], shapes[name]),
                      tuple(users.get(name, ())))
      for name in sorted(shapes))
  variables_dir = filesystem.join(export_dir, tf.saved_model.VARIABLES_DIRECTORY)
  files = tuple(
      (name, tf.io.gfile.stat(filesystem.join(variables_dir, name)).length)
      for name in sorted(tf.io.gfile.listdir(variables_dir)))
  return variables, files, None


def _assets_extra(export_dir: str) -> Tuple[str, ...]:
  root = filesystem.join(export_dir, 'assets.extra')
  if not tf.io.gfile.isdir(root):
    return ()
  found = []
  for dirname, _, filenames in tf.io.gfile.walk(root):
    relative = dirname[len(root):].strip('/')
    found.extend(f'{relative}/{f}' if relative else f for f in filenames)
  return tuple(sorted(found))


def summarize(export_dir: filesystem.PathLike) -> ExportSummary:
  """Reads what a SavedModel holds, without loading it.

  Args:
    export_dir: the SavedModel directory (str, bytes or os.PathLike).

  Returns:
    An ExportSummary.

  Raises:
    errors.NotASavedModelError: `export_dir` holds no readable SavedModel.
  """
  export_dir = filesystem.as_str(export_dir)
  saved_model = _format.read_saved_model(export_dir)
  files_scan, *scans = safety_lib.scan_saved_model(export_dir, saved_model)
  meta_graphs = tuple(_meta_graph(m, scan) for m, scan in
                      zip(saved_model.meta_graphs, scans))
  variables, files, error = _variables(export_dir, meta_graphs)
  return ExportSummary(export_dir, meta_graphs, variables, files, error,
                       _assets_extra(export_dir), files_scan.refused)


def human_bytes(count: Optional[int]) -> str:
  """'64 B', '1.5 KiB', '3.0 GiB'."""
  if count is None:
    return '?'
  value = float(count)
  for unit in ('B', 'KiB', 'MiB', 'GiB'):
    if value < 1024 or unit == 'GiB':
      return f'{count} B' if unit == 'B' else f'{value:.1f} {unit}'
    value /= 1024
  raise AssertionError('unreachable')


def _tags_text(tags: Sequence[str]) -> str:
  return '[' + ','.join(tags) + ']'


def _table(rows: Sequence[Sequence[str]], indent: str) -> List[str]:
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  return [indent + '  '.join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
          for r in rows]


def _format_meta_graph(meta: MetaGraphSummary, total_variables: int
                      ) -> List[str]:
  lines = [f'MetaGraphDef {_tags_text(meta.tags)}: {meta.num_ops} ops, '
           f'{wording.count(len(meta.signatures), "signature")}']
  restored = ('saver not readable from the graph' if meta.restored is None
              else f'{len(meta.restored)} of {total_variables}')
  lines.append(f'  train op: {", ".join(meta.train_ops) or "-"}    '
               f'main op: {", ".join(meta.main_ops) or "-"}    '
               f'restores: {restored}')
  if meta.assets:
    lines.append('  assets: ' + ', '.join(f'{f} ({t})' for t, f in meta.assets))
  if meta.tfma is not None:
    lines.append(f'  TFMA-ready eval graph (signature {_TFMA_SIGNATURE_KEY!r}), '
                 f'built by TFMA {meta.tfma}')
  lines.extend(f'  safety: {finding}' for finding in meta.safety)
  lines.extend(f'  TF2 function {f.describe()}' for f in meta.functions)
  for sig in meta.signatures:
    lines.append(f'  signature {sig.key!r}  {sig.method_name or "(no method)"}')
    rows = [[direction, t.key, t.dtype, t.shape, t.name]
            for direction, tensors in (('in', sig.inputs), ('out', sig.outputs))
            for t in tensors]
    if rows:
      lines.extend(_table(rows, '    '))
  return lines


def _format_variables(summary: ExportSummary,
                      max_variables: int) -> List[str]:
  if summary.variables_error:
    return [f'variables/: {summary.variables_error}']
  if not summary.variables:
    return ['variables/: none']
  total = sum(v.nbytes or 0 for v in summary.variables)
  on_disk = sum(size for _, size in summary.variables_files)
  lines = [f'variables/: {wording.count(len(summary.variables), "variable")}, '
           f'{human_bytes(total)} of tensors, {human_bytes(on_disk)} in '
           f'{wording.count(len(summary.variables_files), "file")}']
  groups: Dict[Tuple[Tuple[str, ...], ...], List[VariableSummary]] = {}
  for variable in summary.variables:
    groups.setdefault(variable.used_by, []).append(variable)
  # With a saver that cannot be read, "restored by no graph" is unknown.
  unknown = any(m.restored is None for m in summary.meta_graphs)
  nobody = '? (saver not readable)' if unknown else '(no graph restores it)'
  rows = [['used by', 'variables', 'bytes']]
  for used_by, members in sorted(groups.items(), key=lambda g: -len(g[0])):
    who = ' '.join(_tags_text(t) for t in used_by) or nobody
    rows.append([who, str(len(members)),
                 human_bytes(sum(v.nbytes or 0 for v in members))])
  lines.extend(_table(rows, '  '))
  lines.append('')
  shown = summary.variables[:max_variables]
  rows = [['name', 'dtype', 'shape', 'bytes', 'used by']]
  rows += [[v.name, v.dtype, str(list(v.shape)), human_bytes(v.nbytes),
            ' '.join(_tags_text(t) for t in v.used_by) or
            ('?' if unknown else '-')] for v in shown]
  lines.extend(_table(rows, '  '))
  if len(summary.variables) > len(shown):
    lines.append(f'  ... and {len(summary.variables) - len(shown)} more')
  return lines


def format_summary(summary: ExportSummary,
                   max_variables: int = _MAX_LISTED_VARIABLES) -> str:
  """Renders an ExportSummary as text tables.

  Args:
    summary: from `summarize`.
    max_variables: list at most this many variables one by one (all are
      counted in the per-tag-set totals).

  Returns:
    Multi-line text, no trailing newline.
  """
  lines = [f'SavedModel {summary.export_dir}: '
           f'{wording.count(len(summary.meta_graphs), "MetaGraphDef")} ' +
           ' '.join(_tags_text(m.tags) for m in summary.meta_graphs), '']
  for meta in summary.meta_graphs:
    lines.extend(_format_meta_graph(meta, len(summary.variables)))
    lines.append('')
  lines.extend(f'safety: {finding}' for finding in summary.safety)
  lines.extend(_format_variables(summary, max_variables))
  if summary.assets_extra:
    lines.append('')
    lines.append('assets.extra/: ' + ', '.join(summary.assets_extra))
  return '\n'.join(lines)


def inspect(export_dir: filesystem.PathLike) -> str:
  """A readable table of every tag set, signature and variable of an export.

  `export_dir` may be a SavedModel directory or any path
  `layout.find_layout` understands: a base of numbered shared-layout
  versions (the newest is shown), a per-mode base (every mode's SavedModel
  of the newest version all mode directories hold) or a per-mode
  `export_dir=` (every mode's SavedModel). For those, a first line says
  which layout was found and what is shown.

  Args:
    export_dir: the export's path (str, bytes or os.PathLike).

  Returns:
    The text `multimode-export inspect` prints.

  Raises:
    errors.NotASavedModelError: `export_dir` holds no readable SavedModel
      and no export of either layout.
  """
  export_dir = filesystem.as_str(export_dir)
  if _format.is_saved_model(export_dir):
    return format_summary(summarize(export_dir))
  try:
    found, version, dirs = layout.newest_export(export_dir)
  except errors.NotASavedModelError:
    return format_summary(summarize(export_dir))  # says why it is none
  if not dirs:
    raise errors.NotASavedModelError(
        export_dir, f'{layout.describe(found, version)}, but no mode '
        'directory holds a SavedModel')
  sections = [f'Export {export_dir}: {layout.describe(found, version)}']
  for mode, path in dirs.items():
    if found.kind == layout.PER_MODE:
      sections.append(f'== {layout.MODE_DIRS[mode]} ==')
    sections.append(format_summary(summarize(path)))
  return '\n\n'.join(sections)
