"""checks/_op_allowlist and _refusals: the reviewed list and its refusals."""

import tensorflow as tf
from absl.testing import absltest

from multimode_export import _tf_private
from multimode_export.checks import _op_allowlist as allowlist
from multimode_export.checks import _refusals as refusals


class AllowlistTest(absltest.TestCase):

  def test_every_listed_op_is_an_op_of_this_tensorflow_once(self):
    seen = {}
    for family in allowlist.FAMILIES:
      self.assertTrue(family.reason)
      for op in family.op_types.split():
        self.assertTrue(_tf_private.is_registered_op(op), op)
        self.assertNotIn(op, seen, f'{op} in {family.name} and {seen.get(op)}')
        seen[op] = family.name
    self.assertEqual(set(seen), allowlist.ALLOWED)

  def test_ops_acting_outside_memory_are_not_listed(self):
    for op in ('Abort', 'DatasetFromGraph', 'DatasetToSingleElement',
               'FIFOQueueV2', 'QueueDequeueV2', 'IteratorGetNext', 'PrintV2',
               'WriteFile', 'ImmutableConst', 'RemoteCall', 'PyFunc',
               'CreateSummaryFileWriter', 'BatchFunction', 'MapUnstage'):
      self.assertNotIn(op, allowlist.ALLOWED)
      self.assertIsNone(allowlist.family_of(op))

  def test_what_the_suite_exports_use_is_listed(self):
    for op in ('Const', 'MatMul', 'VarHandleOp', 'RestoreV2', 'ParseExampleV2',
               'HashTableV2', 'LookupTableFindV2', 'StatefulPartitionedCall',
               'While', 'ScalarSummary', 'ApplyAdam', 'SdcaOptimizerV2'):
      self.assertIsNotNone(allowlist.family_of(op), op)

  def test_refusal_reasons(self):
    self.assertEqual(refusals.reason('Abort'), 'ends the process')
    self.assertIn('graph carried as data', refusals.reason('DatasetFromGraph'))
    self.assertIn('can wait forever', refusals.reason('QueueDequeueV2'))
    self.assertIn('can wait forever', refusals.reason('IteratorGetNext'))
    self.assertIn('tf.data pipeline', refusals.reason('MapDataset'))
    self.assertIn('custom kernel', refusals.reason('NoSuchOpAnywhere'))
    self.assertEqual(refusals.reason('XlaCallModule'), refusals.UNLISTED)


if __name__ == '__main__':
  tf.test.main()
