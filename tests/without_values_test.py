"""without_values: a TF2 SavedModel over a checkpoint's extents, against stock.

A real TF1 checkpoint (a Saver's: a 3-way partitioned embedding, a matrix, a
string vocabulary, global_step) is the source. The same `tf.Module` is saved
twice: by `tf.saved_model.save` with the checkpoint's values loaded into its
variables (the reference), and by `save_without_values` with uninitialized
variables. The two must agree: `saved_model.pb` (object graph, functions,
signatures), the checkpoint's object graph and keys, every tensor byte for
byte; the result loads and serves in this TF and in the newest TF.

The only differences between the two `saved_model.pb` files are numbers
TensorFlow takes from a process-wide counter (function name suffixes such as
`__inference_serve_187`, and the `_user_specified_name` of captured inputs):
creating and assigning variables with values advances that counter. They are
replaced by `N` before comparing.
"""

import json
import os
import re
import subprocess

import numpy as np
import tensorflow as tf
from absl.testing import absltest
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.core.protobuf import trackable_object_graph_pb2

from multimode_export import _tf_private
from multimode_export.saved_model import _without_values as without_values
from multimode_export.variables import _bundle_index as bundle_index
from testing import models

_ROWS = 20000
_VENV = os.environ.get('MULTIMODE_EXPORT_TF_NEW_VENV', '/tmp/venv-tf-new')
_COUNTER = re.compile(r'(__inference_[A-Za-z_]+?)_\d+\b')
_USER_NAME = re.compile(r'(key: "_user_specified_name"\s+value \{\s+s: )"\d+"')


def _tf1_checkpoint(directory):
  """The source: returns (prefix, {partition name: Saver slice spec})."""
  graph = tf.Graph()
  with graph.as_default():
    tf.compat.v1.train.create_global_step()
    emb = tf.compat.v1.get_variable(
        'emb', [_ROWS, 2], initializer=tf.compat.v1.random_uniform_initializer(),
        partitioner=tf.compat.v1.fixed_size_partitioner(3))
    tf.compat.v1.get_variable(
        'w', [2, 3], initializer=tf.compat.v1.random_normal_initializer())
    tf.compat.v1.get_variable(
        'vocab', initializer=tf.constant([b'a', b'', b'\x00\xff' * 40]))
    saver = tf.compat.v1.train.Saver(sharded=True)
    with tf.compat.v1.Session() as session:
      session.run(tf.compat.v1.global_variables_initializer())
      session.run(tf.compat.v1.assign(tf.compat.v1.train.get_global_step(), 7))
      prefix = saver.save(session, os.path.join(directory, 'model.ckpt'))
    specs = {v.op.name: v._save_slice_info.spec for v in emb}  # pylint: disable=protected-access
  return prefix, specs


def _sources(specs):
  """Model attribute -> (checkpoint key, slice spec)."""
  sources = {f'part_{i}': ('emb', specs[f'emb/part_{i}']) for i in range(3)}
  sources.update(w=('w', ''), vocab=('vocab', ''), step=('global_step', ''))
  return sources


class Model(tf.Module):
  """Variables made by `make(name=, shape=, dtype=)`, and a counter with a
  value."""

  def __init__(self, make, shapes):
    super().__init__(name='model')
    self.parts = [make(name=f'emb/part_{i}', shape=shapes[f'part_{i}'],
                       dtype=tf.float32) for i in range(3)]
    self.w = make(name='w', shape=[2, 3], dtype=tf.float32)
    self.vocab = make(name='vocab', shape=[3], dtype=tf.string)
    self.step = make(name='global_step', shape=[], dtype=tf.int64)
    self.calls = tf.Variable(5, dtype=tf.int64, name='calls')

  @tf.function(input_signature=[tf.TensorSpec([None], tf.int64, name='ids'),
                                tf.TensorSpec([None, 2], tf.float32, name='x')])
  def serve(self, ids, x):
    self.calls.assign_add(1)
    return {'emb': tf.gather(tf.concat(self.parts, 0), ids),
            'y': tf.matmul(x, self.w) + tf.cast(self.step, tf.float32),
            'word': tf.gather(self.vocab, ids % 3)}


