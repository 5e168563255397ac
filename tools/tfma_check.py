"""One artifact that trains, serves and is analysed by TensorFlow Model Analysis.

Runs in the venv of `tools/make_venv_tf_full.py` (TFMA 0.46 needs the full
`tensorflow` package); `tests/tfma_test.py` runs it and checks its report.

    /tmp/venv-tf-full/bin/python tools/tfma_check.py --workdir DIR

Trains a DNNClassifier with a vocabulary-file column (`language`) and a
numeric one (`age`) on a few dozen tf.Examples written to a TFRecord, then
exports its EVAL graph with TFMA's `EvalInputReceiver` (through
`tfma.export.build_parsing_eval_input_receiver_fn`):

- `tfma_own`: TFMA's own `tfma.export.export_eval_savedmodel` (the stock
  `experimental_export_all_saved_models`, EVAL + PREDICT);
- `free_function`, `mixin`, `per_mode_eval`, `exporter`: this package's
  `export_all_saved_models`, the mixin's method, the `eval` part of
  `export_saved_models_per_mode` and the newest version `MultiModeExporter`
  wrote in `train_and_evaluate`, each with TRAIN (a raw supervised receiver),
  TFMA's EVAL receiver and PREDICT (a parsing serving receiver);
- `routed_with_serving`, `routed_without_serving`:
  `tfma.export.export_eval_savedmodel` itself, with the estimator's
  `experimental_export_all_saved_models` routed to this package, with and
  without a serving receiver fn (TFMA then passes `{EVAL: fn, PREDICT: None}`).

For each it records the tag sets, `multimode_export.verify`, what `inspect`
says of the eval graph, and the metrics of `tfma.run_model_analysis`
(DirectRunner) per slice (overall and by `language`). From the
`free_function` export it also trains from the train graph (`load_mode`
TRAIN), serves from the serve graph against `Estimator.predict`, and feeds
the whole TFRecord to the eval graph's metrics (`load_mode` EVAL), as from
TFMA's own export. Writes everything as one JSON object to `--report`
(default: stdout). A failing step is recorded with its error, the others
still run.
"""

import argparse
import contextlib
import functools
import json
import os
import sys
import traceback

import numpy as np
import tensorflow as tf
import tensorflow_model_analysis as tfma
from tensorflow.core.protobuf import saved_model_pb2

import multimode_export

ModeKeys = tf.estimator.ModeKeys
LANGUAGES = ('english', 'chinese', 'other')
NUM_EXAMPLES = 48
TRAIN_STEPS = 60
SLICE_COLUMN = 'language'


def make_data(seed: int = 0):
  """Features and labels: the label depends on both features."""
  rng = np.random.RandomState(seed)
  language = np.array(LANGUAGES)[rng.randint(0, len(LANGUAGES), NUM_EXAMPLES)]
  age = rng.uniform(10, 70, NUM_EXAMPLES).astype(np.float32)
  label = ((age > 40) != (language == 'chinese')).astype(np.int64)
  return {'language': language, 'age': age}, label


def serialize(features, label=None):
  """One serialized tf.Example per row (with `label` if given)."""
  examples = []
  for i in range(len(features['age'])):
    feature = {
        'language': tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[features['language'][i].encode()])),
        'age': tf.train.Feature(float_list=tf.train.FloatList(
            value=[features['age'][i]])),
    }
    if label is not None:
      feature['label'] = tf.train.Feature(int64_list=tf.train.Int64List(
          value=[label[i]]))
    examples.append(tf.train.Example(features=tf.train.Features(
        feature=feature)).SerializeToString())
  return examples


class Classifier(multimode_export.MultiModeExportMixin,
                 tf.estimator.DNNClassifier):
  """A canned estimator with the mixin."""


def feature_columns(vocabulary_file: str):
  language = tf.feature_column.categorical_column_with_vocabulary_file(
      'language', vocabulary_file)
  return [tf.feature_column.indicator_column(language),
          tf.feature_column.numeric_column('age')]


def receivers(columns):
  """TRAIN (raw supervised), EVAL (TFMA's) and PREDICT (parsing) receivers."""
  feature_spec = tf.feature_column.make_parse_example_spec(columns)
  label_spec = {'label': tf.io.FixedLenFeature([1], tf.int64)}

  def train_receiver_fn():
    placeholder = tf.compat.v1.placeholder
    return tf.estimator.experimental.build_raw_supervised_input_receiver_fn(
        {'language': placeholder(tf.string, [None, 1], 'language'),
         'age': placeholder(tf.float32, [None, 1], 'age')},
        placeholder(tf.int64, [None, 1], 'label'))()

  return {
      ModeKeys.TRAIN: train_receiver_fn,
      ModeKeys.EVAL: tfma.export.build_parsing_eval_input_receiver_fn(
          dict(feature_spec, **label_spec), label_key='label'),
      ModeKeys.PREDICT:
          tf.estimator.export.build_parsing_serving_input_receiver_fn(
              feature_spec),
  }


