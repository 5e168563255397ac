"""Property: any receiver map and assets_extra exports, or leaves no trace.

Hypothesis draws receiver maps (valid and invalid keys, receivers of every
kind) and `assets_extra` dicts (relative, absolute, escaping and duplicate
destinations; existing, missing and directory sources). A small oracle,
written from docs/errors.md, predicts the outcome: the export succeeds and
every tag set loads with the expected `assets.extra/` files, or it raises the
predicted documented error and the base is byte-for-byte as before.
"""

import os
import posixpath
import tempfile
import uuid

from absl.testing import absltest
import hypothesis
from hypothesis import strategies as st
import tensorflow as tf

import multimode_export
from multimode_export import _tf_private
from multimode_export import errors
from testing import datasets
from testing import faults
from testing import models
from testing import receiver_fns
from testing import running

ModeKeys = tf.estimator.ModeKeys
_VALID_KEYS = (ModeKeys.TRAIN, ModeKeys.EVAL, ModeKeys.PREDICT)
_INVALID_KEYS = ('predict', 'serving', 'TRAIN', 3)
_TAGS = {ModeKeys.TRAIN: ['train'], ModeKeys.EVAL: ['eval'],
         ModeKeys.PREDICT: ['serve']}
_DESTINATIONS = ('a.txt', './a.txt', 'dir/b.txt', 'dir//b.txt',
                 'dir/sub/../b.txt', 'dir/c.txt', '/abs.txt', '../up.txt',
                 'dir/../../up.txt', '', '.', 'gs://b/x.txt')
_SOURCES = ('vocab', 'notes', 'missing', 'directory')


def _raising_receiver():
  raise RuntimeError('receiver failed')


def _dict_receiver():
  return {'x': tf.zeros([1, datasets.FEATURE_DIM])}


def _unsupervised_receiver():
  x = tf.compat.v1.placeholder(tf.float32, [None, datasets.FEATURE_DIM])
  return _tf_private.UnsupervisedInputReceiver({'x': x}, {'x': x})


_RECEIVERS = {
    'supervised': receiver_fns.supervised_receiver_fn(),
    'serving': receiver_fns.serving_receiver_fn(),
    'unsupervised': _unsupervised_receiver,
    'raises': _raising_receiver,
    'dict': _dict_receiver,
    'none': None,
}

# Repeated entries weigh the draws toward exports that can succeed, so that
# both outcomes are well covered.
_keys = st.sampled_from(_VALID_KEYS * 4 + _INVALID_KEYS)
_kinds = st.sampled_from(['supervised'] * 4 + ['serving'] * 4 +
                         sorted(_RECEIVERS))
_receiver_maps = st.dictionaries(_keys, _kinds, max_size=3)
_assets = st.one_of(st.none(), st.dictionaries(
    st.sampled_from(_DESTINATIONS[:6] * 2 + _DESTINATIONS),
    st.sampled_from(_SOURCES[:2] * 3 + _SOURCES), max_size=3))


def _normalized(destination: str):
  """The assets.extra/ path of a destination, None if it must be refused."""
  normalized = posixpath.normpath(destination)
  if (not destination or '://' in destination or normalized.startswith('/')
      or normalized in ('.', '..') or normalized.startswith('../')):
    return None
  return normalized


def expected_error(kinds, assets):
  """The error class docs/errors.md predicts, or None for success."""
  if any(key not in _VALID_KEYS for key in kinds):
    return errors.InvalidModeError
  if all(kind == 'none' for kind in kinds.values()):  # empty map included
    return ValueError  # a None receiver fn: the mode is not requested
  seen = set()
  for destination, source in (assets or {}).items():
    normalized = _normalized(destination)
    if normalized is None or normalized in seen or source in ('missing',
                                                              'directory'):
      return errors.AssetsExtraError
    seen.add(normalized)
  for mode in _VALID_KEYS:  # graphs are built in this order
    kind = kinds.get(mode)
    if kind in ('raises', 'dict'):
      return errors.ReceiverError
    if mode != ModeKeys.PREDICT and kind == 'serving':
      return errors.ReceiverError
    if mode != ModeKeys.PREDICT and kind == 'unsupervised':
      return errors.ModelFnError  # the model's loss needs labels
  return None