def _value(reader, key, spec):
  value = reader.get_tensor(key)
  if spec:
    _, bounds = bundle_index.spec_bounds(spec)
    value = value[tuple(slice(s, s + n) for s, n in bounds)]
  return value


def _canonical(path):
  """saved_model.pb as text, counters replaced; its functions by name."""
  with open(os.path.join(path, 'saved_model.pb'), 'rb') as f:
    proto = saved_model_pb2.SavedModel.FromString(f.read())
  library = proto.meta_graphs[0].graph_def.library
  functions = {}
  for function in library.function:
    text = _USER_NAME.sub(r'\1"N"', _COUNTER.sub(r'\1_N', str(function)))
    functions[_COUNTER.sub(r'\1_N', function.signature.name)] = text
  library.ClearField('function')
  return _COUNTER.sub(r'\1_N', str(proto)), functions


def _bundle(path):
  reader = tf.train.load_checkpoint(os.path.join(path, 'variables',
                                                 'variables'))
  values = {}
  for key in reader.get_variable_to_shape_map():
    value = reader.get_tensor(key)
    if isinstance(value, bytes):  # a string scalar
      values[key] = ('bytes', (), value)
      continue
    values[key] = (value.dtype.str, value.shape, value.tobytes()
                   if value.dtype != object else value.tolist())
  graph = trackable_object_graph_pb2.TrackableObjectGraph.FromString(
      reader.get_tensor(without_values.OBJECT_GRAPH_KEY))
  return values, graph