def input_fn(features, label, batch_size=16):
  def fn():
    columns = {k: v[:, None] for k, v in features.items()}
    dataset = tf.data.Dataset.from_tensor_slices((columns, label[:, None]))
    return dataset.batch(batch_size).repeat()
  return fn


@contextlib.contextmanager
def routed_to_this_package(estimator):
  """`estimator.experimental_export_all_saved_models` -> this package."""
  estimator.experimental_export_all_saved_models = functools.partial(
      multimode_export.export_all_saved_models, estimator)
  try:
    yield
  finally:
    del estimator.experimental_export_all_saved_models


def as_str(path) -> str:
  return path.decode() if isinstance(path, bytes) else str(path)


class Report:
  """Collects results; a step that raises is recorded, not fatal."""

  def __init__(self):
    self.data = {'errors': {}}

  def step(self, name, fn, *args):
    try:
      return fn(*args)
    except Exception:  # pylint: disable=broad-except
      # The report says which step failed and why; the rest still runs.
      self.data['errors'][name] = traceback.format_exc()[-4000:]
      return None


def make_exports(root, estimator, receiver_map, report):
  """Every export under test -> the SavedModel directory with the eval graph."""
  eval_fn = receiver_map[ModeKeys.EVAL]
  serve_fn = receiver_map[ModeKeys.PREDICT]
  builders = {
      'tfma_own': lambda base: tfma.export.export_eval_savedmodel(
          estimator=estimator, export_dir_base=base,
          eval_input_receiver_fn=eval_fn, serving_input_receiver_fn=serve_fn),
      'free_function': lambda base: multimode_export.export_all_saved_models(
          estimator, base, receiver_map, verify=True),
      'mixin': lambda base: estimator.export_all_saved_models(
          base, receiver_map),
      'per_mode_eval': lambda base: multimode_export.export_saved_models_per_mode(
          estimator, base, receiver_map)[ModeKeys.EVAL],
  }

  def routed(serving_fn, base):
    with routed_to_this_package(estimator):
      return tfma.export.export_eval_savedmodel(
          estimator=estimator, export_dir_base=base,
          eval_input_receiver_fn=eval_fn,
          serving_input_receiver_fn=serving_fn)

  builders['routed_with_serving'] = functools.partial(routed, serve_fn)
  builders['routed_without_serving'] = functools.partial(routed, None)
  paths = {}
  for name, build in builders.items():
    path = report.step(f'export:{name}', build, os.path.join(root, name))
    if path is not None:
      paths[name] = as_str(path)
  return paths


def train_with_exporter(estimator, receiver_map, features, label):
  """train_and_evaluate with a MultiModeExporter; its newest export."""
  exporter = multimode_export.MultiModeExporter(
      'tfma', receiver_map, exports_to_keep=2)
  tf.estimator.train_and_evaluate(
      estimator,
      tf.estimator.TrainSpec(input_fn(features, label), max_steps=TRAIN_STEPS),
      tf.estimator.EvalSpec(input_fn(features, label), steps=2,
                            exporters=[exporter], start_delay_secs=0,
                            throttle_secs=0))
  base = os.path.join(estimator.model_dir, 'export', 'tfma')
  versions = sorted(v for v in tf.io.gfile.listdir(base) if v.isdigit())
  return os.path.join(base, versions[-1])


def tag_sets(path):
  proto = saved_model_pb2.SavedModel()
  with tf.io.gfile.GFile(os.path.join(path, 'saved_model.pb'), 'rb') as f:
    proto.ParseFromString(f.read())
  return sorted(sorted(m.meta_info_def.tags) for m in proto.meta_graphs)


def analyse(path, data_file, output_path):
  """tfma.run_model_analysis: slice -> metric -> value."""
  result = tfma.run_model_analysis(
      eval_shared_model=tfma.default_eval_shared_model(path),
      data_location=data_file, output_path=output_path,
      slice_spec=[tfma.slicer.SingleSliceSpec(),
                  tfma.slicer.SingleSliceSpec(columns=[SLICE_COLUMN])])
  metrics = {}
  for slice_key, values in result.slicing_metrics:
    name = ','.join(f'{c}={as_str(v)}' for c, v in slice_key) or 'overall'
    metrics[name] = {k: v.get('doubleValue') for k, v in
                     values[''][''].items()}
  return metrics


