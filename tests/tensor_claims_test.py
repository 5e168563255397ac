"""checks/_tensor_claims: size claims judged from protos, never expanded."""

import numpy as np
import tensorflow as tf
from absl.testing import absltest
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import tensor_bundle_pb2

from multimode_export.checks import _tensor_claims as tensor_claims


def _entry(dtype, dims, size, slices=0):
  entry = tensor_bundle_pb2.BundleEntryProto(dtype=dtype, size=size)
  for dim in dims:
    entry.shape.dim.add(size=dim)
  for _ in range(slices):
    entry.slices.add()
  return entry


class ConstantTest(absltest.TestCase):

  def test_real_constants_pass(self):
    for value in (np.zeros([3, 4], np.float32), np.arange(10),
                  np.array([b'a', b'bc']), np.float64(2.5), True):
      self.assertIsNone(tensor_claims.constant_problem(
          tf.make_tensor_proto(value)), value)
    # A small repeated value (tf.constant(0.0, shape=[100, 100])).
    self.assertIsNone(tensor_claims.constant_problem(
        tf.make_tensor_proto(0.0, shape=[100, 100])))

  def test_string_claiming_two_to_the_34(self):
    proto = tf.make_tensor_proto(b'x')
    proto.tensor_shape.dim.add(size=2**34)
    self.assertEqual(
        tensor_claims.constant_problem(proto),
        'a constant claiming string[17179869184] (at least 17179869184 '
        'bytes) but storing 1 value (2 bytes): expanding it would allocate '
        'the claim, over the 67108864-byte limit')

  def test_content_not_matching_the_shape(self):
    proto = tf.make_tensor_proto(np.zeros([4], np.float32))
    proto.tensor_shape.dim[0].size = 5
    self.assertIn('claiming float32[5] (20 bytes) but storing 16 bytes',
                  tensor_claims.constant_problem(proto))

  def test_more_values_than_the_shape(self):
    proto = tf.make_tensor_proto([1, 2, 3], dtype=tf.int64)
    del proto.tensor_shape.dim[:]
    proto.tensor_shape.dim.add(size=2)
    proto.tensor_content = b''
    proto.int64_val.extend([1, 2, 3])
    self.assertIn('claiming int64[2] (2 elements) but storing 3 values',
                  tensor_claims.constant_problem(proto))

  def test_variant_constant(self):
    proto = tf.make_tensor_proto(0)
    proto.dtype = types_pb2.DT_VARIANT
    proto.tensor_shape.dim.add(size=1)
    self.assertIn('a variant constant',
                  tensor_claims.constant_problem(proto))


class EntryTest(absltest.TestCase):

  def test_exact_for_fixed_size_dtypes(self):
    self.assertIsNone(tensor_claims.entry_problem(
        _entry(types_pb2.DT_FLOAT, [2, 3], 24), 24))
    self.assertEqual(
        tensor_claims.entry_problem(_entry(types_pb2.DT_FLOAT, [2, 3], 20),
                                    20),
        'claims float32[2,3] (24 bytes) but stores 20 bytes')
    self.assertEqual(
        tensor_claims.entry_problem(_entry(types_pb2.DT_FLOAT, [2], 12), 12),
        'claims float32[2] (8 bytes) but stores 12 bytes')

  def test_lower_bound_for_strings_and_variants(self):
    self.assertIsNone(tensor_claims.entry_problem(
        _entry(types_pb2.DT_STRING, [2], 30), 30))
    self.assertEqual(
        tensor_claims.entry_problem(
            _entry(types_pb2.DT_VARIANT, [2**25], 0), 0),
        'claims variant[33554432] (at least 33554432 bytes) but stores 0 '
        'bytes')

  def test_partitioned_full_entry_is_bounded_by_the_bundle(self):
    full = _entry(types_pb2.DT_FLOAT, [4, 2], 0, slices=2)
    self.assertIsNone(tensor_claims.entry_problem(full, 32))
    self.assertIn('stores 16 bytes', tensor_claims.entry_problem(full, 16))


if __name__ == '__main__':
  tf.test.main()
