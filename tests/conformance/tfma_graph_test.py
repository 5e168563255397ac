"""Eval graphs with TFMA's signature conventions: verify, inspect, load_mode.

TFMA's `EvalInputReceiver` lists the parsed features (a sparse one among
them), the label twice (`features/label`, `labels`) and a constant
`tfma/version` as inputs of the `eval` signature. `tf.saved_model.load`
cannot load such a graph (a tensor repeated in the inputs). Here the
receiver is `receiver_fns.tfma_style_eval_receiver_fn` (same conventions, no
TFMA); `tfma_test.py` runs real TFMA in its own venv.
"""

import os

import numpy as np
import tensorflow as tf
from absl.testing import absltest

import multimode_export
from multimode_export import loading
from testing import assertions
from testing import datasets
from testing import models
from testing import receiver_fns

ModeKeys = tf.estimator.ModeKeys
VERSION = '9.8.7-test'


class TfmaStyleEvalGraphTest(models.ClassRootMixin, absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    root = cls.root
    vocabulary = datasets.write_vocabulary(root)
    cls.features, cls.labels, _ = datasets.make_column_data()
    x_col, cat_col, embedded = datasets.feature_columns(vocabulary)
    cls.estimator = tf.estimator.DNNClassifier(
        [4], [x_col, embedded], model_dir=os.path.join(root, 'model'),
        config=tf.estimator.RunConfig(tf_random_seed=1))
    cls.estimator.train(
        datasets.column_input_fn(cls.features, cls.labels), steps=3)
    spec = tf.feature_column.make_parse_example_spec([x_col, cat_col])
    label = tf.io.FixedLenFeature([1], tf.int64)
    cls.receivers = {
        ModeKeys.TRAIN: receiver_fns.parsing_supervised_receiver_fn(spec,
                                                                    label),
        ModeKeys.EVAL: receiver_fns.tfma_style_eval_receiver_fn(
            dict(spec, label=label), version=VERSION),
        ModeKeys.PREDICT:
            tf.estimator.export.build_parsing_serving_input_receiver_fn(spec),
    }
    cls.export = multimode_export.export_all_saved_models(
        cls.estimator, os.path.join(root, 'export'), cls.receivers)
    cls.examples = datasets.serialize_examples(cls.features, cls.labels)

  def _check(self, report, tags, name):
    return next(c for c in report.checks if c.tags == tags and c.name == name)

  def test_verify_feeds_sparse_and_repeated_inputs_and_loads_for_tf2(self):
    report = multimode_export.verify(self.export)
    self.assertTrue(report.ok, str(report))
    eval_tags = ('eval',)
    self.assertIn('features/cat: sparse string[2,1]',
                  self._check(report, eval_tags, 'tf1_signature:eval').detail)
    self.assertIn('imported with wrap_function',
                  self._check(report, eval_tags, 'tf2_load').detail)
    # 7 inputs of 6 tensors (the label twice), the sparse one in 3 parts.
    self.assertIn('pruned with 8 unique feeds',
                  self._check(report, eval_tags, 'tf2_signature:eval').detail)
    self.assertIn('4 signatures',
                  self._check(report, ('serve',), 'tf2_load').detail)

  def test_verify_passes_on_the_per_mode_eval_part_with_its_vocabulary(self):
    base = self.create_tempdir().full_path
    paths = multimode_export.export_saved_models_per_mode(
        self.estimator, base, self.receivers)
    self.assertEqual(os.listdir(os.path.join(paths[ModeKeys.EVAL], 'assets')),
                     ['vocab.txt'])
    report = multimode_export.verify(paths[ModeKeys.EVAL])
    self.assertTrue(report.ok, str(report))

  def test_inspect_shows_the_tfma_version_of_the_eval_graph_only(self):
    text = multimode_export.inspect(self.export)
    line = ("TFMA-ready eval graph (signature 'eval'), built by TFMA "
            f'{VERSION}')
    self.assertEqual(text.count(line), 1, text)
    eval_section = text[text.index('MetaGraphDef [eval]'):
                        text.index('MetaGraphDef [serve]')]
    self.assertIn(line, eval_section)

  def test_load_mode_eval_from_examples_matches_estimator_evaluate(self):
    metrics = multimode_export.load_mode(self.export, ModeKeys.EVAL)
    metrics.update(**{'inputs/examples': self.examples})
    ours = {k: float(v) for k, v in metrics.result().items()}
    evaluated = self.estimator.evaluate(
        datasets.column_input_fn(self.features, self.labels,
                                 batch_size=len(self.labels)), steps=1)
    for name in ('accuracy', 'average_loss', 'label/mean', 'prediction/mean'):
      self.assertAlmostEqual(ours[name], float(evaluated[name]), places=5,
                             msg=name)

  def test_load_mode_eval_takes_every_input_sparse_ones_included(self):
    metrics = multimode_export.load_mode(self.export, ModeKeys.EVAL)
    metrics.update(**{'inputs/examples': self.examples})
    from_examples = {k: float(v) for k, v in metrics.result().items()}
    metrics.reset()
    n = len(self.labels)
    categories = self.features['cat'][:, 0]
    metrics.update(**{
        'inputs/examples': self.examples,
        'features/x': self.features['x'],
        'features/cat': tf.SparseTensor(
            [[i, 0] for i in range(n)], list(categories), [n, 1]),
        'features/label': self.labels, 'labels': self.labels,
        'input_refs': np.arange(n, dtype=np.int32),
        'tfma/version': VERSION})
    given = {k: float(v) for k, v in metrics.result().items()}
    for name, value in from_examples.items():
      self.assertAlmostEqual(given[name], value, places=5, msg=name)

  def test_load_mode_eval_requires_the_placeholder_inputs(self):
    metrics = multimode_export.load_mode(self.export, ModeKeys.EVAL)
    with self.assertRaisesRegex(TypeError, r"expected inputs \['inputs/exam"):
      metrics.update(labels=self.labels)

  def test_load_tag_set_imports_the_eval_graph_with_the_exported_values(self):
    loaded = loading.load_tag_set(self.export, ['eval'])
    self.assertIsInstance(loaded, loading.ImportedGraph)
    self.assertEqual(loaded.signatures, {})
    exported = assertions.saved_variables(self.export)
    values = {v.name.split(':')[0]: v.numpy() for v in loaded.variables
              if v.name.split(':')[0] in exported}
    self.assertNotEmpty(values)
    for name, value in values.items():
      np.testing.assert_array_equal(value, exported[name], err_msg=name)
    served = loading.load_tag_set(self.export, ['serve'])
    self.assertNotIsInstance(served, loading.ImportedGraph)
    self.assertIn('serving_default', served.signatures)

  def _fallback_lookup_ids(self, export):
    """The eval graph's table lookups of `self.examples`, through the
    `ImportedGraph` fallback of `load_tag_set`."""
    loaded = loading.load_tag_set(export, ['eval'])
    self.assertIsInstance(loaded, loading.ImportedGraph)
    examples = loading.read_meta_graph(export, ['eval']).signature_def[
        'eval'].inputs['inputs/examples'].name
    lookups = [op.outputs[0] for op in loaded.graph.get_operations()
               if op.type == 'LookupTableFindV2']
    self.assertNotEmpty(lookups)
    found = loaded.prune(feeds=[loaded.graph.as_graph_element(examples)],
                         fetches=lookups)(tf.constant(self.examples))
    return [np.asarray(ids).reshape(-1).tolist() for ids in found]

  def test_load_tag_set_fallback_reads_the_vocabulary_from_the_export(self):
    # Estimator exports list their vocabulary in the `saved_model_assets`
    # collection, not in `asset_file_def`: the tables must read the
    # export's assets/, never the training-time file.
    root = self.create_tempdir().full_path
    vocabulary = datasets.write_vocabulary(root)
    x_col, cat_col, embedded = datasets.feature_columns(vocabulary)
    estimator = tf.estimator.DNNClassifier(
        [4], [x_col, embedded], model_dir=os.path.join(root, 'model'),
        config=tf.estimator.RunConfig(tf_random_seed=1))
    estimator.train(datasets.column_input_fn(self.features, self.labels),
                    steps=1)
    export = multimode_export.export_all_saved_models(
        estimator, os.path.join(root, 'export'), self.receivers)
    expected = [datasets.VOCABULARY.index(c) if c in datasets.VOCABULARY
                else -1 for c in (v[0].decode() for v in self.features['cat'])]
    # The training-time file still there but changed: the old bug read it.
    with open(vocabulary, 'w') as f:
      f.write('\n'.join(reversed(datasets.VOCABULARY)) + '\n')
    for ids in self._fallback_lookup_ids(export):
      self.assertEqual(ids, expected)
    os.remove(vocabulary)  # gone: the old bug failed with NotFoundError
    for ids in self._fallback_lookup_ids(export):
      self.assertEqual(ids, expected)


if __name__ == '__main__':
  absltest.main()
