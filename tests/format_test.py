"""saved_model/_format: asset files wherever a MetaGraphDef keeps them.

An Estimator export (ours and stock alike) keeps its assets in the
`saved_model_assets` collection; `inspect` and `verify` must see them.
"""

import os

import tensorflow as tf

import multimode_export
from multimode_export.checks import _inspection as inspection
from multimode_export.checks import _verification as verification
from multimode_export.saved_model import _format as saved_model_format
from testing import datasets
from testing import models
from testing import receiver_fns
from testing import running

ModeKeys = tf.estimator.ModeKeys


class AssetsTest(models.ClassRootMixin, tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    vocabulary = datasets.write_vocabulary(cls.root)
    features, _, scores = datasets.make_column_data()
    x_col, cat_col, _ = datasets.feature_columns(vocabulary)
    estimator = tf.estimator.LinearRegressor(
        [x_col, cat_col], model_dir=os.path.join(cls.root, 'model'))
    estimator.train(datasets.column_input_fn(features, scores), steps=2)
    supervised = receiver_fns.raw_supervised_receiver_fn(features, scores)
    serving = tf.estimator.export.build_raw_serving_input_receiver_fn(
        {k: tf.constant(v[:1]) for k, v in features.items()})
    cls.export = multimode_export.export_all_saved_models(
        estimator, os.path.join(cls.root, 'export'),
        {ModeKeys.TRAIN: supervised, ModeKeys.EVAL: supervised,
         ModeKeys.PREDICT: serving})

  def test_the_export_keeps_assets_in_the_collection(self):
    for meta in running.read_meta_graphs(self.export):
      self.assertEmpty(meta.asset_file_def)
      self.assertIn(saved_model_format.ASSETS_COLLECTION, meta.collection_def)
      self.assertEqual([f for _, f in saved_model_format.asset_files(meta)],
                       ['vocab.txt'])

  def test_inspect_lists_the_assets(self):
    summary = inspection.summarize(self.export)
    for meta in summary.meta_graphs:
      self.assertEqual([f for _, f in meta.assets], ['vocab.txt'], meta.tags)
    self.assertIn('assets: vocab.txt', inspection.inspect(self.export))

  def test_verify_checks_the_assets(self):
    report = verification.verify(self.export, run_train_step=False)
    assets = [c for c in report.checks if c.name == 'assets']
    self.assertLen(assets, 3)
    self.assertTrue(all(c.ok for c in assets), report)

  def test_verify_fails_on_a_missing_asset(self):
    broken = os.path.join(self.create_tempdir().full_path, 'broken')
    tf.io.gfile.makedirs(broken)
    for name in ('saved_model.pb', 'variables/variables.index',
                 'variables/variables.data-00000-of-00001'):
      tf.io.gfile.makedirs(os.path.dirname(os.path.join(broken, name)))
      tf.io.gfile.copy(os.path.join(self.export, name),
                       os.path.join(broken, name))
    report = verification.verify(broken, run_train_step=False)
    failed = [c for c in report.checks if c.name == 'assets' and not c.ok]
    self.assertLen(failed, 3, report)
    self.assertIn('vocab.txt', failed[0].detail)


if __name__ == '__main__':
  tf.test.main()
