"""Converted-model fixtures: cases, TF1 references, the consumer processes.

A `Case` is one trained estimator's export and the inputs to feed it. The
reference results come from the source export through the TF1 Session
loader (TF 2.15); `run_consumer` runs `tests/tf2_consumer.py` on the
converted models in a fresh process of a given Python (this venv, or a venv
with a newer TensorFlow) and returns its JSON.
"""

import base64
import json
import os
import subprocess
from typing import Dict, List, NamedTuple, Optional

import numpy as np
import tensorflow as tf

CONSUMER = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), 'tf2_consumer.py')
TRAIN_STEPS = 20
Inputs = Dict[str, np.ndarray]


class Case(NamedTuple):
  """One export to convert, and what to feed it.

  Attributes:
    name: the case name.
    export_dir: the source export.
    serve: signature key -> inputs.
    default: the signature `serve(features)` stands for, or None.
    train: inputs of each train step ([] without a train graph).
    eval: inputs of one eval update, or None.
    moved: files the model was trained with (vocabularies), moved away
      with the source before the converted model is loaded.
  """
  name: str
  export_dir: str
  serve: Dict[str, Inputs]
  default: Optional[str]
  train: List[Inputs]
  eval: Optional[Inputs]
  moved: List[str]


def encode(inputs: Inputs) -> dict:
  """Inputs as `tf2_consumer.py` reads them."""
  out = {}
  for key, value in inputs.items():
    value = np.asarray(value)
    if value.dtype.kind in 'SO':
      out[key] = {'dtype': 'string', 'shape': list(value.shape),
                  'value': [base64.b64encode(v).decode('ascii')
                            for v in value.reshape(-1)]}
    else:
      out[key] = {'dtype': value.dtype.name, 'value': value.tolist()}
  return out


def decode(item: dict) -> np.ndarray:
  """One output as `tf2_consumer.py` writes it."""
  if item['dtype'] == 'string':
    return np.array([base64.b64decode(v) for v in item['value']],
                    dtype=object).reshape(item['shape'])
  return np.array(item['value'], dtype=item['dtype'])


def decode_all(outputs: dict) -> Dict[str, np.ndarray]:
  return {k: decode(v) for k, v in outputs.items()}


def _tags_dir(export_dir: str, tag: str) -> str:
  """The SavedModel holding `tag`: the export, or its per-mode directory."""
  mode_dir = os.path.join(export_dir, {'train': 'train', 'eval': 'eval',
                                       'serve': 'serve'}[tag])
  return mode_dir if os.path.isdir(mode_dir) else export_dir


def _run_signature(sess, meta_graph, key: str, inputs: Inputs):
  signature = meta_graph.signature_def[key]
  feeds = {signature.inputs[k].name: v for k, v in inputs.items()}
  return sess.run({k: v.name for k, v in signature.outputs.items()}, feeds)


def _serve(path: str, serve: Dict[str, Inputs],
           checkpoint: Optional[str] = None) -> dict:
  with tf.Graph().as_default() as graph, tf.compat.v1.Session(
      graph=graph) as sess:
    meta_graph = tf.compat.v1.saved_model.loader.load(sess, ['serve'], path)
    if checkpoint:
      saver_def = meta_graph.saver_def
      sess.run(saver_def.restore_op_name,
               {saver_def.filename_tensor_name: checkpoint})
    return {k: _run_signature(sess, meta_graph, k, v)
            for k, v in serve.items()}


def _metrics(sess, signature, suffix):
  return {k[len('metrics/'):-len(suffix)]: v.name
          for k, v in signature.outputs.items()
          if k.startswith('metrics/') and k.endswith(suffix)}


def _eval(path: str, inputs: Inputs) -> Dict[str, dict]:
  with tf.Graph().as_default() as graph, tf.compat.v1.Session(
      graph=graph) as sess:
    meta_graph = tf.compat.v1.saved_model.loader.load(sess, ['eval'], path)
    signature = meta_graph.signature_def['eval']
    values = _metrics(sess, signature, '/value')
    initial = sess.run(values)
    sess.run(_metrics(sess, signature, '/update_op'),
             {signature.inputs[k].name: v for k, v in inputs.items()})
    return {'initial': initial, 'updated': sess.run(values)}


def _train(path: str, steps: List[Inputs], checkpoint: str) -> List[float]:
  with tf.Graph().as_default() as graph, tf.compat.v1.Session(
      graph=graph) as sess:
    meta_graph = tf.compat.v1.saved_model.loader.load(sess, ['train'], path)
    signature = meta_graph.signature_def['train']
    train_op = graph.get_collection('saved_model_train_op')
    losses = []
    for inputs in steps:
      loss, _ = sess.run(
          [signature.outputs['loss'].name, train_op],
          {signature.inputs[k].name: v for k, v in inputs.items()})
      losses.append(float(loss))
    saver_def = meta_graph.saver_def
    sess.run(saver_def.save_tensor_name,
             {saver_def.filename_tensor_name: checkpoint})
    return losses


def tf1_reference(case: Case, scratch: str) -> dict:
  """What the source export gives through TF1 Sessions (TF 2.15).

  Serving, eval (before and after one update), the train losses, and
  serving from a serve graph restored from the trained variables.
  """
  export = case.export_dir
  out = {'serve': _serve(_tags_dir(export, 'serve'), case.serve)
         if case.serve else {}}
  if case.eval is not None:
    out['eval'] = _eval(_tags_dir(export, 'eval'), case.eval)
  if case.train:
    checkpoint = os.path.join(scratch, case.name + '-trained')
    out['losses'] = _train(_tags_dir(export, 'train'), case.train, checkpoint)
    if case.serve:
      out['serve_after_training'] = _serve(_tags_dir(export, 'serve'),
                                           case.serve, checkpoint)
  return out


def consumer_spec(case: Case, path: str, resave_dir: str) -> dict:
  return {'name': case.name, 'path': path, 'default': case.default,
          'serve': {k: encode(v) for k, v in case.serve.items()},
          'train': [encode(s) for s in case.train],
          'eval': encode(case.eval) if case.eval is not None else None,
          'resave_dir': resave_dir}


def run_consumer(python: str, specs: List[dict], scratch: str) -> dict:
  """Runs tf2_consumer.py under `python` on `specs`; returns its JSON."""
  spec_path = os.path.join(scratch, 'spec.json')
  with open(spec_path, 'w') as f:
    json.dump({'models': specs}, f)
  result = subprocess.run(
      [python, CONSUMER, spec_path], capture_output=True, text=True,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'), check=False,
      stdin=subprocess.DEVNULL)
  if result.returncode != 0:
    raise AssertionError(f'{python} {CONSUMER} failed:\n'
                         f'{result.stderr[-4000:]}')
  return json.loads(result.stdout.strip().splitlines()[-1])
