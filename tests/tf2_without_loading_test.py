"""`convert_to_tf2` without loading the variables, against loading them.

The default writer (`_save.save_without_loading`) never reads a variable's
value: the TF2 checkpoint's keys point at the source checkpoint's tensors,
its data files linked. The reference writer (`_save.load_and_save`) restores
every value into memory and lets `tf.saved_model.save` write them. For
exports of a DNNClassifier with a vocabulary file, a custom model with a
partitioned variable (per-mode layout), an EMA model whose serve graph reads
the shadows, and a serve-only export, both outputs must have: the same
checkpoint keys with byte-identical tensors (the checkpoint's object graph
included), equal SavedModel object graphs and signatures (method names
included), a fingerprint that is TensorFlow's for the files; and, with the
source export and the vocabulary moved away, the same results in a fresh
process (`tf2_consumer.py`: serving, eval, 20 `train_step` losses, serving
after them, the TF1 loader, a re-save). On `ram://` (a custom model) both
writers give the same tensors and serving. A checkpoint that does not match
the graph is refused with `ConversionError`, one whose data shard is missing
is a `PublishError`; nothing is left behind.
"""

# bazel-data: :tf2_consumer //docs:errors.md

import os
import shutil
import sys

import numpy as np
import tensorflow as tf
from absl.testing import absltest
from tensorflow.core.protobuf import saved_model_pb2

import multimode_export
from multimode_export import _tf_private
from multimode_export.tf2 import _convert
from multimode_export.tf2 import _save
from testing import conversion
from testing import conversion_models
from testing import models
from testing import receiver_fns
from tools import doc_generated

_BUILDERS = (
    conversion_models.dnn_classifier_vocabulary,
    conversion_models.partitioned_per_mode,
    conversion_models.ema_shadows,
    conversion_models.serve_only,
)
_WRITERS = {'without_loading': None, 'load_and_save': _save.load_and_save}
_OBJECT_GRAPH = '_CHECKPOINTABLE_OBJECT_GRAPH'


def _convert_with(writer, export_dir: str, output_dir: str) -> str:
  if writer is None:  # the default
    return multimode_export.convert_to_tf2(export_dir, output_dir)
  return _convert.convert_with(export_dir, output_dir, writer)


def _tensors(path: str):
  """Checkpoint key -> the tensor's bytes (dtype and shape too)."""
  reader = tf.train.load_checkpoint(os.path.join(path, 'variables',
                                                 'variables'))
  tensors = {}
  for key in reader.get_variable_to_shape_map():
    value = reader.get_tensor(key)
    if isinstance(value, bytes):  # a string scalar: the object graph
      tensors[key] = value
    elif value.dtype == object:
      tensors[key] = (value.shape, value.tolist())
    else:
      tensors[key] = (value.dtype.str, value.shape, value.tobytes())
  return tensors


def _saved_model(path: str) -> saved_model_pb2.SavedModel:
  with open(os.path.join(path, 'saved_model.pb'), 'rb') as f:
    return saved_model_pb2.SavedModel.FromString(f.read())


def _object_graph(path: str):
  """The SavedModel's object graph without function names (they carry
  TensorFlow's process-wide counter, different in every conversion)."""
  graph = _saved_model(path).meta_graphs[0].object_graph_def
  graph.ClearField('concrete_functions')
  for node in graph.nodes:
    node.ClearField('function')
    node.ClearField('bare_concrete_function')
  return graph


