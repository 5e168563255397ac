"""Uses converted TF2 SavedModels the way a TF 2.16+ project would; prints JSON.

Run by `tests/tf2_convert_test.py` in a fresh process of every TensorFlow it
checks (2.15 here, 2.16.x and the newest in venvs without tf.estimator), so it
imports nothing from multimode_export:

    python tf2_consumer.py SPEC.json

SPEC.json lists models: {"name", "path", "serve": {signature: inputs},
"train": [inputs per step], "eval": inputs, "resave_dir", "keras": bool};
inputs are {key: {"dtype", "value"}} with strings base64-encoded. For each
model, in this order: load without tags; run every signature, `serve`, and
the TF1 Session loader with tag `serve` on the converted files (outputs,
method names); eval (update once, result, reset, result); the train steps
(losses); serving again (after fine-tuning); Keras 3 `TFSMLayer` on `serve`
(and on `serving_default`), where Keras 3 is installed; a `tf.saved_model.save` re-save, loaded back.
"""

import base64
import json
import sys

import numpy as np
import tensorflow as tf


def _decode(inputs):
  out = {}
  for key, item in inputs.items():
    if item['dtype'] == 'string':
      value = np.array([base64.b64decode(v) for v in item['value']],
                       dtype=object).reshape(item['shape'])
    else:
      value = np.array(item['value'], dtype=item['dtype'])
    out[key] = value
  return out


def _encode(value):
  value = np.asarray(value)
  if value.dtype.kind in 'SO':
    return {'dtype': 'string', 'shape': list(value.shape),
            'value': [base64.b64encode(v).decode('ascii')
                      for v in value.reshape(-1)]}
  return {'dtype': value.dtype.name, 'value': value.tolist()}


def _outputs(result):
  return {k: _encode(v) for k, v in result.items()}


def _tensors(inputs):
  return {k: tf.constant(v) for k, v in _decode(inputs).items()}


def _captured(loaded, function):
  handles = {id(c) for c in function.captured_inputs}
  return sorted(v.name for v in loaded.variables if id(v.handle) in handles)


def _tf1_session(path, serve):
  """Every signature through the TF1 Session loader, tag `serve`."""
  results, methods = {}, {}
  with tf.Graph().as_default() as graph:
    with tf.compat.v1.Session(graph=graph) as sess:
      meta_graph = tf.compat.v1.saved_model.loader.load(sess, ['serve'], path)
      for key, inputs in serve.items():
        signature = meta_graph.signature_def[key]
        methods[key] = signature.method_name
        feeds = {signature.inputs[k].name: v
                 for k, v in _decode(inputs).items()}
        fetches = {k: v.name for k, v in signature.outputs.items()}
        results[key] = _outputs(sess.run(fetches, feeds))
  return results, methods


def _keras(path, inputs, endpoint):
  import keras  # pylint: disable=g-import-not-at-top
  layer = keras.layers.TFSMLayer(path, call_endpoint=endpoint)
  values = _decode(inputs)
  if endpoint == 'serve':
    return _outputs(layer(values))
  [value] = values.values()
  return _outputs(layer(value))


def _has_tfsm_layer() -> bool:
  try:
    import keras  # pylint: disable=g-import-not-at-top
  except ImportError:
    return False
  return hasattr(keras.layers, 'TFSMLayer')  # Keras 3 (TF 2.16+)


def _serve_all(loaded, serve):
  return {k: _outputs(loaded.signatures[k](**_tensors(v)))
          for k, v in serve.items()}


def check_model(spec):
  """Every check of one model; returns its results."""
  loaded = tf.saved_model.load(spec['path'])
  serve = spec.get('serve', {})
  out = {'signatures': sorted(loaded.signatures),
         'variables': sorted(v.name for v in loaded.variables),
         'trainable_variables': sorted(
             v.name for v in loaded.trainable_variables),
         'attributes': sorted(
             n for n in ('train_step', 'eval_update', 'eval_result',
                         'eval_reset', 'serve') if hasattr(loaded, n)),
         'captured': {k: _captured(loaded, loaded.signatures[k])
                      for k in loaded.signatures}}
  out['serve'] = _serve_all(loaded, serve)
  if spec.get('default') and hasattr(loaded, 'serve'):
    out['serve_dict'] = _outputs(loaded.serve(_tensors(serve[spec['default']])))
  out['tf1'], out['method_names'] = _tf1_session(spec['path'], serve)
  if spec.get('eval'):
    loaded.eval_update(**_tensors(spec['eval']))
    out['eval'] = _outputs(loaded.eval_result())
    loaded.eval_reset()
    out['eval_after_reset'] = _outputs(loaded.eval_result())
  if spec.get('train'):
    out['captured']['train_step'] = _captured(loaded, loaded.train_step)
    [step] = [v for v in loaded.variables if v.name == 'global_step:0']
    before = int(step.numpy())
    out['losses'] = [float(loaded.train_step(**_tensors(s))['loss'])
                     for s in spec['train']]
    out['global_steps'] = [before, int(step.numpy())]
    out['serve_after_training'] = _serve_all(loaded, serve)
  if spec.get('default') and _has_tfsm_layer():
    out['keras'] = {e: _keras(spec['path'], serve[spec['default']], e)
                    for e in ('serve', spec['default'])
                    if e == 'serve' or len(serve[spec['default']]) == 1}
  # A re-save keeps every signature only when they are passed again.
  tf.saved_model.save(loaded, spec['resave_dir'],
                      signatures=dict(loaded.signatures))
  resaved = tf.saved_model.load(spec['resave_dir'])
  out['resaved'] = _serve_all(resaved, serve)
  _, out['resaved_method_names'] = _tf1_session(spec['resave_dir'], serve)
  return out


def main(argv):
  with open(argv[1]) as f:
    spec = json.load(f)
  results = {'tensorflow': tf.__version__, 'models': {}}
  for model in spec['models']:
    results['models'][model['name']] = check_model(model)
  print(json.dumps(results))


if __name__ == '__main__':
  main(sys.argv)
