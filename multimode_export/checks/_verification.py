"""`verify`: load and run every MetaGraphDef of a SavedModel, report per check.

Works on any SavedModel (one written by this package, the stock
`experimental_export_all_saved_models`, `export_saved_model`, ...). For the
whole export it checks:

- `saved_model`: the proto parses and holds at least one MetaGraphDef;
- `safety` (first, for the export's files and then each tag set): the
  static scan of `_safety` (ops not on the allowlist of ops that act in
  memory, asset and saver paths leaving the export, constants and index
  entries claiming other sizes than they store, ambiguous tag sets).
  Nothing of a tag set is loaded or run when its scan or the files' scan
  fails: `tf1_load` and `tf2_load` are then reported as skipped (and
  `variables` too, for the files), with the reason;
- `variables`: `variables/variables` is readable and every tensor's bytes
  match the crc32c the index stores for it (each data file is read once
  through a bounded buffer; a truncated or corrupt data file fails here,
  naming the variable). On a local export that pass runs on a thread while
  the tag sets load (`checks/_variables_check`); its result keeps its place
  in the report all the same.

and for each MetaGraphDef (tag set):

- `saver`: every checkpoint entry the graph's saver restores is present with
  the dtype and shape the graph expects (read from the GraphDef);
- `assets`: every asset file the graph uses exists under `assets/`;
- `inputs:<key>`: fails when no synthetic input can be built for a signature
  (a resource dtype, a composite tensor other than sparse or ragged); that
  signature is not run;
- `tf1_load`: `tf.compat.v1.saved_model.loader.load` in a fresh graph;
- `tf1_signature:<key>`: each signature runs in that Session on synthetic
  inputs (see `synthetic_inputs`) and its outputs have the signature's shapes;
- `raw_matches:<key>` and `warmup`: raw signatures and TF Serving warmup
  records (see `checks/_serving_checks`);
- `train_step`: when the graph has a train op (`saved_model_train_op`), one
  step runs: the train op with the training signature's inputs;
- `tf2_load`: `tf.saved_model.load(export_dir, tags=...)`, or, for a graph
  whose signature lists one tensor under several keys (which that function
  cannot load: TFMA's eval graphs), `loading.load_tag_set`'s import;
- `tf2_signature:<key>`: each signature of the TF2 object runs; one with
  sparse, ragged or repeated inputs (or none in the TF2 object) is pruned
  from the loaded graph with each input tensor fed once.
- `tf2_function:<name>`: for a TF2 object-based SavedModel (one MetaGraphDef
  whose object graph's root has functions: `tf.saved_model.save`'s and
  `convert_to_tf2`'s), `tf2_load` loads it without tags and each root
  function (`train_step`, `eval_update`, ...) runs once on synthetic inputs
  (`_object_functions`).

A check that fails stops only the checks that depend on it. The loads and
runs (`_runs`) happen in a child process (`_sandbox`), tag set by tag set,
each check within `timeout` seconds and the child under a memory cap; one
that hangs, exhausts the cap or ends the child fails, naming the check and
tag set. With `max_load_gib`, a tag set whose variables take more is not
loaded: a `loads` check reports it skipped, with the reason.

Given an export base or a per-mode export instead of a SavedModel directory,
`verify` checks the newest export's SavedModels (see `verify`).
"""

import dataclasses
from typing import Dict, FrozenSet, Iterable, List, Optional, Tuple

import tensorflow as tf
from absl import logging

from multimode_export import _filesystem as filesystem
from multimode_export import errors
from multimode_export.checks import _findings as findings_lib
from multimode_export.checks import _load_budget as load_budget
from multimode_export.checks import _report as report_lib
from multimode_export.checks import _runs as runs
from multimode_export.checks import _safety as safety
from multimode_export.checks import _sandbox as sandbox
from multimode_export.checks import _variables_check as variables_check
from multimode_export.checks import _wording as wording
from multimode_export.graph import _saver_spec as saver_spec
from multimode_export.publishing import _layout as layout
from multimode_export.saved_model import _format