class WithoutLoadingTest(models.ClassRootMixin, tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.cases, cls.converted = {}, {}
    for builder in _BUILDERS:
      model_root = os.path.join(cls.root, builder.__name__)
      os.makedirs(model_root)
      case = builder(model_root)
      cls.cases[case.name] = case
      cls.converted[case.name] = {
          name: _convert_with(writer, case.export_dir,
                              os.path.join(cls.root, name, case.name))
          for name, writer in _WRITERS.items()}
      for path in [case.export_dir] + case.moved:
        shutil.move(path, path + '.moved')
    cls.results = None

  def _consume(self) -> dict:
    """Both outputs of every case used in one fresh process, the sources and
    vocabularies moved away first."""
    if self.results is None:
      scratch = self.create_tempdir().full_path
      specs = []
      for name, case in self.cases.items():
        for writer, path in self.converted[name].items():
          spec = conversion.consumer_spec(
              case, path, os.path.join(scratch, f'{name}-{writer}'))
          spec['name'] = f'{name}/{writer}'
          specs.append(spec)
      type(self).results = conversion.run_consumer(sys.executable, specs,
                                                   scratch)
    return self.results['models']

  def test_same_keys_and_byte_identical_tensors(self):
    for name, paths in self.converted.items():
      with self.subTest(model=name):
        got = _tensors(paths['without_loading'])
        want = _tensors(paths['load_and_save'])
        self.assertEqual(sorted(got), sorted(want))
        self.assertIn(_OBJECT_GRAPH, got)
        for key, value in want.items():
          self.assertEqual(got[key], value, f'{name} {key}')

  def test_equal_object_graphs_and_signatures(self):
    for name, paths in self.converted.items():
      with self.subTest(model=name):
        self.assertProtoEquals(_object_graph(paths['load_and_save']),
                               _object_graph(paths['without_loading']))
        signatures = [_saved_model(p).meta_graphs[0].signature_def
                      for p in (paths['without_loading'],
                                paths['load_and_save'])]
        self.assertEqual(sorted(signatures[0]), sorted(signatures[1]))
        for key, signature in signatures[1].items():
          self.assertProtoEquals(signature, signatures[0][key])

  def test_fingerprint_is_tensorflows_for_the_files(self):
    for name, paths in self.converted.items():
      with self.subTest(model=name):
        path = paths['without_loading']
        with open(os.path.join(path, 'saved_model.pb'), 'rb') as f:
          saved_model_pb = f.read()
        with open(os.path.join(path, 'fingerprint.pb'), 'rb') as f:
          self.assertEqual(f.read(),
                           _tf_private.fingerprint_def(path, saved_model_pb))

  def test_source_data_is_linked_not_rewritten(self):
    case = self.cases['dnn_classifier_vocabulary']
    variables = os.path.join(case.export_dir + '.moved', 'variables')
    converted = os.path.join(self.converted[case.name]['without_loading'],
                             'variables')
    written = [os.path.join(converted, n) for n in os.listdir(converted)
               if '.data-' in n]
    for name in os.listdir(variables):
      if '.data-' in name:
        source = os.path.join(variables, name)
        self.assertTrue([w for w in written if os.path.samefile(source, w)],
                        name)

  def test_both_give_the_same_results_in_a_fresh_process(self):
    results = self._consume()
    for name, case in self.cases.items():
      with self.subTest(model=name):
        got = results[f'{name}/without_loading']
        want = results[f'{name}/load_and_save']
        self.assertEqual(got, want)
        self.assertEqual(sorted(got['serve']), sorted(case.serve))
        if case.train:
          self.assertLen(got['losses'], conversion.TRAIN_STEPS)
          # Training moved the variables: serving changed.
          self.assertNotEqual(got['serve_after_training'], got['serve'])


def _tensors_at(path: str):
  """Checkpoint key -> bytes, on any filesystem (numeric tensors only)."""
  reader = tf.compat.v1.train.NewCheckpointReader(path + '/variables/variables')
  tensors = {}
  for key in reader.get_variable_to_shape_map():
    value = reader.get_tensor(key)
    tensors[key] = value if isinstance(value, bytes) else value.tobytes()
  return tensors


def _rmtree_if_present(path: str) -> None:
  if tf.io.gfile.exists(path):
    tf.io.gfile.rmtree(path)


class SimpleModelTest(tf.test.TestCase):
  """A custom model's export: to ram://, and with a mismatched checkpoint."""

  def _assert_documented(self, error: Exception) -> None:
    """docs/errors.md's row naming this test shows the exception and message."""
    with open(os.path.join(doc_generated.ROOT, 'docs', 'errors.md'),
              encoding='utf-8') as f:
      name = f'`tf2_without_loading_test.{self._testMethodName}`'
      [row] = [line for line in f if line.startswith('|') and name in line]
    cells = row.split(' | ')
    self.assertIn(f'`{type(error).__name__}`', cells[1])
    self.assertTrue(doc_generated.shows_message(cells[2], str(error)),
                    f'docs/errors.md shows {cells[2]}; the message is {error}')

  def _export(self) -> str:
    root = self.create_tempdir().full_path
    return multimode_export.export_all_saved_models(
        models.train_custom(os.path.join(root, 'model'), steps=2),
        os.path.join(root, 'export'), receiver_fns.receiver_map())

  def test_ram_filesystem(self):
    export = self._export()
    base = f'ram://tf2_without_loading_test/{self.id()}'
    self.addCleanup(_rmtree_if_present, base)
    paths = {name: _convert_with(writer, export, f'{base}/{name}')
             for name, writer in _WRITERS.items()}
    tensors = {name: _tensors_at(path) for name, path in paths.items()}
    self.assertEqual(tensors['without_loading'], tensors['load_and_save'])
    x = tf.constant(np.arange(6, dtype=np.float32).reshape(2, 3))
    served = {name: tf.saved_model.load(path).signatures['serving_default'](
        x=x)['y'].numpy() for name, path in paths.items()}
    self.assertAllEqual(served['without_loading'], served['load_and_save'])
    self.assertCountEqual(tf.io.gfile.listdir(base), list(_WRITERS))

  def test_a_missing_data_shard_is_a_publish_error(self):
    export = self._export()
    variables = os.path.join(export, 'variables')
    for name in os.listdir(variables):
      if '.data-' in name:
        os.remove(os.path.join(variables, name))
    parent = self.create_tempdir().full_path
    with self.assertRaisesRegex(multimode_export.PublishError,
                                'NotFoundError: .*variables.data-') as raised:
      multimode_export.convert_to_tf2(export, os.path.join(parent, 'tf2'))
    self.assertEqual(raised.exception.export_dir_base, parent)
    self.assertEqual(os.listdir(parent), [])
    self._assert_documented(raised.exception)

  def test_another_shape_is_refused_and_nothing_is_left(self):
    export = self._export()
    prefix = os.path.join(export, 'variables', 'variables')
    reader = tf.train.load_checkpoint(prefix)
    values = {k: reader.get_tensor(k)
              for k in reader.get_variable_to_shape_map()}
    values['w'] = np.zeros([values['w'].shape[0] + 1, 1], np.float32)
    # The export's files are links to the model's checkpoint: replace them.
    for name in os.listdir(os.path.dirname(prefix)):
      os.remove(os.path.join(os.path.dirname(prefix), name))
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
      variables = [tf.compat.v1.Variable(v, name=k) for k, v in values.items()]
      sess.run(tf.compat.v1.global_variables_initializer())
      tf.compat.v1.train.Saver(variables).save(sess, prefix,
                                               write_meta_graph=False)
    parent = self.create_tempdir().full_path
    output = os.path.join(parent, 'tf2')
    wanted = list(values['w'].shape)
    wanted[0] -= 1
    with self.assertRaisesRegex(
        multimode_export.ConversionError,
        rf"'w:0' is float32 \[{wanted[0]}, 1\], but its source .* is "
        rf"float32 \[{wanted[0] + 1}, 1\]") as raised:
      multimode_export.convert_to_tf2(export, output)
    self.assertIsInstance(raised.exception, ValueError)
    self.assertEqual(os.listdir(parent), [])
    self._assert_documented(raised.exception)


if __name__ == '__main__':
  absltest.main()
