"""Comparisons of an export with the stock export and with the checkpoint.

Real TensorFlow and real estimators throughout; nothing is mocked.
"""

import os
from typing import Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2

from multimode_export.checks import _safety as safety
from multimode_export.saved_model import _format
from testing import receiver_fns
from testing import running

ModeKeys = tf.estimator.ModeKeys


def checkpoint_values(prefix: str) -> Dict[str, np.ndarray]:
  reader = tf.train.load_checkpoint(prefix)
  return {k: reader.get_tensor(k)
          for k in reader.get_variable_to_shape_map()}


def saved_variables(export_dir: str) -> Dict[str, np.ndarray]:
  """The export's variables; the export must pass the safety scan."""
  assert_passes_safety_scan(export_dir)
  return checkpoint_values(os.path.join(export_dir, 'variables', 'variables'))


def assert_passes_safety_scan(path: str) -> None:
  """Every SavedModel under `path` passes the safety scan, no allow_ops.

  What `multimode-export verify` would refuse in an export this suite makes
  (ours, stock's, TF2's) is a false alarm to fix in the scan, or a new op
  our export adds that acts outside it. Called by the helpers that read an
  export's variables or signatures, so every export test exercises it.
  """
  found = 0
  for directory, _, files in tf.io.gfile.walk(path):
    if not set(files) & {tf.saved_model.SAVED_MODEL_FILENAME_PB,
                         tf.saved_model.SAVED_MODEL_FILENAME_PBTXT}:
      continue
    found += 1
    saved_model = _format.read_saved_model(directory)
    refused = [scan for scan in safety.scan_saved_model(directory, saved_model)
               if not scan.ok]
    if refused:
      raise AssertionError(f'{directory} fails the safety scan: ' + '; '.join(
          f'[{",".join(s.tags)}] {s.describe()}' for s in refused))
  if not found:
    raise AssertionError(f'no SavedModel under {path}')


def stock_export(estimator, export_dir_base: str,
                 modes=(ModeKeys.TRAIN, ModeKeys.EVAL, ModeKeys.PREDICT),
                 checkpoint_path: Optional[str] = None,
                 receivers: Optional[Dict[str, object]] = None,
                 **kwargs) -> str:
  """The stock `experimental_export_all_saved_models`; returns a str path.

  `receivers` replaces `receiver_map(modes)`; `kwargs` (assets_extra,
  as_text) go to the stock method.
  """
  path = estimator.experimental_export_all_saved_models(
      export_dir_base, receivers or receiver_fns.receiver_map(modes),
      checkpoint_path=checkpoint_path, **kwargs)
  return path.decode('utf-8') if isinstance(path, bytes) else path


def _tensor_info(info) -> Tuple[str, Optional[Tuple[Optional[int], ...]]]:
  shape = tf.TensorShape(info.tensor_shape)
  dims = None if shape.rank is None else tuple(shape.as_list())
  return tf.as_dtype(info.dtype).name, dims


def describe_signatures(meta) -> Dict[str, tuple]:
  """key -> (method_name, {input: (dtype, shape)}, {output: (dtype, shape)})."""
  return {key: (sig.method_name,
                {k: _tensor_info(v) for k, v in sig.inputs.items()},
                {k: _tensor_info(v) for k, v in sig.outputs.items()})
          for key, sig in meta.signature_def.items()}


def describe_export(export_dir: str) -> Dict[Tuple[str, ...], dict]:
  """tag set -> {'signatures': ..., 'collections': ..., 'assets': ...}.

  The export must pass the safety scan.
  """
  assert_passes_safety_scan(export_dir)
  out = {}
  for meta in running.read_meta_graphs(export_dir):
    asset_names = []
    key = tf.compat.v1.saved_model.ASSETS_KEY
    packed_assets = (meta.collection_def[key].any_list.value
                     if key in meta.collection_def else [])
    for packed in packed_assets:
      asset = meta_graph_pb2.AssetFileDef()
      packed.Unpack(asset)
      asset_names.append(asset.filename)
    out[tuple(sorted(meta.meta_info_def.tags))] = {
        'signatures': describe_signatures(meta),
        'collections': sorted(meta.collection_def),
        'assets': sorted(asset_names),
    }
  return out


def comparable(value: np.ndarray) -> tuple:
  """A value as (dtype, shape, bytes); strings element by element."""
  value = np.asarray(value)
  if value.dtype == object or value.dtype.kind in 'SU':
    return ('string', value.shape, tuple(value.reshape(-1).tolist()))
  return (value.dtype.str, value.shape, value.tobytes())


def comparable_variables(export_dir: str) -> Dict[str, tuple]:
  return {k: comparable(v) for k, v in saved_variables(export_dir).items()}


def files_under(directory: str) -> Dict[str, bytes]:
  """Relative path -> contents of every file under `directory` ({} if none)."""
  out = {}
  if not os.path.isdir(directory):
    return out
  for root, _, names in os.walk(directory):
    for name in names:
      path = os.path.join(root, name)
      with open(path, 'rb') as f:
        out[os.path.relpath(path, directory)] = f.read()
  return out


def assert_same_as_stock(test, ours: str, stock: str) -> None:
  """Same tag sets, signatures, collections, variables (bytes) and assets."""
  ours_desc, stock_desc = describe_export(ours), describe_export(stock)
  test.assertEqual(sorted(ours_desc), sorted(stock_desc), 'tag sets')
  for tags, desc in stock_desc.items():
    test.assertEqual(sorted(ours_desc[tags]['signatures']),
                     sorted(desc['signatures']), f'signature keys of {tags}')
    test.assertEqual(ours_desc[tags]['signatures'], desc['signatures'],
                     f'signature inputs/outputs of {tags}')
    test.assertEqual(ours_desc[tags]['collections'], desc['collections'],
                     f'collections of {tags}')
    test.assertEqual(ours_desc[tags]['assets'], desc['assets'],
                     f'asset file defs of {tags}')
  ours_vars, stock_vars = (comparable_variables(ours),
                           comparable_variables(stock))
  test.assertEqual(sorted(ours_vars), sorted(stock_vars), 'variable names')
  for name in stock_vars:
    test.assertEqual(ours_vars[name], stock_vars[name], f'variable {name}')
  for sub in ('assets', 'assets.extra'):
    test.assertEqual(files_under(os.path.join(ours, sub)),
                     files_under(os.path.join(stock, sub)), sub)


def assert_export_matches_checkpoint(test, export_dir: str, checkpoint: str,
                                     modes=(ModeKeys.TRAIN, ModeKeys.EVAL,
                                            ModeKeys.PREDICT)) -> None:
  """Asserts the export has every mode's tag set and the checkpoint's values."""
  test.assertEqual(running.meta_graph_tags(export_dir),
                   sorted(sorted(receiver_fns.TAGS[m]) for m in modes))
  exported = saved_variables(export_dir)
  expected = checkpoint_values(checkpoint)
  test.assertEqual(sorted(exported), sorted(expected))
  for key, value in expected.items():
    np.testing.assert_array_equal(exported[key], value, err_msg=key)


def stock_canned_export(estimator, export_dir_base: str) -> str:
  path = estimator.experimental_export_all_saved_models(
      export_dir_base, receiver_fns.canned_receiver_map())
  return path.decode('utf-8') if isinstance(path, bytes) else path