def _check_saver(meta_graph_def, variables) -> str:
  if not meta_graph_def.saver_def.restore_op_name:
    return 'no saver: the graph restores nothing'
  try:
    needed = saver_spec.required_variables(meta_graph_def)
  except saver_spec.UnsupportedSaverError as e:
    return f'saver not readable from the graph ({e}); the loads check it'
  if variables is None:
    raise report_lib.CheckFailed(
        f'the saver restores {len(needed)} variables but the export has no '
        'variables/')
  problems = []
  for name, spec in sorted(needed.items()):
    if name not in variables:
      problems.append(f'{name!r} missing')
      continue
    dtype, shape = variables[name]
    if spec.dtype != dtype or (spec.shape is not None and spec.shape != shape):
      want = list(spec.shape) if spec.shape is not None else '?'
      problems.append(f'{name!r} is {dtype}{list(shape)}, the graph expects '
                      f'{spec.dtype}{want}')
  if problems:
    shown = '; '.join(problems[:5])
    more = f' and {len(problems) - 5} more' if len(problems) > 5 else ''
    raise report_lib.CheckFailed(
        f'{len(problems)} of {len(needed)} restored variables do not match: '
        f'{shown}{more}')
  return (f'{wording.count(len(needed), "restored variable")} present, '
          'dtypes and shapes match')


def _check_assets(export_dir: str, meta_graph_def) -> str:
  assets = _format.asset_files(meta_graph_def)
  missing = [name for _, name in assets if not tf.io.gfile.exists(
      filesystem.join(export_dir, tf.saved_model.ASSETS_DIRECTORY, name))]
  if missing:
    raise report_lib.CheckFailed(
        f'missing under assets/: {", ".join(missing)}')
  return f'{wording.count(len(assets), "asset file")} present'


@dataclasses.dataclass(frozen=True)
class _Budget:
  """How tag sets are loaded and run: see `verify`'s arguments."""
  run_train_step: bool
  max_load_gib: Optional[float]
  timeout: float


def _runner(export_dir: str, budget: _Budget):
  """The runner of an export's tag sets: a child process, but for ram://."""
  if export_dir.startswith('ram://'):
    return sandbox.InProcessRunner(budget.run_train_step)
  return sandbox.LoadRunner(export_dir, budget.run_train_step, budget.timeout,
                            load_budget.memory_cap(budget.max_load_gib))