def verify_summary(path):
  report = multimode_export.verify(path)
  return {'ok': report.ok, 'checks': len(report.checks),
          'failures': [f'{",".join(c.tags)} {c.name}: {c.detail}'
                       for c in report.failures],
          'text': str(report)}


def train_from_export(path, features, label, steps=20):
  """Losses of `steps` train steps of the exported train graph (TF2)."""
  step = multimode_export.load_mode(path, ModeKeys.TRAIN)
  inputs = {'language': features['language'][:, None].astype(object),
            'age': features['age'][:, None], 'label': label[:, None]}
  return [float(step(**inputs)) for _ in range(steps)]


def serve_from_export(path, estimator, features):
  """Serve-graph probabilities next to Estimator.predict's."""
  serving = multimode_export.load_mode(path, ModeKeys.PREDICT)
  outputs = serving['predict'](examples=tf.constant(serialize(features)))
  columns = {k: v[:, None] for k, v in features.items()}
  predictions = estimator.predict(
      lambda: tf.data.Dataset.from_tensor_slices(columns).batch(16))
  return {'exported': outputs['probabilities'].numpy().tolist(),
          'estimator': [p['probabilities'].tolist() for p in predictions]}


def eval_metrics_from_export(path, features, label):
  """load_mode EVAL fed every example at once: metric -> value."""
  metrics = multimode_export.load_mode(path, ModeKeys.EVAL)
  metrics.update(**{'inputs/examples': tf.constant(serialize(features, label))})
  return {k: float(v) for k, v in metrics.result().items()}


def run(root: str) -> dict:
  """The whole scenario; returns the report."""
  report = Report()
  data = report.data
  data['versions'] = {'tensorflow': tf.__version__,
                      'tfma': tfma.__version__,
                      'multimode_export': multimode_export.__version__,
                      'multimode_export_dir': os.path.dirname(
                          os.path.realpath(multimode_export.__file__))}
  tf.io.gfile.makedirs(root)
  vocabulary = os.path.join(root, 'vocab.txt')
  with open(vocabulary, 'w', encoding='utf-8') as f:
    f.write('\n'.join(LANGUAGES) + '\n')
  features, label = make_data()
  data_file = os.path.join(root, 'examples.tfrecord')
  with tf.io.TFRecordWriter(data_file) as writer:
    for example in serialize(features, label):
      writer.write(example)
  columns = feature_columns(vocabulary)
  estimator = Classifier(
      hidden_units=[4], feature_columns=columns,
      model_dir=os.path.join(root, 'model'),
      optimizer=lambda: tf.keras.optimizers.legacy.Adagrad(0.3),
      config=tf.estimator.RunConfig(tf_random_seed=1))
  receiver_map = receivers(columns)
  # Trains to the final checkpoint; every other export is of that checkpoint.
  exporter_path = report.step('export:exporter', train_with_exporter,
                              estimator, receiver_map, features, label)
  paths = make_exports(os.path.join(root, 'exports'), estimator, receiver_map,
                       report)
  if exporter_path is not None:
    paths['exporter'] = exporter_path
  data['paths'] = paths
  data['tags'] = {n: report.step(f'tags:{n}', tag_sets, p)
                  for n, p in paths.items()}
  data['verify'] = {n: report.step(f'verify:{n}', verify_summary, p)
                    for n, p in paths.items()}
  data['inspect'] = {n: report.step(f'inspect:{n}', multimode_export.inspect, p)
                     for n, p in paths.items()}
  data['metrics'] = {
      n: report.step(f'analyse:{n}', analyse, p, data_file,
                     os.path.join(root, 'analysis', n))
      for n, p in paths.items()}
  ours = paths.get('free_function')
  if ours:
    data['train_losses'] = report.step('train', train_from_export, ours,
                                       features, label)
    data['serve'] = report.step('serve', serve_from_export, ours, estimator,
                                features)
  data['eval_metrics'] = {
      n: report.step(f'load_mode_eval:{n}', eval_metrics_from_export,
                     paths[n], features, label)
      for n in ('tfma_own', 'free_function') if n in paths}
  return data


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', required=True,
                      help='where the model, data and exports are written')
  parser.add_argument('--report', help='write the JSON report here')
  args = parser.parse_args(argv)
  text = json.dumps(run(args.workdir), indent=1, sort_keys=True)
  if args.report:
    with open(args.report, 'w', encoding='utf-8') as f:
      f.write(text)
  else:
    print(text)
  return 0


if __name__ == '__main__':
  sys.exit(main())
