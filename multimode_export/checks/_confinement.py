"""Paths and sizes a SavedModel's files claim, checked against the files.

Part of the safety scan (`_safety`): the loaders join each asset's file name
to `assets/` and read `variables/` through its index, so a file name that is
absolute or climbs out, a link pointing out of the export, or an index entry
whose claims do not match what it stores would make them read outside the export
or allocate what the index claims. Only names, links and the index are read.
"""

import os
from typing import List, Tuple

import tensorflow as tf

from multimode_export import _filesystem as filesystem
from multimode_export.checks import _tensor_claims as tensor_claims
from multimode_export.saved_model import _format
from multimode_export.variables import _bundle_index as bundle_index

Problem = Tuple[str, str]  # (where, why)


def _inside(path: str, root: str) -> bool:
  return path == root or path.startswith(root.rstrip('/') + '/')


def _link_problem(export_dir: str, path: str, label: str) -> List[Problem]:
  """A problem when local `path` resolves outside the export directory."""
  if not filesystem.is_local(export_dir) or not os.path.lexists(
      filesystem.local_path(path)):
    return []
  root = os.path.realpath(filesystem.local_path(export_dir))
  target = os.path.realpath(filesystem.local_path(path))
  if _inside(target, root):
    return []
  return [(label, f'a link to {target}, outside the export')]


def asset_name_problems(export_dir: str, tensor: str, filename: str
                       ) -> List[Problem]:
  """What is wrong with one asset's file name (empty when nothing)."""
  label = f'asset {filename!r} (tensor {tensor!r})'
  if not filename or '\0' in filename:
    return [(label, 'the file name is empty or holds a NUL')]
  if filename.startswith(('/', '\\', '~')) or '://' in filename or (
      len(filename) > 1 and filename[1] == ':'):
    return [(label, 'the file name is absolute; the loaders would read it '
             'outside assets/')]
  if '..' in filename.replace('\\', '/').split('/'):
    return [(label, "the file name climbs out of assets/ with '..'")]
  assets_dir = filesystem.join(export_dir, tf.saved_model.ASSETS_DIRECTORY)
  return _link_problem(export_dir, filesystem.join(assets_dir, filename),
                       label)


def link_problems(export_dir: str) -> List[Problem]:
  """`assets/`, `variables/` or a variables file linking out of the export."""
  problems = []
  for directory in (tf.saved_model.ASSETS_DIRECTORY,
                    tf.saved_model.VARIABLES_DIRECTORY):
    path = filesystem.join(export_dir, directory)
    problems += _link_problem(export_dir, path, f'{directory}/')
  variables_dir = filesystem.join(export_dir,
                                  tf.saved_model.VARIABLES_DIRECTORY)
  if not problems and tf.io.gfile.isdir(variables_dir):
    for name in sorted(tf.io.gfile.listdir(variables_dir)):
      problems += _link_problem(export_dir,
                                filesystem.join(variables_dir, name),
                                f'variables/{name}')
  return problems


def index_problems(export_dir: str) -> Tuple[str, List[Problem]]:
  """(what was read, problems) of the `variables/` index.

  An entry is a problem when its dtype and shape do not match the bytes it
  stores (any reader would allocate the claim), for every dtype, strings
  and variants included (see `_tensor_claims`). (A data file shorter than
  the index says is the `variables` check's business: reading it fails.)
  """
  if not _format.has_variables(export_dir):
    return 'no variables/', []
  label = 'variables/variables.index'
  try:
    _, entries = bundle_index.read(
        _format.variables_prefix(export_dir) + '.index')
  except (bundle_index.IndexFormatError, tf.errors.OpError) as e:
    return label, [(label, f'unreadable, so its sizes cannot be bounded: {e}')]
  stored = sum(entry.size for entry in entries.values())
  problems = []
  for key, entry in sorted(entries.items()):
    # A partitioned variable's entry holds no bytes; its slices do.
    problem = tensor_claims.entry_problem(
        entry, stored if entry.slices else entry.size)
    if problem:
      problems.append(
          (f"{label} entry {key.decode('utf-8', 'replace')!r}", problem))
  count = f'{len(entries)} entr' + ('y' if len(entries) == 1 else 'ies')
  return f'{label}: {count}, {stored} bytes stored', problems
