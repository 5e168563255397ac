"""Raw-tensor serving signatures beside the `tf.Example` ones.

A serve graph whose receiver parses `tf.Example`s takes one string tensor,
which TFLite, tf2onnx and JSON-over-REST servers cannot feed. With
`raw_signatures=True` the serve graph also gets the signatures of a receiver
alternative named `raw` (the stock `receiver_tensors_alternatives`
mechanism, so the keys read `raw:<export output key>`) whose inputs are the
receiver's feature tensors themselves, downstream of the parser:

- a dense feature: its tensor, under the feature's key;
- a `SparseTensor` feature: its components `<key>/indices`,
  `<key>/values` and `<key>/dense_shape`;
- a `RaggedTensor` feature: `<key>/values` (the flat values) and
  `<key>/row_splits` (`<key>/row_splits_1`, ... for each further ragged
  dimension);
- a single feature tensor (not a dict): `feature`, the stock name for it.

TF Serving's classify and regress methods take exactly one string input, so
only the predict-method export outputs get a raw signature (for canned
estimators `raw:predict`). A receiver whose features already are its
receiver tensors (`build_raw_serving_input_receiver_fn`) needs none and gets
none.
"""

from typing import Dict, Mapping, Optional

import tensorflow as tf

from multimode_export import _tf_private
from multimode_export import errors

ALTERNATIVE = 'raw'
SINGLE_FEATURE_KEY = 'feature'
_SEPARATOR = ':'


def raw_key(signature_key: str) -> str:
  """The key of the raw signature beside `signature_key`."""
  return f'{ALTERNATIVE}{_SEPARATOR}{signature_key}'


def example_key(key: str) -> Optional[str]:
  """For a raw signature's key, the key it stands beside; else None."""
  prefix = ALTERNATIVE + _SEPARATOR
  return key[len(prefix):] if key.startswith(prefix) else None


def _components(key: str, value) -> Dict[str, tf.Tensor]:
  """The plain tensors standing for one feature, by input key."""
  if isinstance(value, tf.sparse.SparseTensor):
    return {f'{key}/indices': value.indices, f'{key}/values': value.values,
            f'{key}/dense_shape': value.dense_shape}
  if isinstance(value, tf.RaggedTensor):
    splits = value.nested_row_splits
    out = {f'{key}/values': value.flat_values, f'{key}/row_splits': splits[0]}
    out.update({f'{key}/row_splits_{i}': s
                for i, s in enumerate(splits[1:], start=1)})
    return out
  return {key: value}


def raw_inputs(features) -> Dict[str, tf.Tensor]:
  """The raw signature's inputs for a receiver's features.

  Raises:
    errors.RawSignatureError: two features map to the same input key.
  """
  if not isinstance(features, Mapping):
    features = {SINGLE_FEATURE_KEY: features}
  inputs: Dict[str, tf.Tensor] = {}
  for key in sorted(features):
    for name, tensor in _components(str(key), features[key]).items():
      if name in inputs:
        raise errors.RawSignatureError(
            f'raw_signatures: feature {key!r} gives the input key {name!r}, '
            'which another feature already has')
      inputs[name] = tensor
  return inputs


def _is_raw_already(inputs: Mapping[str, tf.Tensor], receiver) -> bool:
  tensors = receiver.receiver_tensors
  if not isinstance(tensors, Mapping):
    tensors = {'input': tensors}
  fed = {id(t) for t in tensors.values()}
  return all(id(t) in fed for t in inputs.values())


def signature_defs(receiver, export_outputs) -> Dict[str, object]:
  """The serve graph's SignatureDefs, with the raw ones added.

  Args:
    receiver: the serve graph's ServingInputReceiver (or
      TensorServingInputReceiver).
    export_outputs: the model_fn's export outputs for PREDICT.

  Returns:
    signature key -> SignatureDef: the stock ones, the receiver's own
    alternatives, and `raw:<key>` for every predict-method output.

  Raises:
    errors.RawSignatureError: the receiver already has an alternative named
      `raw`, two features give the same input key, or no export output can
      take raw inputs.
  """
  alternatives = dict(getattr(receiver, 'receiver_tensors_alternatives',
                              None) or {})
  inputs = raw_inputs(receiver.features)
  add_raw = not _is_raw_already(inputs, receiver)
  if add_raw:
    if ALTERNATIVE in alternatives:
      raise errors.RawSignatureError(
          f'raw_signatures: the serving receiver already has a '
          f'receiver_tensors_alternatives entry named {ALTERNATIVE!r}')
    alternatives[ALTERNATIVE] = inputs
  signatures = _tf_private.build_all_signature_defs(
      receiver.receiver_tensors, export_outputs, alternatives or None,
      serving_only=True)
  if add_raw and not any(example_key(k) for k in signatures):
    raise errors.RawSignatureError(
        'raw_signatures: no export output of the serve graph can take raw '
        f'inputs (outputs {sorted(export_outputs)}; classify and regress '
        'signatures need one string input): add a '
        'tf.estimator.export.PredictOutput to export_outputs')
  return signatures
