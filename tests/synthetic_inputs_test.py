"""Synthetic feeds: the Examples built for a parser parse; shapes and dtypes."""

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from multimode_export.checks import _synthetic_inputs as synthetic_inputs

FixedLen = tf.io.FixedLenFeature

SPECS = {
    'dense_float': {'x': FixedLen([3], tf.float32)},
    'dense_mixed_no_defaults': {
        'age': FixedLen([], tf.int64), 'name': FixedLen([2], tf.string),
        'score': FixedLen([2, 2], tf.float32)},
    'sparse_and_dense': {'ids': tf.io.VarLenFeature(tf.int64),
                         'x': FixedLen([1], tf.float32)},
    'sequence': {'seq': tf.io.FixedLenSequenceFeature([2], tf.float32,
                                                      allow_missing=True)},
    'ragged': {'words': tf.io.RaggedFeature(tf.string),
               'x': FixedLen([], tf.float32)},
}


def _signature(inputs, outputs):
  build = tf.compat.v1.saved_model.build_tensor_info
  graph = next(iter(inputs.values())).graph
  with graph.as_default():  # build_tensor_info refuses to run eagerly.
    return tf.compat.v1.saved_model.build_signature_def(
        {k: build(v) for k, v in inputs.items()},
        {k: build(v) for k, v in outputs.items()})


def _run(graph, signature_def, feeds, fetches):
  with tf.compat.v1.Session(graph=graph) as session:
    return session.run(fetches, {signature_def.inputs[k].name: v
                                 for k, v in feeds.items()})


class ParsedFeedsTest(parameterized.TestCase, tf.test.TestCase):

  @parameterized.named_parameters(*SPECS.items())
  def test_parse_example_v2_parses_the_synthetic_examples(self, spec):
    graph = tf.Graph()
    with graph.as_default():
      serialized = tf.compat.v1.placeholder(tf.string, [None], 'examples')
      parsed = tf.io.parse_example(serialized, spec)
    signature_def = _signature({'examples': serialized}, {})
    index = synthetic_inputs.GraphIndex(graph.as_graph_def())
    features = index.example_features(serialized.name)
    self.assertCountEqual([f.key for f in features], spec)
    feeds = synthetic_inputs.signature_feeds(signature_def, index)
    self.assertEqual(feeds['examples'].shape, (2,))
    values = _run(graph, signature_def, feeds, parsed)
    for key, feature in spec.items():
      if isinstance(feature, FixedLen):
        self.assertEqual(values[key].shape, (2,) + tuple(feature.shape))
    self.assertIn('examples: tf.Example(',
                  synthetic_inputs.describe(signature_def, index, feeds))

  def test_parse_example_v1_and_identity_in_between(self):
    graph = tf.Graph()
    with graph.as_default():
      serialized = tf.compat.v1.placeholder(tf.string, [None], 'examples')
      parsed = tf.raw_ops.ParseExample(
          serialized=tf.identity(serialized), names=[],
          sparse_keys=['ids'], dense_keys=['x'],
          dense_defaults=[tf.constant([], tf.float32)],
          sparse_types=[tf.int64], dense_shapes=[[3]])
    signature_def = _signature({'examples': serialized}, {})
    index = synthetic_inputs.GraphIndex(graph.as_graph_def())
    self.assertCountEqual(
        [(f.key, f.dtype, f.num_values)
         for f in index.example_features(serialized.name)],
        [('x', tf.float32, 3), ('ids', tf.int64, 1)])
    feeds = synthetic_inputs.signature_feeds(signature_def, index)
    dense = _run(graph, signature_def, feeds, parsed.dense_values[0])
    self.assertAllEqual(dense, np.zeros([2, 3]))

  def test_parse_single_example(self):
    graph = tf.Graph()
    with graph.as_default():
      serialized = tf.compat.v1.placeholder(tf.string, [], 'example')
      parsed = tf.raw_ops.ParseSingleExample(
          serialized=serialized, dense_defaults=[tf.constant([], tf.int64)],
          num_sparse=0, sparse_keys=[], dense_keys=['n'], sparse_types=[],
          dense_shapes=[[2]])
    signature_def = _signature({'example': serialized}, {})
    feeds = synthetic_inputs.signature_feeds(
        signature_def, synthetic_inputs.GraphIndex(graph.as_graph_def()))
    self.assertEqual(feeds['example'].shape, ())
    self.assertAllEqual(
        _run(graph, signature_def, feeds, parsed.dense_values[0]), [0, 0])

  def test_string_without_parser_gets_empty_bytes(self):
    graph = tf.Graph()
    with graph.as_default():
      text = tf.compat.v1.placeholder(tf.string, [None, 2], 'text')
      length = tf.strings.length(text)
    signature_def = _signature({'text': text}, {'n': length})
    index = synthetic_inputs.GraphIndex(graph.as_graph_def())
    self.assertIsNone(index.example_features(text.name))
    feeds = synthetic_inputs.signature_feeds(signature_def, index)
    self.assertEqual(feeds['text'].tolist(), [[b'', b''], [b'', b'']])
    self.assertEqual(synthetic_inputs.describe(signature_def, index, feeds),
                     "text: b''[2,2]")