class PropertyTest(models.ClassRootMixin, absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.estimator = models.train_custom(os.path.join(cls.root, 'model'),
                                        steps=3)
    cls.sources = {'missing': os.path.join(cls.root, 'missing.txt'),
                   'directory': cls.root}
    for name in ('vocab', 'notes'):
      cls.sources[name] = os.path.join(cls.root, f'{name}.txt')
      with open(cls.sources[name], 'w') as f:
        f.write(f'contents of {name}')
    cls.outcomes = {}

  @classmethod
  def tearDownClass(cls):
    print(f'\noutcomes: {dict(sorted(cls.outcomes.items()))}')
    super().tearDownClass()

  def _base(self, on_ram: bool, exists: bool) -> str:
    if on_ram:
      root = f'ram://property-{uuid.uuid4().hex}'
      tf.io.gfile.makedirs(root)
      self.addCleanup(tf.io.gfile.rmtree, root)
    else:
      root = tempfile.mkdtemp(dir=self.root)
    base = root + '/export'
    if exists:  # an earlier export that must survive untouched
      tf.io.gfile.makedirs(base + '/1000/variables')
      with tf.io.gfile.GFile(base + '/1000/saved_model.pb', 'wb') as f:
        f.write(b'an earlier export')
    return base

  @hypothesis.settings(max_examples=100, deadline=None, database=None,
                       suppress_health_check=list(hypothesis.HealthCheck))
  @hypothesis.example(kinds={ModeKeys.TRAIN: 'supervised',
                             ModeKeys.EVAL: 'supervised',
                             ModeKeys.PREDICT: 'serving'},
                      assets={'dir/b.txt': 'vocab', 'a.txt': 'notes'},
                      on_ram=False, exists=True)
  @hypothesis.example(kinds={ModeKeys.PREDICT: 'supervised'}, assets=None,
                      on_ram=True, exists=False)
  @hypothesis.example(kinds={ModeKeys.PREDICT: 'serving', 'predict': 'serving'},
                      assets=None, on_ram=False, exists=False)
  @hypothesis.given(kinds=_receiver_maps, assets=_assets,
                    on_ram=st.booleans(), exists=st.booleans())
  def test_exports_and_loads_or_raises_and_leaves_no_trace(
      self, kinds, assets, on_ram, exists):
    base = self._base(on_ram, exists)
    parent = base.rsplit('/', 1)[0]
    before = faults.snapshot(parent)
    receivers = {key: _RECEIVERS[kind] for key, kind in kinds.items()}
    assets_extra = (None if assets is None else
                    {d: self.sources[s] for d, s in assets.items()})
    expected = expected_error(kinds, assets)
    try:
      path = multimode_export.export_all_saved_models(
          self.estimator, base, receivers, assets_extra=assets_extra)
    except (ValueError, TypeError, errors.Error) as e:
      self.outcomes[type(e).__name__] = self.outcomes.get(
          type(e).__name__, 0) + 1
      self.assertIs(type(e), expected, f'{kinds} {assets}: {e}')
      self.assertEqual(faults.snapshot(parent), before, f'{kinds} {assets}')
      return
    self.outcomes['exported'] = self.outcomes.get('exported', 0) + 1
    self.assertIsNone(expected, f'{kinds} {assets} exported')
    self.assertEqual(running.load_every_tag_set(path),
                     sorted(_TAGS[k] for k, kind in kinds.items()
                            if kind != 'none'))
    for destination, source in (assets or {}).items():
      with tf.io.gfile.GFile(posixpath.join(
          path, 'assets.extra', _normalized(destination))) as f:
        self.assertEqual(f.read(), f'contents of {source}')
    after = faults.snapshot(parent)
    rel = path[len(parent) + 1:]
    self.assertEqual({k: v for k, v in after.items()
                      if not k.startswith(rel) and k != 'export/'},
                     {k: v for k, v in before.items() if k != 'export/'})


if __name__ == '__main__':
  absltest.main()
