"""The process that loads and runs tag sets for `verify` (see `_sandbox`).

Started by `_sandbox.LoadRunner` (`main(['', CONFIG_JSON, FD])`, from a
bootstrap that puts the parent's copy of the package first on the path). It
writes JSON lines to file descriptor FD:

- `{"event": "ready"}` once TensorFlow is imported;
- for each request (a line `{"index": i}` on stdin: the i-th MetaGraphDef of
  the SavedModel), `{"event": "start", "name", "tags"}` before each check,
  `{"event": "result", ...}` (a `CheckResult`) after it, and
  `{"event": "done"}` when the tag set is finished.

The parent turns a missing result (a hang, a crash, an exit) into a failed
check naming the check that was running; this process trusts nothing it
loads, and needs no cleanup: the parent kills it when it is over budget.
"""

import dataclasses
import json
import os
import sys
from typing import Callable, Optional, Tuple


class _Channel:
  """JSON lines to the parent, one write per event."""

  def __init__(self, fd: int):
    self._fd = fd

  def send(self, **event) -> None:
    data = (json.dumps(event) + '\n').encode('utf-8')
    while data:
      data = data[os.write(self._fd, data):]


def _streaming_recorder(report_lib, channel: _Channel):
  """A Recorder that sends each check's start and result to the parent."""

  class StreamingRecorder(report_lib.Recorder):

    def run(self, name: str, tags: Tuple[str, ...], check: Callable[[], str],
            *, place: Optional[object] = None) -> bool:
      channel.send(event='start', name=name, tags=list(tags))
      return super().run(name, tags, check, place=place)

    def _record(self, result, place) -> None:
      del place  # the parent keeps the report's order
      channel.send(event='result', **dataclasses.asdict(result))

  return StreamingRecorder()


def main(argv) -> int:
  """Serves requests from stdin until it closes; returns the exit status."""
  config = json.loads(argv[1])
  channel = _Channel(int(argv[2]))
  for module in config.get('import', ()):
    __import__(module)  # filesystem plugins the parent had (s3://, gs://)
  # pylint: disable=g-import-not-at-top
  from absl import logging
  import tensorflow as tf
  from multimode_export.checks import _report as report_lib
  from multimode_export.checks import _runs as runs
  from multimode_export.saved_model import _format
  # pylint: enable=g-import-not-at-top
  logging.set_verbosity(config.get('verbosity', logging.WARNING))
  tf.get_logger().setLevel('ERROR')
  channel.send(event='ready')
  saved_model = None
  for line in sys.stdin:
    index = json.loads(line)['index']
    if saved_model is None:
      saved_model = _format.read_saved_model(config['export_dir'])
    graph = runs.prepare(config['export_dir'],
                         saved_model.meta_graphs[index],
                         report_lib.Recorder())  # the parent reported these
    recorder = _streaming_recorder(report_lib, channel)
    runs.verify_tf1(graph, config['run_train_step'], recorder)
    runs.verify_tf2(graph, recorder)
    channel.send(event='done')
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv))
