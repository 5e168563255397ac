"""Tests of multimode_export.modes: carrier choice and receiver map checks."""

import itertools
import os
import types

import tensorflow as tf
from absl.testing import absltest
from absl.testing import parameterized

import multimode_export
from multimode_export import errors
from multimode_export.graph import _modes as modes
from testing import models
from testing import receiver_fns
ModeKeys = tf.estimator.ModeKeys
ALL = (ModeKeys.TRAIN, ModeKeys.EVAL, ModeKeys.PREDICT)
SUBSETS = [s for n in range(1, 4) for s in itertools.combinations(ALL, n)]


def _receiver():
  return receiver_fns.serving_receiver_fn()


class ChooseVariablesCarrierTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ('_'.join(subset), subset) for subset in SUBSETS)
  def test_every_subset_in_every_order(self, subset):
    # The stock export saves variables from the first mode it builds, and it
    # builds TRAIN, then EVAL, then PREDICT.
    expected = next(m for m in (ModeKeys.TRAIN, ModeKeys.EVAL,
                                ModeKeys.PREDICT) if m in subset)
    for order in itertools.permutations(subset):
      self.assertEqual(modes.choose_variables_carrier(order), expected)
      self.assertEqual(modes.choose_variables_carrier(iter(order)), expected)
      self.assertEqual(
          modes.choose_variables_carrier(dict.fromkeys(order)), expected)
    self.assertEqual(modes.ordered_modes(reversed(subset))[0], expected)

  def test_public_name_is_the_same_function(self):
    self.assertIs(multimode_export.choose_variables_carrier,
                  modes.choose_variables_carrier)

  @parameterized.named_parameters(('empty', ()), ('unknown', ('predict',)))
  def test_no_known_mode_is_refused(self, given):
    with self.assertRaisesRegex(ValueError, 'expected at least one of'):
      modes.choose_variables_carrier(given)


class NormalizeReceiverMapTest(parameterized.TestCase):

  def test_returns_a_copy_in_build_order(self):
    fns = {m: _receiver() for m in ALL}
    given = {ModeKeys.PREDICT: fns[ModeKeys.PREDICT],
             ModeKeys.TRAIN: fns[ModeKeys.TRAIN],
             ModeKeys.EVAL: fns[ModeKeys.EVAL]}
    snapshot = dict(given)
    normalized = modes.normalize_receiver_map(given)
    self.assertEqual(list(normalized), list(ALL))
    self.assertEqual(normalized, fns)
    self.assertIsNot(normalized, given)
    self.assertEqual(list(given), [ModeKeys.PREDICT, ModeKeys.TRAIN,
                                   ModeKeys.EVAL])
    self.assertEqual(given, snapshot)
    normalized.clear()
    self.assertEqual(given, snapshot)

  def test_accepts_any_mapping(self):
    fn = _receiver()
    frozen = types.MappingProxyType({ModeKeys.PREDICT: fn})
    self.assertEqual(modes.normalize_receiver_map(frozen),
                     {ModeKeys.PREDICT: fn})

  @parameterized.named_parameters(
      ('predict_spelled_out', 'predict'),
      ('serve', 'serve'),
      ('serving', 'serving'),
      ('upper_case_predict', 'PREDICT'))
  def test_unknown_key_refused_with_infer_hint_even_next_to_valid_ones(
      self, key):
    given = {ModeKeys.TRAIN: _receiver(), ModeKeys.EVAL: _receiver(),
             key: _receiver()}
    with self.assertRaisesRegex(errors.InvalidModeError,
                                "ModeKeys.PREDICT is the string 'infer'"
                               ) as caught:
      modes.normalize_receiver_map(given)
    self.assertEqual(caught.exception.mode, key)
    self.assertIn(repr(key), str(caught.exception))
    self.assertIsInstance(caught.exception, ValueError)

  @parameterized.named_parameters(('string', 'foo'), ('none', None),
                                  ('int', 3))
  def test_other_unknown_keys_name_the_key_and_the_valid_ones(self, key):
    with self.assertRaises(errors.InvalidModeError) as caught:
      modes.normalize_receiver_map({ModeKeys.PREDICT: _receiver(),
                                    key: _receiver()})
    message = str(caught.exception)
    self.assertIn(repr(key), message)
    self.assertIn("'infer'", message)
    self.assertEqual(caught.exception.mode, key)

  @parameterized.named_parameters(
      ('receiver_instead_of_fn', 'receiver'),
      ('string', 'serving_input_receiver_fn'))
  def test_non_callable_receiver_refused(self, receiver):
    if receiver == 'receiver':
      with tf.Graph().as_default():
        receiver = _receiver()()  # the receiver itself, a common mistake
    given = {ModeKeys.TRAIN: _receiver(), ModeKeys.PREDICT: receiver}
    with self.assertRaisesRegex(errors.ReceiverError,
                                r"input_receiver_fn_map\['infer'\]"
                               ) as caught:
      modes.normalize_receiver_map(given)
    self.assertEqual(caught.exception.mode, ModeKeys.PREDICT)
    self.assertIs(caught.exception.receiver_fn, receiver)
    self.assertIn(repr(receiver), str(caught.exception))
    self.assertIsInstance(caught.exception, TypeError)

  def test_none_receiver_is_a_mode_not_requested(self):
    train = _receiver()
    given = {ModeKeys.PREDICT: None, ModeKeys.TRAIN: train,
             ModeKeys.EVAL: None}
    with self.assertLogs('absl', level='INFO') as logs:
      self.assertEqual(modes.normalize_receiver_map(given),
                       {ModeKeys.TRAIN: train})
    self.assertIn("input_receiver_fn_map['infer'] is None", logs.output[0])
    self.assertEqual(len(given), 3)

  @parameterized.named_parameters(
      ('empty', {}, 'dict_keys([])'),
      ('only_none', {ModeKeys.EVAL: None, ModeKeys.PREDICT: None},
       "dict_keys(['eval', 'infer'])"))
  def test_no_receiver_fn_refused_with_the_stock_wording(self, given, keys):
    with self.assertRaisesRegex(ValueError,
                                'No valid modes for exporting found') as caught:
      modes.normalize_receiver_map(given)
    self.assertIn(f'Got {keys}', str(caught.exception))

  def test_not_a_mapping_refused(self):
    with self.assertRaisesRegex(TypeError, 'got list'):
      modes.normalize_receiver_map([(ModeKeys.PREDICT, _receiver())])


