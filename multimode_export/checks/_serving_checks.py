"""`verify`'s checks of what serving adds to a serve graph (issue 16).

- `raw_matches:<raw key>`: a raw signature (`raw:<key>`, see
  `graph/_raw_signatures`) fed the tensors that its tf.Example twin `<key>`
  parsed from synthetic examples gives the twin's outputs;
- `warmup`: every record of `assets.extra/tf_serving_warmup_requests` parses
  as a `PredictionLog` and runs through its signature, as TF Serving would
  replay it before serving.

Each function runs in the Session `verify` loaded the tag set into and
returns the check's detail, or raises `CheckFailed`.
"""

from typing import Dict, Mapping, Optional

import numpy as np
import tensorflow as tf

from multimode_export import _filesystem as filesystem
from multimode_export.checks import _report as report_lib
from multimode_export.checks import _warmup as warmup
from multimode_export.checks import _wording as wording
from multimode_export.graph import _raw_signatures as raw_signatures
from multimode_export.saved_model import _assets_extra as assets_extra


def _outputs(signature_def) -> Dict[str, str]:
  return {k: v.name for k, v in signature_def.outputs.items()
          if v.WhichOneof('encoding') == 'name'}


def raw_twins(signature_keys) -> Dict[str, str]:
  """raw signature key -> its tf.Example twin, for pairs both present."""
  keys = set(signature_keys)
  return {k: raw_signatures.example_key(k) for k in sorted(keys)
          if raw_signatures.example_key(k) in keys}


def run_raw_match(session, signatures: Mapping[str, object], raw_key: str,
                  twin_feeds: Mapping[str, np.ndarray]) -> str:
  """Feeds `raw_key` what its twin parsed from `twin_feeds`; compares."""
  key = raw_signatures.example_key(raw_key)
  twin, raw = signatures[key], signatures[raw_key]
  feed = {twin.inputs[k].name: v for k, v in twin_feeds.items()}
  parsed, expected = session.run(
      ({k: v.name for k, v in raw.inputs.items()}, _outputs(twin)), feed)
  actual = session.run(_outputs(raw),
                       {raw.inputs[k].name: v for k, v in parsed.items()})
  differ = sorted(k for k in actual if k in expected and
                  not np.array_equal(actual[k], expected[k]))
  if differ:
    raise report_lib.CheckFailed(f'outputs {differ} differ from those of '
                                 f'{key!r} on the same examples')
  return (f'{wording.count(len(actual), "output")} equal to those of {key!r} '
          'on the same examples')


def warmup_file(export_dir: str, tags) -> Optional[str]:
  """The warmup file TF Serving would replay on this tag set, if any."""
  if tf.saved_model.SERVING not in tags:
    return None
  path = filesystem.join(export_dir, assets_extra.ASSETS_EXTRA_DIRECTORY,
                         warmup.FILE_NAME)
  return path if tf.io.gfile.exists(path) else None


def replay_warmup(session, meta_graph_def, path: str) -> str:
  """Runs every warmup record through its signature in `session`."""
  logs = warmup.read_records(path)
  if not logs or len(logs) > warmup.MAX_RECORDS:
    raise report_lib.CheckFailed(
        f'{len(logs)} records; TF Serving needs 1 to {warmup.MAX_RECORDS}')
  keys = []
  for number, log in enumerate(logs):
    try:
      key, feeds = warmup.replay_feeds(log, meta_graph_def)
      signature_def = meta_graph_def.signature_def[key]
      session.run(_outputs(signature_def),
                  {signature_def.inputs[k].name: v for k, v in feeds.items()})
    except Exception as e:  # pylint: disable=broad-except
      raise report_lib.CheckFailed(
          f'record {number}: {report_lib.describe_error(e)}') from e
    keys.append(key)
  return f'{wording.count(len(logs), "record")} replayed: {", ".join(keys)}'