def verify(export_dir: filesystem.PathLike, *,
           run_train_step: bool = True,
           max_load_gib: Optional[float] = None,
           allow_ops: Iterable[str] = (),
           timeout: float = load_budget.DEFAULT_TIMEOUT
          ) -> report_lib.VerifyReport:
  """Loads and runs every MetaGraphDef of an export; reports each check.

  Never raises for a broken export: every problem is a failed check in the
  report. See the module docstring for the checks.

  `export_dir` may be a SavedModel directory or any path `layout.find_layout`
  understands; for those the report starts with a `layout` check saying what
  was found and which export was chosen:

  * a base of numbered shared-layout versions: the newest version is
    verified, and `report.export_dir` is that version's directory;
  * a per-mode base (`<base>/{train,eval,serve}/<version>`): every mode's
    SavedModel of the newest version all mode directories hold; the
    `layout` check fails if no version is complete;
  * a per-mode `export_dir=` (`<dir>/{train,eval,serve}`): every mode's
    SavedModel.

  In a per-mode report every check name is prefixed by its mode directory
  (`serve/tf1_load`, `train/variables`), and `report.export_dir` is the
  given path.

  Args:
    export_dir: the export's path (str, bytes or os.PathLike).
    run_train_step: run one step of each graph's train op (in memory only;
      nothing is written).
    max_load_gib: if set, a tag set whose variables take more GiB is not
      loaded (its load and signature checks are reported as one skipped
      `loads` check); every variable's crc32c is still checked.
    allow_ops: op types the `safety` check accepts although they act
      outside the export or are not on its allowlist (e.g. `['PrintV2']`).
      Nothing is loaded or run while a refused op, path or size remains
      (see docs/cli.md).
    timeout: seconds each check that loads or runs a tag set may take in
      the child process that runs them; one that takes longer fails, naming
      the check and tag set. The child's memory is capped too: 2 GiB plus
      three times `max_load_gib`, or 80% of the machine's memory.

  Returns:
    A VerifyReport; `report.ok` tells whether every check passed.

  Raises:
    TypeError: `export_dir` is not a path, or `allow_ops` is not a
      collection of str.
    ValueError: `max_load_gib` or `timeout` is not a positive number, or a
      name in `allow_ops` is not an op type name.
  """
  load_budget.check_budget(max_load_gib)
  load_budget.check_timeout(timeout)
  allow_ops = findings_lib.check_allow_ops(allow_ops)
  try:
    export_dir = filesystem.as_str(export_dir)
  except TypeError as e:
    raise TypeError('export_dir: expected str, bytes or os.PathLike, got '
                    f'{type(export_dir).__name__}') from e
  budget = _Budget(run_train_step, max_load_gib, timeout)
  if _format.is_saved_model(export_dir):
    return _verify_saved_model(export_dir, budget, allow_ops)
  try:
    found, version, dirs = layout.newest_export(export_dir)
  except (errors.NotASavedModelError, tf.errors.OpError):
    # Not an export of either layout: report why it is no SavedModel.
    return _verify_saved_model(export_dir, budget, allow_ops)
  missing = [layout.MODE_DIRS[m] for m in found.mode_dirs if m not in dirs]
  layout_check = report_lib.CheckResult(
      'layout', (), not missing, layout.describe(found, version) + (
          f'; no complete version: {", ".join(missing)} missing'
          if missing else ''))
  if found.kind == layout.SHARED:
    report = _verify_saved_model(dirs[layout.SHARED], budget, allow_ops)
    return report_lib.VerifyReport(report.export_dir,
                                   (layout_check,) + report.checks)
  checks = [layout_check]
  for mode, path in dirs.items():
    report = _verify_saved_model(path, budget, allow_ops)
    prefix = layout.MODE_DIRS[mode] + '/'
    checks.extend(dataclasses.replace(c, name=prefix + c.name)
                  for c in report.checks)
  return report_lib.VerifyReport(export_dir, tuple(checks))


def refused_op_types(export_dir: str) -> Tuple[str, ...]:
  """The op types the `safety` check of `verify` refuses in a SavedModel."""
  saved_model = _format.read_saved_model(export_dir)
  return tuple(sorted({
      finding.op_type
      for scan in safety.scan_saved_model(export_dir, saved_model)
      for finding in scan.refused if finding.op_type}))


def _verify_saved_model(export_dir: str, budget: _Budget,
                        allow_ops: FrozenSet[str]
                        ) -> report_lib.VerifyReport:
  """`verify` for one SavedModel directory."""
  recorder = report_lib.Recorder()
  holder = {}

  def read():
    holder['saved_model'] = _format.read_saved_model(export_dir)
    metas = holder['saved_model'].meta_graphs
    return f'{wording.count(len(metas), "MetaGraphDef")}: ' + ' '.join(
        f'[{",".join(_format.tags_of(m))}]' for m in metas)

  if not recorder.run('saved_model', (), read):
    return report_lib.VerifyReport(export_dir, recorder.results)

  # The loading child starts first: it imports TensorFlow during the scan.
  with _runner(export_dir, budget) as runner:
    _scan_and_run(export_dir, holder['saved_model'], allow_ops, budget,
                  runner, recorder)
  return report_lib.VerifyReport(export_dir, recorder.results)


