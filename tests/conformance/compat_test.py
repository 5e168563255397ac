"""Compatibility: canned, Keras, v1 and custom-saver estimators vs stock.

Each estimator is trained for a few steps, exported with all three modes by
`multimode_export.export_all_saved_models` and by the stock
`experimental_export_all_saved_models` on the same checkpoint; the two are
compared and every tag set of ours is loaded and run (TF1 loader and
`tf.saved_model.load`), trained from and evaluated.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from typing import Callable, Dict, List, NamedTuple, Optional

import numpy as np
import tensorflow as tf
from absl.testing import absltest
from absl.testing import parameterized
from tensorflow.core.protobuf import trackable_object_graph_pb2

import multimode_export
from testing import assertions
from testing import datasets
from testing import models
from testing import receiver_fns
from testing import running
ModeKeys = tf.estimator.ModeKeys
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


CASE_NAMES = (
    'dnn_classifier_vocabulary_file',
    'linear_regressor',
    'dnn_linear_combined_classifier',
    'baseline_classifier',
    'keras_model_to_estimator',
    'v1_estimator',
    'scaffold_saver_renamed_subset',
    'scaffold_saver_tf_train_checkpoint',
    'scaffold_saver_v1_format',
)


class Case(NamedTuple):
  """A trained estimator and how to feed its export."""
  estimator: tf.compat.v1.estimator.Estimator
  receivers: Dict[str, Callable[[], object]]
  raw: Dict[str, np.ndarray]  # signature input key -> value
  examples: Optional[List[bytes]]  # for string (tf.Example) inputs
  labels: np.ndarray  # the labels `raw` / `examples` carry


def _serving_parse_fn(columns):
  return tf.estimator.export.build_parsing_serving_input_receiver_fn(
      tf.feature_column.make_parse_example_spec(columns))


def _raw_case(estimator, features, labels, serving_receiver) -> Case:
  supervised = receiver_fns.raw_supervised_receiver_fn(features, labels)
  return Case(estimator,
              {ModeKeys.TRAIN: supervised, ModeKeys.EVAL: supervised,
               ModeKeys.PREDICT: serving_receiver},
              dict(features, label=labels),
              datasets.serialize_examples(features, labels), labels)


def _keras_estimator(model_dir):
  inputs = tf.keras.Input(shape=(datasets.FEATURE_DIM,), name='x')
  hidden = tf.keras.layers.Dense(4, activation='relu', name='hidden')(inputs)
  outputs = tf.keras.layers.Dense(1, name='out')(hidden)
  model = tf.keras.Model(inputs, outputs)
  model.compile(tf.keras.optimizers.legacy.Adam(0.05), 'mse', metrics=['mae'])
  return tf.keras.estimator.model_to_estimator(keras_model=model,
                                               model_dir=model_dir)


def _build_cases(root: str, vocabulary: str) -> Dict[str, Case]:
  """Trains every estimator kind for a few steps."""
  features, classes, scores = datasets.make_column_data()
  x_col, cat_col, embedded = datasets.feature_columns(vocabulary)
  only_x = {'x': features['x']}
  x, y = datasets.make_data(n=32)
  custom_serving = receiver_fns.serving_receiver_fn()
  cases = {}

  def trained(name, estimator, train_features, labels):
    estimator.train(datasets.column_input_fn(train_features, labels), steps=3)
    return estimator

  dnn = trained('dnn', tf.estimator.DNNClassifier(
      [4], [x_col, embedded], model_dir=os.path.join(root, 'dnn')),
                features, classes)
  # TRAIN/EVAL through a parsing receiver (tf.Examples carrying the label).
  spec = tf.feature_column.make_parse_example_spec([x_col, cat_col])
  parsing = receiver_fns.parsing_supervised_receiver_fn(
      spec, tf.io.FixedLenFeature([1], tf.int64))
  cases['dnn_classifier_vocabulary_file'] = Case(
      dnn, {ModeKeys.TRAIN: parsing, ModeKeys.EVAL: parsing,
            ModeKeys.PREDICT: _serving_parse_fn([x_col, cat_col])},
      {}, datasets.serialize_examples(features, classes), classes)

  linear = trained('linear', tf.estimator.LinearRegressor(
      [x_col, cat_col], model_dir=os.path.join(root, 'linear')),
                   features, scores)
  cases['linear_regressor'] = _raw_case(
      linear, features, scores, _serving_parse_fn([x_col, cat_col]))

  combined = trained('combined', tf.estimator.DNNLinearCombinedClassifier(
      linear_feature_columns=[cat_col], dnn_feature_columns=[x_col, embedded],
      dnn_hidden_units=[4], model_dir=os.path.join(root, 'combined')),
                     features, classes)
  cases['dnn_linear_combined_classifier'] = _raw_case(
      combined, features, classes, _serving_parse_fn([x_col, cat_col]))

  baseline = trained('baseline', tf.estimator.BaselineClassifier(
      model_dir=os.path.join(root, 'baseline')), only_x, classes)
  cases['baseline_classifier'] = _raw_case(baseline, only_x, classes,
                                           _serving_parse_fn([x_col]))

  keras = trained('keras', _keras_estimator(os.path.join(root, 'keras')),
                  {'x': x}, y)
  cases['keras_model_to_estimator'] = _raw_case(keras, {'x': x}, y,
                                                custom_serving)

  for name, estimator in (
      ('v1_estimator', tf.compat.v1.estimator.Estimator(
          models.linear_model_fn, os.path.join(root, 'v1'), params={})),
      ('scaffold_saver_renamed_subset', tf.estimator.Estimator(
          models.renamed_saver_model_fn, os.path.join(root, 'renamed'))),
      ('scaffold_saver_tf_train_checkpoint', tf.estimator.Estimator(
          models.checkpoint_saver_model_fn, os.path.join(root, 'object'))),
      ('scaffold_saver_v1_format', tf.estimator.Estimator(
          models.v1_format_saver_model_fn, os.path.join(root, 'v1_format'),
          params={})),
  ):
    trained(name, estimator, {'x': x}, y)
    cases[name] = _raw_case(estimator, {'x': x}, y, custom_serving)
  return cases


def _outputs_without_metrics(results):
  # A signature run fetches metric update and value ops together, in no
  # defined order; metrics are checked through run_eval_metrics instead.
  return {tags: {key: {k: v for k, v in outs.items()
                       if not k.startswith('metrics/')}
                 for key, outs in sigs.items()}
          for tags, sigs in results.items()}


class CompatTest(tf.test.TestCase, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls._dir = tempfile.mkdtemp(prefix='compat_test_')
    cls.vocabulary = datasets.write_vocabulary(cls._dir)
    cls.cases = _build_cases(cls._dir, cls.vocabulary)

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls._dir, ignore_errors=True)
    super().tearDownClass()

  def _assert_all_close(self, got, expected, what):
    self.assertEqual(sorted(got), sorted(expected), what)
    for tags, sigs in expected.items():
      self.assertEqual(sorted(got[tags]), sorted(sigs), f'{what} {tags}')
      for key, outs in sigs.items():
        self.assertEqual(sorted(got[tags][key]), sorted(outs))
        for out, value in outs.items():
          msg = f'{what} {tags} {key} {out}'
          if np.asarray(value).dtype.kind in 'OSU':  # class names
            self.assertAllEqual(got[tags][key][out], value, msg=msg)
          else:
            self.assertAllClose(got[tags][key][out], value, atol=1e-5,
                                msg=msg)

  @parameterized.named_parameters((name, name) for name in CASE_NAMES)
  def test_all_modes_match_stock_and_run(self, name):
    case = self.cases[name]
    base = self.create_tempdir().full_path
    path = multimode_export.export_all_saved_models(
        case.estimator, os.path.join(base, 'ours'), case.receivers)
    stock = assertions.stock_export(case.estimator, os.path.join(base, 'stock'),
                                receivers=case.receivers)
    assertions.assert_same_as_stock(self, path, stock)
    checkpoint = assertions.checkpoint_values(case.estimator.latest_checkpoint())
    for key, value in assertions.saved_variables(path).items():
      self.assertEqual(assertions.comparable(value),
                       assertions.comparable(checkpoint[key]), key)

    tf1 = _outputs_without_metrics(
        running.run_all_tf1(path, case.raw, case.examples))
    self.assertEqual(sorted(tf1), [('eval',), ('serve',), ('train',)])
    self.assertIn('serving_default', tf1[('serve',)])
    # Same graphs, same weights: same outputs as the stock export, and the
    # same through tf.saved_model.load.
    self._assert_all_close(tf1, _outputs_without_metrics(
        running.run_all_tf1(stock, case.raw, case.examples)), 'vs stock')
    self._assert_all_close(_outputs_without_metrics(
        running.run_all_tf2(path, case.raw, case.examples)), tf1, 'tf2')

    train_feeds = running.signature_feeds(path, ['train'], 'train', case.raw,
                                         case.examples)
    losses = running.train_steps(path, steps=15, feeds=train_feeds)
    self.assertLess(losses[-1], losses[0], losses)

    eval_feeds = running.signature_feeds(path, ['eval'], 'eval', case.raw,
                                        case.examples)
    metrics = running.run_eval_metrics(path, eval_feeds)
    self.assertNotEmpty(metrics)
    for metric, values in metrics.items():
      self.assertTrue(np.all(np.isfinite(values['value'])), metric)
    # Metric values over the fed batch, recomputed from the eval outputs.
    evaluated = tf1[('eval',)]['eval']
    expected = {'average_loss': evaluated['loss']}
    if 'predictions/class_ids' in evaluated:
      expected['accuracy'] = np.mean(
          evaluated['predictions/class_ids'] == case.labels)
    regression = [k for k in evaluated if k in (
        'predictions/y', 'predictions/out', 'predictions/predictions')]
    if regression:
      expected['mae'] = np.mean(np.abs(evaluated[regression[0]] - case.labels))
    checked = sorted(set(expected) & set(metrics))
    self.assertNotEmpty(checked, sorted(metrics))
    for metric in checked:
      self.assertAllClose(metrics[metric]['value'], expected[metric],
                          rtol=1e-4, msg=metric)

  def test_vocabulary_file_is_an_asset_of_every_graph(self):
    case = self.cases['dnn_classifier_vocabulary_file']
    path = multimode_export.export_all_saved_models(
        case.estimator, self.create_tempdir().full_path, case.receivers)
    with open(self.vocabulary, 'rb') as f:
      self.assertEqual(assertions.files_under(os.path.join(path, 'assets')),
                       {'vocab.txt': f.read()})
    for tags, desc in assertions.describe_export(path).items():
      self.assertEqual(desc['assets'], ['vocab.txt'], tags)

  def test_export_is_self_contained(self):
    # Its own vocabulary file and estimator: this test deletes the file.
    tmp = self.create_tempdir()
    vocabulary = datasets.write_vocabulary(tmp.mkdir('vocab').full_path)
    features, _, scores = datasets.make_column_data()
    x_col, cat_col, _ = datasets.feature_columns(vocabulary)
    estimator = tf.estimator.LinearRegressor(
        [x_col, cat_col], model_dir=tmp.mkdir('model').full_path)
    estimator.train(datasets.column_input_fn(features, scores), steps=2)
    case = _raw_case(estimator, features, scores,
                     _serving_parse_fn([x_col, cat_col]))
    original = multimode_export.export_all_saved_models(
        estimator, tmp.mkdir('exports').full_path, case.receivers)
    before = _outputs_without_metrics(
        running.run_all_tf1(original, case.raw, case.examples))

    moved = os.path.join(tmp.mkdir('elsewhere').full_path, 'model')
    shutil.copytree(original, moved)
    shutil.rmtree(original)
    os.remove(vocabulary)

    expected_ids = [datasets.VOCABULARY.index(c[0].decode())
                    if c[0].decode() in datasets.VOCABULARY else -1
                    for c in features['cat']]
    for tags in (['train'], ['eval'], ['serve']):
      ids = running.lookup_ids(moved, tags, case.raw, case.examples)
      self.assertNotEmpty(ids, tags)
      for found in ids:
        self.assertEqual(np.asarray(found).reshape(-1).tolist(), expected_ids,
                         tags)
    self._assert_all_close(_outputs_without_metrics(
        running.run_all_tf1(moved, case.raw, case.examples)), before, 'tf1')
    self._assert_all_close(_outputs_without_metrics(
        running.run_all_tf2(moved, case.raw, case.examples)), before, 'tf2')
    losses = running.train_steps(moved, steps=10, feeds=running.signature_feeds(
        moved, ['train'], 'train', case.raw))
    self.assertLess(losses[-1], losses[0])

  @parameterized.named_parameters(
      ('all_modes', (ModeKeys.TRAIN, ModeKeys.EVAL, ModeKeys.PREDICT)),
      ('predict_only', (ModeKeys.PREDICT,)))
  def test_checkpoint_saver_object_graph_restores(self, modes):
    case = self.cases['scaffold_saver_tf_train_checkpoint']
    receivers = {m: case.receivers[m] for m in modes}
    base = self.create_tempdir().full_path
    path = multimode_export.export_all_saved_models(
        case.estimator, os.path.join(base, 'ours'), receivers)
    stock = assertions.stock_export(case.estimator, os.path.join(base, 'stock'),
                                receivers=receivers)
    assertions.assert_same_as_stock(self, path, stock)
    self.assertIn('_CHECKPOINTABLE_OBJECT_GRAPH', assertions.saved_variables(path))

    # An object-based restore of variables/ into the model's own objects.
    checkpoint = assertions.checkpoint_values(case.estimator.latest_checkpoint())
    w = tf.Variable(tf.zeros([datasets.FEATURE_DIM, 1]))
    b = tf.Variable(tf.zeros([1]))
    step = tf.Variable(0, dtype=tf.int64)
    status = tf.train.Checkpoint(w=w, b=b, step=step).restore(
        os.path.join(path, 'variables', 'variables'))
    status.assert_nontrivial_match()  # needs the object graph
    # The object graph is the carrier graph's: the optimizer only with TRAIN.
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(
        assertions.saved_variables(path)['_CHECKPOINTABLE_OBJECT_GRAPH'])
    root_children = sorted(c.local_name for c in graph.nodes[0].children)
    expected = ['b', 'step', 'w']
    if ModeKeys.TRAIN in modes:
      expected = ['b', 'optimizer', 'step', 'w']
    self.assertEqual(root_children, expected)
    self.assertAllEqual(w.numpy(), checkpoint['w/.ATTRIBUTES/VARIABLE_VALUE'])
    self.assertAllEqual(b.numpy(), checkpoint['b/.ATTRIBUTES/VARIABLE_VALUE'])
    self.assertEqual(int(step.numpy()),
                     checkpoint['step/.ATTRIBUTES/VARIABLE_VALUE'])


_V1_SCRIPT = textwrap.dedent('''
    import json, os, sys, tempfile
    import tensorflow as tf
    tf.compat.v1.disable_v2_behavior()
    sys.path.insert(0, os.path.join(os.getcwd(), 'tests'))
    import multimode_export
    from testing import assertions, datasets, models, receiver_fns, running

    root = tempfile.mkdtemp()
    estimator = models.train_custom(os.path.join(root, 'model'), steps=3)
    path = multimode_export.export_all_saved_models(
        estimator, os.path.join(root, 'ours'), receiver_fns.receiver_map())
    stock = assertions.stock_export(estimator, os.path.join(root, 'stock'))
    x, y = datasets.make_data()
    served = {}
    for tags in (['train'], ['eval'], ['serve']):
      graph, session, meta = running.tf1_load(path, tags)
      key = sorted(meta.signature_def)[0]
      feeds = running.feeds_for(meta.signature_def[key], {'x': x, 'label': y})
      with graph.as_default(), session:
        out = running.run_signature(session, meta, key, feeds)
      served[key] = sorted(out)
    losses = running.train_steps(path, steps=10)
    # Subsets stream a part of the checkpoint (eager ops under graph mode).
    subsets = {}
    for name, modes in receiver_fns.MODE_SETS:
      sub = multimode_export.export_all_saved_models(
          estimator, os.path.join(root, name), receiver_fns.receiver_map(modes))
      sub_stock = assertions.stock_export(estimator, os.path.join(root, 's' + name),
                                      modes)
      running.run_all_tf1(sub, {'x': x, 'label': y})
      subsets[name] = (assertions.comparable_variables(sub) ==
                       assertions.comparable_variables(sub_stock))
    obj = tf.estimator.Estimator(models.checkpoint_saver_model_fn,
                                 os.path.join(root, 'object'))
    obj.train(datasets.input_fn(), steps=2)
    receivers = {tf.estimator.ModeKeys.PREDICT: receiver_fns.serving_receiver_fn()}
    obj_path = multimode_export.export_all_saved_models(
        obj, os.path.join(root, 'obj'), receivers)
    obj_stock = assertions.stock_export(obj, os.path.join(root, 'obj_stock'),
                                    receivers=receivers)
    running.run_all_tf1(obj_path, {'x': x})
    subsets['checkpoint_saver_predict_only'] = (
        assertions.comparable_variables(obj_path) ==
        assertions.comparable_variables(obj_stock))
    print(json.dumps({
        'subsets_equal_stock': subsets,
        'v2': tf.compat.v1.executing_eagerly_outside_functions(),
        'type': type(path).__name__,
        'tags': running.meta_graph_tags(path),
        'stock_tags': running.meta_graph_tags(stock),
        'variables_equal': assertions.comparable_variables(path).keys() ==
                           assertions.comparable_variables(stock).keys() and all(
            assertions.comparable_variables(path)[k] ==
            assertions.comparable_variables(stock)[k]
            for k in assertions.comparable_variables(stock)),
        'signatures': served,
        'losses': [losses[0], losses[-1]],
    }))
''')


class DisableV2BehaviorTest(absltest.TestCase):

  def test_train_export_load_under_disable_v2_behavior(self):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [REPO_ROOT] + [p for p in [os.environ.get('PYTHONPATH')] if p]),
               TF_CPP_MIN_LOG_LEVEL='2')
    result = subprocess.run([sys.executable, '-c', _V1_SCRIPT], cwd=REPO_ROOT,
                            env=env, capture_output=True, text=True,
                            timeout=300, check=False)
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    report = json.loads(result.stdout.strip().splitlines()[-1])
    self.assertFalse(report['v2'])
    self.assertEqual(report['type'], 'str')
    self.assertEqual(report['tags'], [['eval'], ['serve'], ['train']])
    self.assertEqual(report['tags'], report['stock_tags'])
    self.assertTrue(report['variables_equal'])
    self.assertEqual(report['signatures'], {
        'eval': ['loss', 'metrics/mae/update_op', 'metrics/mae/value',
                 'predictions/y'],
        'serving_default': ['y'],
        'train': ['loss', 'metrics/mae/update_op', 'metrics/mae/value',
                  'predictions/y'],
    })
    first, last = report['losses']
    self.assertLess(last, first)
    self.assertEqual(
        report['subsets_equal_stock'],
        dict({name: True for name, _ in receiver_fns.MODE_SETS},
             checkpoint_saver_predict_only=True))


if __name__ == '__main__':
  absltest.main()
