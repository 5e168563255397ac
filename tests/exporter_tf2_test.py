"""`MultiModeExporter(tf2=True)`: each export carries its TF2 form.

Real `train_and_evaluate` runs of a tiny linear model, one per layout, shared
by the tests of the class: every kept export has `<export>/tf2/`, which
`tf.saved_model.load` loads without tags and which serves what the export's
serve signature serves; garbage collection removes old exports with theirs.
"""

import os

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

import multimode_export
from multimode_export.checks import _verification as verification
from testing import datasets
from testing import models
from testing import receiver_fns

ModeKeys = tf.estimator.ModeKeys


def _train_and_evaluate(model_dir, exporter, max_steps):
  estimator = tf.estimator.Estimator(
      models.linear_model_fn, model_dir=model_dir, params={},
      config=tf.estimator.RunConfig(tf_random_seed=1, save_checkpoints_steps=5,
                                    keep_checkpoint_max=100))
  tf.estimator.train_and_evaluate(
      estimator,
      tf.estimator.TrainSpec(datasets.input_fn(), max_steps=max_steps),
      tf.estimator.EvalSpec(datasets.input_fn(seed=1), steps=2,
                            exporters=[exporter], start_delay_secs=0,
                            throttle_secs=0))


def _serve_tf1_and_tf2(test, export_path):
  """Serving outputs of the export's serve graph and of its TF2 form."""
  x = datasets.make_data(n=5, seed=3)[0]
  source = tf.saved_model.load(export_path, tags=['serve'])
  converted = tf.saved_model.load(os.path.join(export_path, 'tf2'))
  test.assertEqual(sorted(converted.signatures), sorted(
      k for k in source.signatures if not k.startswith('__')))
  pairs = {}
  for key in converted.signatures:
    want = source.signatures[key](x=tf.constant(x))
    got = converted.signatures[key](x=tf.constant(x))
    pairs[key] = ({k: v.numpy() for k, v in want.items()},
                  {k: v.numpy() for k, v in got.items()})
  return pairs


class ExporterTF2Test(models.ClassRootMixin, parameterized.TestCase,
                      tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.exporters, cls.bases = {}, {}
    for layout, steps in (('shared', 15), ('per_mode', 10)):
      model_dir = os.path.join(cls.root, layout)
      cls.exporters[layout] = models.RecordingExporter(
          'mm', receiver_fns.receiver_map(), exports_to_keep=2,
          layout=layout, tf2=True)
      _train_and_evaluate(model_dir, cls.exporters[layout], steps)
      cls.bases[layout] = os.path.join(model_dir, 'export', 'mm')

  def _made(self, layout):
    return [c['path'] for c in self.exporters[layout].calls if c['path']]

  @parameterized.parameters('shared', 'per_mode')
  def test_every_kept_export_has_its_tf2_form(self, layout):
    made = self._made(layout)
    self.assertLen(made, {'shared': 3, 'per_mode': 2}[layout])
    for path in made[-2:]:
      self.assertTrue(os.path.isfile(os.path.join(path, 'tf2',
                                                  'saved_model.pb')), path)
      for key, (want, got) in _serve_tf1_and_tf2(self, path).items():
        self.assertEqual(sorted(want), sorted(got), key)
        for name in want:
          np.testing.assert_array_equal(got[name], want[name],
                                        err_msg=f'{key}/{name}')

  def test_tf2_form_has_the_functions_and_trains(self):
    path = self._made('shared')[-1]
    converted = tf.saved_model.load(os.path.join(path, 'tf2'))
    x, y = datasets.make_data(n=4, seed=5)
    step = converted.variables[0].numpy()
    self.assertIn('global_step', converted.variables[0].name)
    loss = converted.train_step(x=tf.constant(x), label=tf.constant(y))['loss']
    self.assertTrue(np.isfinite(loss.numpy()))
    self.assertEqual(converted.variables[0].numpy(), step + 1)
    self.assertIsNotNone(converted.eval_result)

  def test_gc_removes_old_exports_with_their_tf2_form(self):
    base = self.bases['shared']
    made = self._made('shared')
    self.assertFalse(os.path.exists(made[0]))
    self.assertEqual(sorted(os.listdir(base)),
                     sorted(os.path.basename(p) for p in made[-2:]))
    # Nothing else than the export and its TF2 form in a version directory:
    # no staging left by the converter.
    for path in made[-2:]:
      self.assertNotIn('.', ''.join(n[0] for n in os.listdir(path)))
      self.assertIn('tf2', os.listdir(path))

  def test_per_mode_tf2_form_is_in_the_serve_version(self):
    base = self.bases['per_mode']
    made = self._made('per_mode')
    for path in made:
      self.assertEqual(os.path.dirname(path), os.path.join(base, 'serve'))
      version = os.path.basename(path)
      for mode_dir in ('train', 'eval'):
        self.assertNotIn('tf2', os.listdir(os.path.join(base, mode_dir,
                                                        version)))
    converted = tf.saved_model.load(os.path.join(made[-1], 'tf2'))
    # Converted from every mode of the version, not only serve's.
    self.assertTrue(hasattr(converted, 'train_step'))
    self.assertTrue(hasattr(converted, 'eval_update'))

  def test_an_export_with_its_tf2_form_still_verifies(self):
    report = verification.verify(self._made('shared')[-1])
    self.assertTrue(report.ok, str(report))

  def test_rejects_bad_tf2_arguments(self):
    with self.assertRaisesRegex(TypeError, r"tf2: expected True or False, "
                                r"got 'yes'"):
      multimode_export.MultiModeExporter('mm', receiver_fns.receiver_map(),
                                         tf2='yes')
    with self.assertRaisesRegex(ValueError, r"tags: tf2=True needs the "
                                r"default tag sets.*'infer': \['custom'\]"):
      multimode_export.MultiModeExporter(
          'mm', receiver_fns.receiver_map(), tf2=True,
          tags={ModeKeys.PREDICT: ['custom']})
    # Custom tags stay allowed without the TF2 form.
    multimode_export.MultiModeExporter(
        'mm', receiver_fns.receiver_map(), tags={ModeKeys.PREDICT: ['custom']})


if __name__ == '__main__':
  tf.test.main()