def _scan_and_run(export_dir: str, saved_model, allow_ops: FrozenSet[str],
                  budget: _Budget, runner, recorder: report_lib.Recorder
                 ) -> None:
  """The `safety` checks, then every tag set's and the export's checks."""
  unsafe = _check_safety(export_dir, saved_model, allow_ops, recorder)
  metas = saved_model.meta_graphs
  if () in unsafe:
    recorder.skip('variables', (), unsafe[()])
    _verify_tag_sets(export_dir, metas, None, unsafe, budget, runner,
                     recorder)
    return
  # The crc32c pass of `variables` runs beside the loads (on a local export:
  # see checks/_variables_check). Its result, and the `saver` checks that
  # depend on it, are recorded at their places once it ends; leaving the
  # `with` block by any exception stops it.
  place = recorder.reserve()
  with variables_check.VariablesCheck(export_dir) as variables:
    savers = _verify_tag_sets(export_dir, metas, variables, unsafe, budget,
                              runner, recorder)
    variables_ok = recorder.run('variables', (), variables.result,
                                place=place)
  for saver_place, graph in savers:
    if variables_ok:
      recorder.run('saver', graph.tags, lambda g=graph: _check_saver(
          g.meta_graph_def, variables.variables), place=saver_place)
    else:
      recorder.drop(saver_place)


def _verify_tag_sets(export_dir: str, metas,
                     variables: Optional[variables_check.VariablesCheck],
                     unsafe: Dict[Tuple[str, ...], str], budget: _Budget,
                     runner, recorder: report_lib.Recorder
                    ) -> List[Tuple[report_lib.Place, runs.Graph]]:
  """The checks of each tag set, but `saver`: returns where each goes.

  A `saver` check depends on the `variables` check, which may still be
  running: its place is kept (when `variables` can still pass) and returned
  with its graph, for the caller to fill or drop.
  """
  savers = []
  for index, meta_graph_def in enumerate(metas):
    graph = runs.prepare(export_dir, meta_graph_def, recorder)
    if variables is not None and variables.may_pass:
      savers.append((recorder.reserve(), graph))
    _verify_tag_set(graph, index, unsafe, budget, runner, recorder)
  return savers


def _verify_tag_set(graph: runs.Graph, index: int,
                    unsafe: Dict[Tuple[str, ...], str], budget: _Budget,
                    runner, recorder: report_lib.Recorder) -> None:
  """The checks of one tag set after `saver`: assets, then its runs."""
  meta_graph_def, export_dir = graph.meta_graph_def, graph.export_dir
  logging.info('Verifying the MetaGraphDef tagged %s', graph.tags)
  if _format.asset_files(meta_graph_def):
    recorder.run('assets', graph.tags,
                 lambda: _check_assets(export_dir, meta_graph_def))
  reason = unsafe.get((), unsafe.get(graph.tags))
  if reason:
    for name in ('tf1_load', 'tf2_load'):
      recorder.skip(name, graph.tags, reason)
    return
  skip = load_budget.over_budget(export_dir, meta_graph_def,
                                 budget.max_load_gib)
  if skip:
    recorder.skip('loads', graph.tags, skip)
    return
  runner.run(graph, index, recorder)


def _check_safety(export_dir: str, saved_model, allow_ops: FrozenSet[str],
                  recorder: report_lib.Recorder
                 ) -> Dict[Tuple[str, ...], str]:
  """Runs the `safety` checks first; returns tags -> why not to run them.

  Nothing of the export is loaded or run before every MetaGraphDef and the
  export's files are scanned; `()` stands for the files (`variables/`).
  """
  unsafe = {}
  for scan in safety.scan_saved_model(export_dir, saved_model, allow_ops):
    if scan.ok:
      recorder.run('safety', scan.tags, scan.describe)
    else:
      recorder.fail('safety', scan.tags, scan.describe())
      where = f'[{",".join(scan.tags)}]' if scan.tags else 'the export'
      unsafe[scan.tags] = f'not run: the safety check of {where} failed'
  return unsafe
