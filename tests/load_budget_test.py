"""verify's memory budget (max_load_gib) and its crc32c pass, on real exports."""

import os
import shutil

import tensorflow as tf
from absl.testing import parameterized

import multimode_export
from multimode_export.checks import _load_budget as load_budget
from multimode_export.checks import _verification as verification
from multimode_export.saved_model import _format
from multimode_export.variables import _bundle_index as bundle_index
from testing import models
from testing import receiver_fns

ModeKeys = tf.estimator.ModeKeys
GIB = 1 << 30


class LoadBudgetTest(models.ClassRootMixin, parameterized.TestCase,
                     tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.estimator = models.train_custom(os.path.join(cls.root, 'model'),
                                        steps=2, partitions=3)
    cls.export = multimode_export.export_all_saved_models(
        cls.estimator, os.path.join(cls.root, 'export'),
        receiver_fns.receiver_map())

  def _sizes(self):
    """tags -> bytes its saver restores, and all bytes of the export."""
    saved_model = _format.read_saved_model(self.export)
    sizes = {_format.tags_of(m):
             load_budget.restored_bytes(self.export, m)
             for m in saved_model.meta_graphs}
    _, entries = bundle_index.read(
        _format.variables_prefix(self.export) + '.index')
    return sizes, sum(e.size for e in entries.values())

  def test_restored_bytes_per_tag_set(self):
    sizes, total = self._sizes()
    # TRAIN restores everything (Adam slots, beta powers); serve only w, b
    # and global_step: 3 + 1 floats and one int64.
    self.assertEqual(sizes[('train',)], total)
    self.assertEqual(sizes[('serve',)], 4 * 4 + 8)
    self.assertLess(sizes[('eval',)], total)

  def test_tag_sets_over_the_budget_are_skipped_not_loaded(self):
    sizes, _ = self._sizes()
    budget = (sizes[('serve',)] + 1) / GIB  # serve fits, train does not
    report = verification.verify(self.export, max_load_gib=budget)
    self.assertTrue(report.ok, str(report))
    skipped = {c.tags: c for c in report.skipped}
    self.assertEqual(set(skipped), {('train',), ('eval',)}
                     if sizes[('eval',)] > sizes[('serve',)] else {('train',)})
    self.assertEqual(skipped[('train',)].name, 'loads')
    self.assertIn(f'over max_load_gib={budget:g}', skipped[('train',)].detail)
    names = {(c.name, c.tags) for c in report.checks}
    self.assertNotIn(('tf1_load', ('train',)), names)
    self.assertIn(('tf1_load', ('serve',)), names)
    self.assertIn(('saver', ('train',)), names)  # metadata checks still run
    self.assertRegex(_check(report, 'variables').detail,
                     r'crc32c of \d+ stored tensors')
    self.assertRegex(str(report), r'skip\s+train\s+loads\s+not loaded')

  @parameterized.named_parameters(('zero', 0), ('negative', -1.0),
                                  ('string', '1'), ('bool', True))
  def test_bad_budget(self, value):
    with self.assertRaisesRegex(ValueError,
                                f'max_load_gib: expected a positive number '
                                f'of GiB or None, got {value!r}'):
      verification.verify(self.export, max_load_gib=value)

  @parameterized.named_parameters(('zero', 0), ('negative', -1.0),
                                  ('string', '1'), ('bool', True))
  def test_bad_budgets(self, value):
    with self.assertRaisesRegex(ValueError,
                                'timeout: expected a positive number of '
                                f'seconds, got {value!r}'):
      verification.verify(self.export, timeout=value)

  def test_memory_cap(self):
    self.assertEqual(load_budget.memory_cap(1.5),
                     2 * load_budget.GIB + int(4.5 * load_budget.GIB))
    cap = load_budget.memory_cap(None)
    with open('/proc/meminfo') as f:
      total = int(f.readline().split()[1]) * 1024
    self.assertEqual(cap, int(total * 0.8))

  def test_corrupted_bytes_are_found_with_every_tag_set_skipped(self):
    # Same size, other bytes: only the crc32c tells. The budget keeps every
    # load away, so the variables check alone must find it.
    path = os.path.join(self.create_tempdir().full_path, 'copy')
    shutil.copytree(self.export, path)  # copies: the export may be linked
    prefix = _format.variables_prefix(path)
    _, entries = bundle_index.read(prefix + '.index')
    entry = entries[b'b']
    with open(f'{prefix}.data-{entry.shard_id:05d}-of-00001', 'r+b') as f:
      f.seek(entry.offset)
      byte = f.read(1)
      f.seek(entry.offset)
      f.write(bytes([byte[0] ^ 0x80]))
    report = verification.verify(path, max_load_gib=1e-12)
    self.assertFalse(report.ok)
    self.assertEqual([c.name for c in report.failures], ['variables'])
    self.assertRegex(report.failures[0].detail,
                     "variable 'b' unreadable: checksum mismatch")


def _check(report, name, tags=()):
  [check] = [c for c in report.checks if c.name == name and c.tags == tags]
  return check


if __name__ == '__main__':
  tf.test.main()