class NumericFeedsTest(parameterized.TestCase, tf.test.TestCase):

  @parameterized.named_parameters(
      ('batch_unknown', [None, 3], (2, 3)),
      ('inner_unknown', [4, None], (4, 1)),
      ('scalar', [], ()),
      ('unknown_rank', None, (2,)),
  )
  def test_shapes(self, shape, expected):
    graph = tf.Graph()
    with graph.as_default():
      x = tf.compat.v1.placeholder(tf.float32, shape, 'x')
      flag = tf.compat.v1.placeholder(tf.bool, shape, 'flag')
      ids = tf.compat.v1.placeholder(tf.int32, shape, 'ids')
    signature_def = _signature({'x': x, 'flag': flag, 'ids': ids}, {})
    feeds = synthetic_inputs.signature_feeds(
        signature_def, synthetic_inputs.GraphIndex(graph.as_graph_def()))
    for key, dtype in (('x', np.float32), ('flag', np.bool_),
                       ('ids', np.int32)):
      self.assertEqual(feeds[key].shape, expected)
      self.assertEqual(feeds[key].dtype, dtype)
      self.assertFalse(np.any(feeds[key]))

  def test_batch_size(self):
    graph = tf.Graph()
    with graph.as_default():
      x = tf.compat.v1.placeholder(tf.float32, [None, 3], 'x')
    feeds = synthetic_inputs.signature_feeds(
        _signature({'x': x}, {}),
        synthetic_inputs.GraphIndex(graph.as_graph_def()), batch_size=5)
    self.assertEqual(feeds['x'].shape, (5, 3))



class CompositeFeedsTest(tf.test.TestCase):

  def test_sparse_and_ragged_inputs_get_values_the_graph_runs_on(self):
    graph = tf.Graph()
    with graph.as_default():
      sparse = tf.compat.v1.sparse_placeholder(tf.float32, [None, 4], 's')
      ragged = tf.RaggedTensor.from_row_splits(
          tf.compat.v1.placeholder(tf.string, [None], 'words'),
          tf.compat.v1.placeholder(tf.int64, [None], 'splits'))
      outputs = {'total': tf.sparse.reduce_sum(sparse, axis=1),
                 'lengths': ragged.row_lengths()}
    signature_def = _signature({'s': sparse, 'r': ragged}, outputs)
    index = synthetic_inputs.GraphIndex(graph.as_graph_def())
    feeds = synthetic_inputs.signature_feeds(signature_def, index, batch_size=3)
    self.assertEqual(list(feeds['s'].dense_shape), [3, 4])
    self.assertEqual(
        synthetic_inputs.describe(signature_def, index, feeds),
        'r: ragged string[3,...], s: sparse float32[3,4]')
    by_name = synthetic_inputs.tensor_feeds(signature_def, feeds)
    self.assertLen(by_name, 5)
    with tf.compat.v1.Session(graph=graph) as session:
      values = session.run(outputs, by_name)
    self.assertAllEqual(values['total'], [0.0, 0.0, 0.0])
    self.assertAllEqual(values['lengths'], [1, 1, 1])

  def test_a_tensor_under_several_keys_is_fed_once(self):
    graph = tf.Graph()
    with graph.as_default():
      x = tf.compat.v1.placeholder(tf.int64, [None, 1], 'x')
    signature_def = _signature({'features/label': x, 'labels': x}, {})
    feeds = synthetic_inputs.signature_feeds(
        signature_def, synthetic_inputs.GraphIndex(graph.as_graph_def()))
    self.assertCountEqual(feeds, ['features/label', 'labels'])
    self.assertEqual(list(synthetic_inputs.tensor_feeds(signature_def, feeds)),
                     ['x:0'])


if __name__ == '__main__':
  tf.test.main()
