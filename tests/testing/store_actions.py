"""What an object-store test asks a `object_stores.Worker` process to do.

Each function takes and returns JSON values (paths are URLs), so a test
process that never touches `s3://` or `gs://` itself can drive one. They run
real estimators and the real export on the URLs they are given.
"""

import hashlib
import os
import posixpath
import time
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf

import multimode_export
from testing import assertions
from testing import datasets
from testing import faults
from testing import models
from testing import receiver_fns
from testing import running

_FEATURES = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]], np.float32)
_SAVED_MODEL_FILES = ('saved_model.pb', 'saved_model.pbtxt')


def _padded_model_fn(features, labels, mode, params):
  """The linear model plus an unused `padding` variable of `padding_mib`."""
  spec = models.linear_model_fn(features, labels, mode, {})
  tf.compat.v1.get_variable(
      'padding', shape=[params['padding_mib'] * 1024 * 256],
      initializer=tf.compat.v1.zeros_initializer())
  return spec


def _estimator(model_dir: str, padding_mib: int = 0) -> tf.estimator.Estimator:
  model_fn = _padded_model_fn if padding_mib else models.linear_model_fn
  return tf.estimator.Estimator(
      model_fn, model_dir=model_dir, params={'padding_mib': padding_mib},
      config=tf.estimator.RunConfig(tf_random_seed=1))


def train(model_dir: str, steps: int = 3, padding_mib: int = 0) -> str:
  """Trains the linear model into `model_dir`; returns the checkpoint.

  `padding_mib` adds a variable of that size (not trained: no Adam slots).
  """
  estimator = _estimator(model_dir, padding_mib)
  estimator.train(datasets.input_fn(), steps=steps)
  return estimator.latest_checkpoint()


def export(model_dir: str, base: Optional[str], layout: str = 'shared',
           padding_mib: int = 0, **kwargs):
  """Exports TRAIN+EVAL+PREDICT with `layout` 'shared' or 'per_mode'.

  Returns:
    The path (shared) or the mode -> path dict (per_mode).
  """
  function = (multimode_export.export_all_saved_models if layout == 'shared'
              else multimode_export.export_saved_models_per_mode)
  return function(_estimator(model_dir, padding_mib), base,
                  receiver_fns.receiver_map(), **kwargs)


def train_and_export(model_dir: str, max_steps: int, exports_to_keep: int,
                     layout: str = 'shared',
                     export_dir_base: Optional[str] = None
                    ) -> List[Dict[str, object]]:
  """`train_and_evaluate` into `model_dir`, a MultiModeExporter exporting
  every evaluated checkpoint (every 2 steps) and keeping `exports_to_keep`,
  under `<model_dir>/export/multimode` or `export_dir_base`.

  Returns:
    One record per export call: path, checkpoint, global step.
  """
  estimator = tf.estimator.Estimator(
      models.linear_model_fn, model_dir=model_dir, params={},
      config=tf.estimator.RunConfig(tf_random_seed=1, save_checkpoints_steps=2,
                                    keep_checkpoint_max=100))
  exporter = models.RecordingExporter(
      'multimode', receiver_fns.receiver_map(),
      exports_to_keep=exports_to_keep, layout=layout,
      export_dir_base=export_dir_base)
  tf.estimator.train_and_evaluate(
      estimator,
      tf.estimator.TrainSpec(datasets.input_fn(), max_steps=max_steps),
      tf.estimator.EvalSpec(datasets.input_fn(seed=1), steps=1,
                            exporters=[exporter], start_delay_secs=0,
                            throttle_secs=0))
  return exporter.calls


def checkpoint_values(prefix: str) -> Dict[str, List[float]]:
  return {k: v.ravel().tolist()
          for k, v in assertions.checkpoint_values(prefix).items()}


def saved_values(export_dir: str) -> Dict[str, List[float]]:
  return checkpoint_values(export_dir + '/variables/variables')


def stock_export(model_dir: str, base: str, padding_mib: int = 0) -> str:
  return assertions.stock_export(_estimator(model_dir, padding_mib), base)


def timed(name: str, *args, **kwargs) -> Dict[str, object]:
  """Runs another action; returns its result and wall time in seconds."""
  start = time.perf_counter()
  result = globals()[name](*args, **kwargs)
  return {'result': result, 'seconds': time.perf_counter() - start}