class TagsTest(absltest.TestCase):

  def test_default_tags_match_the_stock_export(self):
    # The stock map has no public name (checked on TF 2.13-2.15).
    from tensorflow_estimator.python.estimator.export import export_lib  # pylint: disable=g-import-not-at-top
    for mode in ALL:
      self.assertEqual(list(modes.tags_for(mode)),
                       list(export_lib.EXPORT_TAG_MAP[mode]))

  def test_custom_tags_take_precedence(self):
    self.assertEqual(modes.tags_for(ModeKeys.EVAL, {ModeKeys.EVAL: ['x']}),
                     ('x',))
    self.assertEqual(modes.tags_for(ModeKeys.TRAIN, {ModeKeys.EVAL: ['x']}),
                     ('train',))


class PublicEntryPointTest(models.ClassRootMixin, parameterized.TestCase):
  """The same checks through export_all_saved_models: nothing is written."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    # Validation comes before the checkpoint: no training needed.
    cls.estimator = models.MixinEstimator(
        models.linear_model_fn, params={},
        model_dir=os.path.join(cls.root, 'model'))

  @parameterized.named_parameters(
      ('unknown_key', {ModeKeys.TRAIN: _receiver(), 'predict': _receiver()},
       errors.InvalidModeError, "'infer'"),
      ('string_receiver', {ModeKeys.PREDICT: 'fn'}, errors.ReceiverError,
       "got 'fn'"),
      ('only_none', {ModeKeys.PREDICT: None}, ValueError,
       'No valid modes for exporting found'),
      ('empty', {}, ValueError, 'No valid modes for exporting found'))
  def test_refused_and_nothing_written(self, receivers, error, regex):
    base = os.path.join(self.create_tempdir().full_path, 'exports')
    snapshot = dict(receivers)
    for export in (
        lambda: multimode_export.export_all_saved_models(
            self.estimator, base, receivers),
        lambda: self.estimator.export_all_saved_models(base, receivers)):
      with self.assertRaisesRegex(error, regex):
        export()
      self.assertFalse(os.path.exists(base))
    self.assertEqual(receivers, snapshot)


if __name__ == '__main__':
  absltest.main()
