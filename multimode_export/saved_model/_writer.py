"""Writing built mode graphs and their variables as one SavedModel directory.

Order inside the directory: `variables/`, `assets/`, `assets.extra/`, and
the `saved_model.pb` last, so that on filesystems without atomic directory
rename a complete proto always means a complete export.
"""

import dataclasses
from typing import Dict, Optional, Sequence

import tensorflow as tf
from absl import logging

from multimode_export import _filesystem as filesystem
from multimode_export import errors
from multimode_export.graph import _builder as mode_graph
from multimode_export.graph import _saver_spec as saver_spec
from multimode_export.saved_model import _assets_extra as assets_extra_lib
from multimode_export.saved_model import _fingerprint as fingerprint
from multimode_export.variables import _checkpoint as checkpoint_lib
from multimode_export.variables import _transfer as variables_transfer


@dataclasses.dataclass(frozen=True)
class WriteOptions:
  """Settings of one SavedModel write.

  Attributes:
    as_text: write `saved_model.pbtxt` instead of `saved_model.pb`.
    allow_links: let `variables/` reflink or hard-link checkpoint files.
    chunk_bytes: memory bound when streaming a subset of the checkpoint.
    session_config: ConfigProto for the Session fallback.
  """
  as_text: bool = False
  allow_links: bool = True
  chunk_bytes: int = variables_transfer.DEFAULT_CHUNK_BYTES
  session_config: Optional[object] = None


def variables_needed(graphs: Sequence[mode_graph.ModeGraph],
                     carrier: mode_graph.ModeGraph
                    ) -> Optional[Dict[str, saver_spec.VariableSpec]]:
  """The entries `variables/` must hold, or None if a Session is needed.

  The carrier decides the set, as in the stock export; entries another graph
  restores but the carrier lacks are added, so every graph in the export
  loads.
  """
  if any(g.variables is None for g in graphs):
    return None
  return saver_spec.union([carrier.variables] +
                          [g.variables for g in graphs if g is not carrier])


def check_against_checkpoint(graphs: Sequence[mode_graph.ModeGraph],
                             checkpoint: checkpoint_lib.CheckpointInfo) -> None:
  """Checks, from metadata only, that every readable graph can restore."""
  for graph in graphs:
    if graph.variables is not None:
      checkpoint_lib.check_mode_variables(graph.mode, graph.variables,
                                          checkpoint)


def _write_variables(export_dir: str, graphs, carrier, checkpoint, options
                    ) -> None:
  variables_dir = filesystem.join(export_dir, 'variables')
  filesystem.makedirs(variables_dir)
  needed = variables_needed(graphs, carrier)
  if needed is not None and checkpoint.files:
    # Like the stock export, the carrier's saver decides what is saved
    # besides variables (a tf.train.Checkpoint saver's object graph).
    variables_transfer.write_variables(
        checkpoint, needed, variables_dir, allow_links=options.allow_links,
        chunk_bytes=options.chunk_bytes, constants=carrier.constants)
    return
  if needed is None:
    unreadable = [g.mode for g in graphs if g.variables is None]
    logging.info('the saver of the %s graph(s) cannot be read from the graph: '
                 'variables/ goes through a Session', ', '.join(unreadable))
  else:
    logging.info('checkpoint %s is not in V2 format: variables/ goes through '
                 'a Session', checkpoint.prefix)
  variables_transfer.save_with_session(carrier.graph, carrier.saver,
                                       checkpoint.prefix, variables_dir,
                                       options.session_config)
  written = variables_transfer.written_variables(variables_dir)
  logging.info('variables/ written by session: %d keys, by the %s graph\'s '
               'saver', len(written), carrier.mode)


def _read_back(prefix: str) -> checkpoint_lib.CheckpointInfo:
  """The index of the `variables/` just written.

  Failing to read it is a failure to write the export (an `OpError`, which
  the caller reports as a `PublishError`), not a bad checkpoint of the
  user's. Read twice before giving up: on an object store a read can fail
  once (a fault mid-request) and succeed the second time
  (tests/writer_test.py injects both cases).
  """
  try:
    return checkpoint_lib.read(prefix)
  except errors.CheckpointReadError as e:
    logging.warning('Reading back %s failed, reading it again: %s', prefix, e)
  try:
    return checkpoint_lib.read(prefix)
  except errors.CheckpointReadError as e:
    raise tf.errors.DataLossError(
        None, None, f'the variables/ just written cannot be read back: {e}'
    ) from e


def _check_written(export_dir: str, graphs, options
                   ) -> checkpoint_lib.CheckpointInfo:
  """Every MetaGraphDef must restore from what was written; returns it."""
  variables_dir = filesystem.join(export_dir, 'variables')
  written = _read_back(
      filesystem.join(variables_dir, variables_transfer.VARIABLES_PREFIX))
  for graph in graphs:
    if graph.variables is not None:
      checkpoint_lib.check_mode_variables(graph.mode, graph.variables, written)
    else:
      with tf.compat.v1.Session(graph=graph.graph,
                                config=options.session_config) as session:
        try:
          graph.saver.restore(session, written.prefix)
        except tf.errors.NotFoundError as e:
          raise errors.MissingVariablesError(graph.mode, [str(e).split('\n')[0]],
                                             written.prefix) from e
  return written


def _write_assets(export_dir: str, assets: Dict[str, str]) -> None:
  if not assets:
    return
  assets_dir = filesystem.join(export_dir, tf.saved_model.ASSETS_DIRECTORY)
  filesystem.makedirs(assets_dir)
  for name, source in assets.items():
    tf.io.gfile.copy(source, filesystem.join(assets_dir, name))


def check_asset_sources(assets: Dict[str, str]) -> None:
  """Raises ExportError for an asset file the graphs use but is missing."""
  for name, source in assets.items():
    if not tf.io.gfile.exists(source):
      raise errors.ExportError(
          f'asset file {source!r} (used by the graph as {name!r}) does not '
          'exist')


def write_saved_model(export_dir: str,
                      graphs: Sequence[mode_graph.ModeGraph],
                      carrier: str,
                      checkpoint: checkpoint_lib.CheckpointInfo,
                      assets: Dict[str, str],
                      extra: Dict[str, str],
                      options: WriteOptions) -> None:
  """Writes one SavedModel holding `graphs`, variables from `checkpoint`.

  Args:
    export_dir: an existing, empty directory.
    graphs: built graphs, in the order of their MetaGraphDefs.
    carrier: the mode whose graph's saver decides `variables/` (the plan's
      `choose_variables_carrier`): its entries and constants first, its
      saver on the Session path.
    checkpoint: the checkpoint, already checked against the graphs.
    assets: asset name -> source file, for `assets/`.
    extra: normalized `assets_extra`.
    options: WriteOptions.
  """
  [carrier_graph] = [g for g in graphs if g.mode == carrier]
  _write_variables(export_dir, graphs, carrier_graph, checkpoint, options)
  written = _check_written(export_dir, graphs, options)
  _write_assets(export_dir, assets)
  assets_extra_lib.copy_into(export_dir, extra)
  saved_model = mode_graph.saved_model_proto(graphs)
  data = saved_model.SerializeToString(deterministic=True)
  fingerprint.write(export_dir, data, written.index)
  if options.as_text:
    name = tf.saved_model.SAVED_MODEL_FILENAME_PBTXT
    data = str(saved_model).encode('utf-8')
  else:
    name = tf.saved_model.SAVED_MODEL_FILENAME_PB
  with tf.io.gfile.GFile(filesystem.join(export_dir, name), 'wb') as f:
    f.write(data)