def export_when_released(model_dir: str, base: str, release_file: str,
                         layout: str = 'shared') -> Dict[str, object]:
  """Waits until `release_file` (local) exists, then exports into `base`.

  Returns:
    {'path': what `export` returns} or {'error': the exception's class
    name}: a racing export may raise, and the caller counts both outcomes.
  """
  estimator = _estimator(model_dir)
  while not os.path.exists(release_file):
    time.sleep(0.001)
  try:
    function = (multimode_export.export_all_saved_models if layout == 'shared'
                else multimode_export.export_saved_models_per_mode)
    return {'path': function(estimator, base, receiver_fns.receiver_map())}
  except multimode_export.Error as e:
    return {'error': type(e).__name__}


def export_loop(model_dir: str, base: str) -> None:
  """Exports into `base` again and again, until the process is killed."""
  estimator = _estimator(model_dir)
  while True:
    multimode_export.export_all_saved_models(estimator, base,
                                             receiver_fns.receiver_map())


def snapshot(url: str) -> Optional[Dict[str, Optional[str]]]:
  """Every object under `url` (path -> sha256; directories -> None)."""
  return faults.snapshot(url)


def serve(export_dir: str) -> Dict[str, object]:
  """Loads every tag set from the URL (TF1 loader) and serves through TF2.

  Returns:
    {'tags': the tag sets loaded, 'y': the serve graph's output for fixed
    input, 'expected': `x @ w + b` with the export's own variables}.
  """
  tags = running.load_every_tag_set(export_dir)
  signature = multimode_export.load_mode(export_dir, 'infer')['serving_default']
  y = signature(x=tf.constant(_FEATURES))['y'].numpy()
  values = assertions.saved_variables(export_dir)
  expected = _FEATURES @ values['w'] + values['b']
  return {'tags': tags, 'y': y.tolist(), 'expected': expected.tolist()}


def verify(url: str) -> Dict[str, object]:
  report = multimode_export.verify(url)
  return {'ok': report.ok, 'export_dir': report.export_dir,
          'text': str(report)}


def inspect(url: str) -> str:
  return multimode_export.inspect(url)


def sizes(url: str) -> Dict[str, int]:
  """Every file under `url` (a bucket root too) -> its size. Reads nothing:
  tensorflow-io 0.36.0's GCS reader crashes on objects over ~100 KB."""
  return _files(url)


def listdir(url: str) -> List[str]:
  if not tf.io.gfile.isdir(url):
    return []
  return sorted(n.rstrip('/') for n in tf.io.gfile.listdir(url))


def versions_seen(base: str, stop_file: str) -> Dict[str, object]:
  """Polls `base` like a model server until `stop_file` exists (local).

  Every time a version directory holds `saved_model.pb`, records its files
  and their sizes the first time it is seen so.

  Returns:
    {'polls': listings made, 'seen': version -> {file: size} at first
    sight, 'incomplete': versions whose `saved_model.pb` was seen while a
    shard the index names was missing}.
  """
  seen: Dict[str, Dict[str, int]] = {}
  incomplete = []
  polls = 0
  while not os.path.exists(stop_file):
    polls += 1
    for name in listdir(base):
      if not name.isdigit() or name in seen:
        continue
      version = posixpath.join(base, name)
      files = _files(version)
      if not any(f in _SAVED_MODEL_FILES for f in files):
        continue
      seen[name] = files
      if not _shards_present(files):
        incomplete.append(name)
  return {'polls': polls, 'seen': seen, 'incomplete': incomplete}


def _files(root: str) -> Dict[str, int]:
  out = {}
  for dirpath, _, names in tf.io.gfile.walk(root):
    rel = dirpath[len(root):].strip('/')
    for name in names:
      try:
        size = tf.io.gfile.stat(posixpath.join(dirpath, name)).length
      except tf.errors.NotFoundError:
        continue
      out[posixpath.join(rel, name)] = size
  return out


def _shards_present(files: Dict[str, int]) -> bool:
  """Whether the index and every data shard `variables.data-*-of-N` names
  are there."""
  if 'variables/variables.index' not in files:
    return False
  shards = [f for f in files if f.startswith('variables/variables.data-')]
  if not shards:
    return False
  total = int(shards[0].rsplit('-of-', 1)[1])
  return len(shards) == total


def sha256(url: str) -> str:
  with tf.io.gfile.GFile(url, 'rb') as f:
    return hashlib.sha256(f.read()).hexdigest()


def write_bytes(url: str, size: int) -> None:
  with tf.io.gfile.GFile(url, 'wb') as f:
    f.write(b'x' * size)


def files_of(url: str) -> Dict[str, int]:
  return _files(url)


def read_in_chunks(url: str, chunk: int) -> int:
  total = 0
  with tf.io.gfile.GFile(url, 'rb') as f:
    while True:
      data = f.read(chunk)
      if not data:
        return total
      total += len(data)