class _SourceMixin(models.ClassRootMixin):
  """The source checkpoint, written once per class, and its values."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.source, specs = _tf1_checkpoint(cls.root)
    cls.sources = _sources(specs)
    reader = tf.train.load_checkpoint(cls.source)
    cls.values = {a: _value(reader, *s) for a, s in cls.sources.items()}
    cls.shapes = {a: v.shape for a, v in cls.values.items()}

  def _model(self, with_values):
    if with_values:
      values = {'w': 'w', 'vocab': 'vocab', 'global_step': 'step'}
      values.update({f'emb/part_{i}': f'part_{i}' for i in range(3)})
      make = lambda name, shape, dtype: tf.Variable(  # pylint: disable=g-long-lambda
          self.values[values[name]], name=name)
    else:
      make = _tf_private.uninitialized_variable
    return Model(make, self.shapes)

  def _pairs(self, model):
    attributes = {'w': model.w, 'vocab': model.vocab, 'step': model.step}
    attributes.update({f'part_{i}': p for i, p in enumerate(model.parts)})
    return [(attributes[a], s) for a, s in self.sources.items()]


class SaveWithoutValuesTest(_SourceMixin, tf.test.TestCase):


  def _save_both(self):
    reference = self.create_tempdir().full_path
    model = self._model(True)
    tf.saved_model.save(model, reference,
                        signatures={'serving_default': model.serve})
    converted = os.path.join(self.create_tempdir().full_path, 'converted')
    model = self._model(False)
    result = without_values.save_without_values(
        model, converted, self.source, self._pairs(model),
        signatures={'serving_default': model.serve})
    return reference, converted, result

  def test_same_files_as_saving_with_values(self):
    reference, converted, result = self._save_both()
    self.assertEqual(result.keys, 6)
    self.assertIn(result.method, ('hardlink', 'reflink'))
    text, functions = _canonical(converted)
    expected_text, expected_functions = _canonical(reference)
    self.assertEqual(text, expected_text)
    self.assertEqual(functions, expected_functions)
    values, graph = _bundle(converted)
    expected_values, expected_graph = _bundle(reference)
    self.assertEqual(graph, expected_graph)
    self.assertEqual(sorted(values), sorted(expected_values))
    for key in expected_values:
      self.assertEqual(values[key], expected_values[key], key)
    # The values' bytes are the source's own data shard, linked.
    source_data = os.stat(self.source + '.data-00000-of-00001')
    linked = os.stat(os.path.join(converted, 'variables',
                                  'variables.data-00000-of-00002'))
    self.assertEqual(source_data.st_size, linked.st_size)
    # fingerprint.pb is TensorFlow's for the files as they are now.
    with open(os.path.join(converted, 'saved_model.pb'), 'rb') as f:
      saved_model_pb = f.read()
    with open(os.path.join(converted, 'fingerprint.pb'), 'rb') as f:
      self.assertEqual(f.read(),
                       _tf_private.fingerprint_def(converted, saved_model_pb))

  def test_loads_and_serves(self):
    _, converted, _ = self._save_both()
    loaded = tf.saved_model.load(converted)
    ids = np.array([0, 6666, 6667, _ROWS - 1], np.int64)
    x = np.array([[1, 2], [3, 4], [5, 6], [7, 8]], np.float32)
    out = loaded.signatures['serving_default'](ids=ids, x=x)
    table = np.concatenate([self.values[f'part_{i}'] for i in range(3)])
    self.assertAllEqual(out['emb'], table[ids])
    self.assertAllClose(out['y'], x @ self.values['w'] + 7)
    self.assertAllEqual(out['word'], self.values['vocab'][ids % 3])
    self.assertEqual(loaded.calls.numpy(), 6)
    self.assertAllEqual(loaded.parts[2], self.values['part_2'])

  def test_loads_in_the_newest_tensorflow(self):
    python = os.path.join(_VENV, 'bin', 'python')
    if not os.path.exists(python):
      self.skipTest(f'no newest-TF venv at {_VENV} (made by .ci/run with '
                    'tools/check_tfsmlayer.py --create_venv)')
    _, converted, _ = self._save_both()
    code = (
        'import json, sys, tensorflow as tf\n'
        'm = tf.saved_model.load(sys.argv[1])\n'
        'o = m.signatures["serving_default"](ids=tf.constant([1, 19999], '
        'tf.int64), x=tf.constant([[1., 2.], [3., 4.]]))\n'
        'print(json.dumps({"tf": tf.__version__, "emb": o["emb"].numpy()'
        '.tolist(), "y": o["y"].numpy().tolist(), "word": [w.hex() for w '
        'in o["word"].numpy()]}))\n')
    run = subprocess.run([python, '-c', code, converted], capture_output=True,
                         text=True, timeout=600, check=False,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))
    self.assertEqual(run.returncode, 0, run.stderr[-2000:])
    out = json.loads(run.stdout.strip().splitlines()[-1])
    self.assertNotEqual(out['tf'], tf.__version__)
    table = np.concatenate([self.values[f'part_{i}'] for i in range(3)])
    self.assertAllEqual(np.array(out['emb'], np.float32), table[[1, _ROWS - 1]])
    x = np.array([[1, 2], [3, 4]], np.float32)
    self.assertAllClose(out['y'], x @ self.values['w'] + 7, rtol=1e-6)
    self.assertEqual(out['word'], [self.values['vocab'][1].hex(),
                                   self.values['vocab'][1].hex()])


class WrappedTf1GraphTest(tf.test.TestCase):
  """The converter's case: a TF1 graph imported with wrap_function.

  Its variables are lifted to eager variables that hold no value until
  restored; a function is pruned out of it. Saved without values, the model
  serves what the TF1 graph serves from the checkpoint.
  """

  def test_serves_the_tf1_graphs_outputs(self):
    directory = self.create_tempdir().full_path
    graph = tf.Graph()
    with graph.as_default():
      ids = tf.compat.v1.placeholder(tf.int64, [None], name='ids')
      emb = tf.compat.v1.get_variable(
          'emb', [10, 2], use_resource=True,
          partitioner=tf.compat.v1.fixed_size_partitioner(3))
      w = tf.compat.v1.get_variable('w', [2, 1], use_resource=True)
      tf.identity(tf.matmul(tf.nn.embedding_lookup(emb, ids), w), name='y')
      saver = tf.compat.v1.train.Saver(sharded=True)
      with tf.compat.v1.Session() as session:
        session.run(tf.compat.v1.global_variables_initializer())
        prefix = saver.save(session, os.path.join(directory, 'model.ckpt'))
        expected = session.run('y:0', {ids: [0, 4, 9]})
      meta_graph = saver.export_meta_graph()
      sources = {}
      for variable in tf.compat.v1.global_variables():
        info = variable._save_slice_info  # pylint: disable=protected-access
        sources[variable.op.name] = ((info.full_name, info.spec) if info
                                     else (variable.op.name, ''))

    def import_graph():
      tf.compat.v1.train.import_meta_graph(meta_graph)

    wrapped = tf.compat.v1.wrap_function(import_graph, [])
    self.assertLen(wrapped.variables, 4)
    self.assertFalse(any(bool(v.is_initialized()) for v in wrapped.variables))
    model = tf.Module()
    model.all_variables = list(wrapped.variables)
    model.serve = wrapped.prune(
        feeds=[wrapped.graph.get_tensor_by_name('ids:0')],
        fetches=[wrapped.graph.get_tensor_by_name('y:0')])
    export_dir = os.path.join(directory, 'tf2')
    without_values.save_without_values(
        model, export_dir, prefix,
        [(v, sources[v.name.split(':')[0]]) for v in wrapped.variables])
    loaded = tf.saved_model.load(export_dir)
    (served,) = loaded.serve(tf.constant([0, 4, 9], tf.int64))
    self.assertAllEqual(served, expected)


class BadInputTest(_SourceMixin, tf.test.TestCase):

  def _assert_refused(self, model, pairs, pattern, existing=False):
    parent = self.create_tempdir().full_path
    export_dir = os.path.join(parent, 'out')
    if existing:
      os.makedirs(export_dir)
    with self.assertRaisesRegex(without_values.WithoutValuesError, pattern):
      without_values.save_without_values(model, export_dir, self.source,
                                         pairs)
    self.assertEqual(os.listdir(parent), ['out'] if existing else [])
    if existing:
      self.assertEqual(os.listdir(export_dir), [])

  def test_a_variable_with_a_value(self):
    model = self._model(False)
    pairs = self._pairs(model)
    pairs[0][0].assign(tf.zeros(pairs[0][0].shape))
    self._assert_refused(model, pairs, r"variables \['emb/part_0:0'\] have "
                         'values')

  def test_a_variable_without_source(self):
    model = self._model(False)
    self._assert_refused(model, self._pairs(model)[1:], r'no value for '
                         r"\['parts/0/.ATTRIBUTES/VARIABLE_VALUE \(emb/part_0\)"
                         r"'\]", existing=True)

  def test_a_source_of_another_shape_or_dtype(self):
    model = self._model(False)
    pairs = self._pairs(model)
    pairs[0] = (pairs[0][0], pairs[2][1])  # part_0 (6667 rows) <- part_2
    self._assert_refused(model, pairs, r"'emb/part_0:0' is float32 \[6667, "
                         r"2\], but its source .* is float32 \[6666, 2\]")
    model = self._model(False)
    pairs = self._pairs(model)
    pairs[3] = (pairs[3][0], ('vocab', ''))  # w <- a string
    self._assert_refused(model, pairs, r"'w:0' is float32 \[2, 3\], but its "
                         r'source .* is string \[3\]')

  def test_a_source_not_stored_as_one_tensor(self):
    model = self._model(False)
    pairs = self._pairs(model)
    pairs[0] = (pairs[0][0], ('emb', ''))
    self._assert_refused(model, pairs, "the whole tensor of 'emb' is not "
                         'stored as such')

  def test_a_variable_the_object_does_not_save(self):
    model = self._model(False)
    stray = _tf_private.uninitialized_variable([1], tf.float32, 'stray')
    self._assert_refused(model, self._pairs(model) + [(stray, ('w', ''))],
                         r"variables \['stray:0'\] are not saved by the "
                         'object')

  def test_a_non_empty_export_dir(self):
    export_dir = self.create_tempdir().full_path
    with open(os.path.join(export_dir, 'mine'), 'w') as f:
      f.write('kept')
    model = self._model(False)
    with self.assertRaisesRegex(without_values.WithoutValuesError,
                                'is not empty'):
      without_values.save_without_values(model, export_dir, self.source,
                                         self._pairs(model))
    self.assertEqual(os.listdir(export_dir), ['mine'])


if __name__ == '__main__':
  absltest.main()
