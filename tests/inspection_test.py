"""inspect()/summarize(): the facts match the export's proto and variables."""

import os

import tensorflow as tf

import multimode_export
from multimode_export.checks import _inspection as inspection
from multimode_export.graph import _saver_spec as saver_spec
from multimode_export.saved_model import _format
from testing import assertions
from testing import models
from testing import receiver_fns
from testing import running
class InspectionTest(models.ClassRootMixin, tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    extra = os.path.join(cls.root, 'notes.txt')
    with open(extra, 'w') as f:
      f.write('hello')
    cls.ours = multimode_export.export_all_saved_models(
        models.train_custom(os.path.join(cls.root, 'custom')),
        os.path.join(cls.root, 'ours'), receiver_fns.receiver_map(),
        assets_extra={'docs/notes.txt': extra})
    cls.canned = assertions.stock_canned_export(
        models.train_canned_dnn(os.path.join(cls.root, 'dnn')),
        os.path.join(cls.root, 'canned'))

  def test_summary_matches_the_proto(self):
    summary = inspection.summarize(self.ours)
    metas = {m.tags: m for m in summary.meta_graphs}
    self.assertCountEqual(metas, [('train',), ('eval',), ('serve',)])
    self.assertEqual(metas[('train',)].train_ops, ('Adam',))
    self.assertEqual(metas[('eval',)].train_ops, ())
    self.assertEqual(metas[('serve',)].train_ops, ())
    for meta in summary.meta_graphs:
      self.assertLen(meta.main_ops, 1)
    [serving] = [s for s in metas[('serve',)].signatures
                 if s.key == 'serving_default']
    self.assertEqual(serving.method_name, 'tensorflow/serving/predict')
    [x] = serving.inputs
    self.assertEqual((x.key, x.dtype, x.shape), ('x', 'float32', '(-1, 3)'))
    self.assertEqual(summary.assets_extra, ('docs/notes.txt',))

  def test_variables_and_who_uses_them(self):
    summary = inspection.summarize(self.ours)
    on_disk = assertions.saved_variables(self.ours)
    self.assertCountEqual([v.name for v in summary.variables], on_disk)
    for variable in summary.variables:
      self.assertEqual(variable.nbytes, on_disk[variable.name].nbytes)
      self.assertEqual(variable.shape, on_disk[variable.name].shape)
    # "used by" is exactly what each graph's saver restores.
    metas = {m.tags: m for m in summary.meta_graphs}
    for meta in summary.meta_graphs:
      users = {v.name for v in summary.variables if meta.tags in v.used_by}
      self.assertEqual(users, set(meta.restored))
    self.assertIn('w/Adam', metas[('train',)].restored)
    self.assertNotIn('w/Adam', metas[('serve',)].restored)
    self.assertCountEqual(metas[('serve',)].restored,
                          ['b', 'global_step', 'w'])
    files = dict(summary.variables_files)
    self.assertCountEqual(files, os.listdir(os.path.join(self.ours,
                                                         'variables')))

  def test_text_table(self):
    text = inspection.inspect(self.ours)
    self.assertStartsWith(text, f'SavedModel {self.ours}: 3 MetaGraphDefs '
                          '[train] [eval] [serve]')
    self.assertIn("signature 'serving_default'  tensorflow/serving/predict",
                  text)
    self.assertRegex(text, r'in\s+x\s+float32\s+\(-1, 3\)\s+Placeholder:0')
    self.assertRegex(text, r'train op: Adam\s+main op: \S+\s+restores: 9 of 9')
    self.assertRegex(text, r'\[train\] \[eval\] \[serve\]\s+3\s+')
    self.assertRegex(text, r'w/Adam\s+float32\s+\[3, 1\]\s+12 B\s+\[train\]')
    self.assertIn('assets.extra/: docs/notes.txt', text)

  def test_canned_parsing_export(self):
    summary = inspection.summarize(self.canned)
    [serve] = [m for m in summary.meta_graphs if m.tags == ('serve',)]
    keys = {s.key: s for s in serve.signatures}
    self.assertCountEqual(keys, ['classification', 'predict',
                                 'serving_default'])
    self.assertEqual(keys['classification'].method_name,
                     'tensorflow/serving/classify')
    [inputs] = keys['classification'].inputs
    self.assertEqual((inputs.dtype, inputs.shape), ('string', '(-1,)'))
    needed = saver_spec.required_variables(
        _meta_graph(self.canned, ['serve']))
    self.assertCountEqual(serve.restored, needed)

  def test_many_variables_are_elided(self):
    text = inspection.format_summary(inspection.summarize(self.ours),
                                     max_variables=2)
    self.assertIn('... and 7 more', text)

  def test_not_a_saved_model(self):
    with self.assertRaisesRegex(multimode_export.Error,
                                'is not a SavedModel: it has no saved_model'):
      inspection.inspect(self.create_tempdir().full_path)

  def test_corrupt_proto(self):
    path = self.create_tempdir()
    path.create_file('saved_model.pb', content='not a proto')
    with self.assertRaisesRegex(ValueError, 'does not parse'):
      inspection.inspect(path.full_path)


class InspectLayoutsTest(models.ClassRootMixin, tf.test.TestCase):
  """inspect() on export bases and per-mode exports, built once."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.paths = running.export_every_layout(
        models.train_custom(os.path.join(cls.root, 'model')), cls.root)

  def _table(self, path):
    return inspection.format_summary(inspection.summarize(path))

  def test_shared_base_shows_the_newest_version(self):
    text = inspection.inspect(self.paths['shared_base'])
    first, rest = text.split('\n\n', 1)
    self.assertStartsWith(first, f'Export {self.paths["shared_base"]}: '
                          'shared layout: versions [')
    self.assertEqual(rest, self._table(self.paths['shared_newest']))

  def test_per_mode_base_shows_every_mode_of_the_newest_complete(self):
    base, version = self.paths['per_mode_base'], self.paths['per_mode_newest']
    text = inspection.inspect(base)
    self.assertIn(f'newest complete {version}', text.splitlines()[0])
    expected = [text.splitlines()[0]]
    for mode_dir in ('train', 'eval', 'serve'):
      expected += [f'== {mode_dir} ==',
                   self._table(os.path.join(base, mode_dir, version))]
    self.assertEqual(text, '\n\n'.join(expected))

  def test_per_mode_fixed_export(self):
    fixed = self.paths['per_mode_fixed']
    text = inspection.inspect(fixed)
    self.assertIn('per-mode layout (export_dir=)', text.splitlines()[0])
    for mode_dir, tags in (('train', '[train]'), ('eval', '[eval]'),
                           ('serve', '[serve]')):
      self.assertIn(f'SavedModel {fixed}/{mode_dir}: 1 MetaGraphDef {tags}',
                    text)

  def test_mode_dirs_without_saved_models(self):
    path = self.create_tempdir()
    path.mkdir('serve')
    with self.assertRaisesRegex(multimode_export.NotASavedModelError,
                                'no mode directory holds a SavedModel'):
      inspection.inspect(path.full_path)


def _meta_graph(export_dir, tags):
  for meta in _format.read_saved_model(export_dir).meta_graphs:
    if sorted(meta.meta_info_def.tags) == sorted(tags):
      return meta
  raise AssertionError(tags)


if __name__ == '__main__':
  tf.test.main()
