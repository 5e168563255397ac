"""Every private TensorFlow / estimator name `_tf_private.py` uses still exists.

The names are read from `_tf_private.py`'s source (imports from
`tensorflow.python` / `tensorflow_estimator.python`, attributes taken from
those modules, underscore attributes of `estimator`), so a name added there
is checked without editing this test. A missing name fails with its full
dotted path. The module is parsed, not imported, first: a vanished module
is reported by name instead of as an ImportError of the whole test.
"""

import ast
import importlib
import os
from typing import Dict, List, Set, Tuple

import tensorflow as tf
from absl.testing import absltest

import multimode_export
from multimode_export import _tf_private
from testing import datasets
from testing import models
from testing import receiver_fns
# bazel-data: //multimode_export:sources
# The package under test: the checkout's, or the installed wheel's.
PACKAGE_DIR = os.path.dirname(multimode_export.__file__)
PRIVATE_PREFIXES = ('tensorflow.python', 'tensorflow_estimator.python')


def _is_private_module(name: str) -> bool:
  return any(name == p or name.startswith(p + '.') for p in PRIVATE_PREFIXES)


def _package_modules() -> List[str]:
  """Every module of the package, subpackages included, relative paths."""
  found = []
  for dirpath, _, filenames in os.walk(PACKAGE_DIR):
    found.extend(os.path.relpath(os.path.join(dirpath, f), PACKAGE_DIR)
                 for f in filenames if f.endswith('.py'))
  return sorted(found)


def _read(name: str) -> str:
  with open(os.path.join(PACKAGE_DIR, name), encoding='utf-8') as f:
    return f.read()


def private_names(source: str) -> Tuple[List[str], Set[str]]:
  """Dotted module-level names and estimator attributes `source` uses.

  Returns:
    (['module.attr', ...] for imports and attributes of imported private
     modules, {'_attr', ...} read from a variable named `estimator`).
  """
  tree = ast.parse(source)
  aliases: Dict[str, str] = {}  # local name -> dotted target
  used: List[str] = []
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module and (
        _is_private_module(node.module)):
      for alias in node.names:
        target = f'{node.module}.{alias.name}'
        aliases[alias.asname or alias.name] = target
        used.append(target)
    elif isinstance(node, ast.Import):
      for alias in node.names:
        if _is_private_module(alias.name):
          aliases[alias.asname or alias.name] = alias.name
          used.append(alias.name)
  estimator_attributes = set()
  for node in ast.walk(tree):
    if not isinstance(node, ast.Attribute):
      continue
    dotted = _dotted(node)
    if not dotted:
      continue
    head, _, rest = dotted.partition('.')
    if head in aliases:
      used.append(f'{aliases[head]}.{rest}')
    elif head == 'estimator' and rest.startswith('_'):
      estimator_attributes.add(rest.split('.')[0])
  return sorted(set(used)), estimator_attributes


def _dotted(node) -> str:
  """`a.B(...).c` -> 'a.B.c' (a call's result is checked on its callee)."""
  if isinstance(node, ast.Name):
    return node.id
  if isinstance(node, ast.Attribute):
    inner = _dotted(node.value)
    return f'{inner}.{node.attr}' if inner else ''
  if isinstance(node, ast.Call):
    return _dotted(node.func)
  return ''


def resolve(dotted: str):
  """Imports the longest module prefix of `dotted`, then walks attributes."""
  parts = dotted.split('.')
  for i in range(len(parts), 0, -1):
    try:
      value = importlib.import_module('.'.join(parts[:i]))
    except ImportError:
      continue
    for attr in parts[i:]:
      value = getattr(value, attr)
    return value
  raise ImportError(f'no module in {dotted!r} can be imported')


def missing_names(dotted_names: List[str]) -> List[str]:
  missing = []
  for dotted in dotted_names:
    try:
      resolve(dotted)
    except (ImportError, AttributeError) as e:
      missing.append(f'{dotted} ({type(e).__name__}: {e})')
  return missing


class PrivateNamesTest(absltest.TestCase):

  def test_every_private_name_resolves(self):
    names, _ = private_names(_read('_tf_private.py'))
    self.assertNotEmpty(names)
    missing = missing_names(names)
    if missing:
      self.fail(
          f'_tf_private.py uses names this TensorFlow '
          f'({tf.__version__}) does not have:\n  ' + '\n  '.join(missing))

  def test_a_missing_name_is_reported_by_its_dotted_path(self):
    # The checker itself: it must name what is gone.
    source = ('from tensorflow_estimator.python.estimator.export import '
              'export_lib\n'
              'from tensorflow.python.no_such_module import thing\n'
              'x = export_lib.NoSuchHelper\n'
              'y = export_lib.build_all_signature_defs\n')
    names, _ = private_names(source)
    missing = missing_names(names)
    self.assertLen(missing, 2, missing)
    self.assertStartsWith(
        missing[0],
        'tensorflow.python.no_such_module.thing')
    self.assertStartsWith(
        missing[1],
        'tensorflow_estimator.python.estimator.export.export_lib.NoSuchHelper')

  def test_estimator_attributes_exist_and_are_declared(self):
    from multimode_export import _tf_private  # pylint: disable=g-import-not-at-top
    _, attributes = private_names(_read('_tf_private.py'))
    self.assertEqual(attributes, set(_tf_private.ESTIMATOR_PRIVATE_ATTRIBUTES))
    model_dir = self.create_tempdir().full_path
    for estimator in (
        tf.estimator.Estimator(models.linear_model_fn, model_dir, params={}),
        tf.compat.v1.estimator.Estimator(models.linear_model_fn, model_dir,
                                         params={}),
        tf.estimator.LinearRegressor([tf.feature_column.numeric_column('x')],
                                     model_dir)):
      missing = [a for a in sorted(attributes) if not hasattr(estimator, a)]
      self.assertEmpty(missing, f'{type(estimator).__name__} of TF '
                       f'{tf.__version__} lacks {missing}')

  def test_only_tf_private_touches_private_names(self):
    from multimode_export import _tf_private  # pylint: disable=g-import-not-at-top
    offenders = []
    for name in _package_modules():
      if name == '_tf_private.py':
        continue
      source = _read(name)
      names, attributes = private_names(source)
      # Estimator internals reached through any other variable name.
      attributes |= {
          node.attr for node in ast.walk(ast.parse(source))
          if isinstance(node, ast.Attribute) and
          node.attr in _tf_private.ESTIMATOR_PRIVATE_ATTRIBUTES and
          not (isinstance(node.value, ast.Name) and node.value.id == 'self')}
      if names or attributes:
        offenders.append(f'{name}: {names + sorted(attributes)}')
    self.assertEmpty(offenders)


class HelpersWorkTest(tf.test.TestCase):
  """The helpers still do their job on this TF, not only exist."""

  def test_saved_model_format_names_agree_with_tensorflow(self):
    # `saved_model/_format.py` spells the loaders' collection names out; TF
    # keeps them in a private module (checked on 2.13-2.15).
    from tensorflow.python.saved_model import constants  # pylint: disable=g-import-not-at-top
    from multimode_export.saved_model import _format  # pylint: disable=g-import-not-at-top
    self.assertEqual(_format.TRAIN_OP_COLLECTION, constants.TRAIN_OP_KEY)
    self.assertEqual(_format.MAIN_OP_COLLECTION, constants.MAIN_OP_KEY)
    self.assertEqual(_format.LEGACY_INIT_OP_COLLECTION,
                     constants.LEGACY_INIT_OP_KEY)
    self.assertEqual(_format.ASSETS_COLLECTION, constants.ASSETS_KEY)

  def test_estimator_helpers(self):
    from multimode_export import _tf_private  # pylint: disable=g-import-not-at-top
    model_dir = self.create_tempdir().full_path
    config = tf.estimator.RunConfig(
        tf_random_seed=7, session_config=tf.compat.v1.ConfigProto(
            inter_op_parallelism_threads=1))
    estimator = tf.estimator.Estimator(
        models.linear_model_fn, model_dir, params={}, config=config,
        warm_start_from=model_dir)
    self.assertEqual(_tf_private.random_seed(estimator), 7)
    self.assertEqual(
        _tf_private.session_config(estimator).inter_op_parallelism_threads, 1)
    self.assertEqual(_tf_private.warm_start_checkpoint(estimator), model_dir)
    self.assertIsNone(_tf_private.warm_start_checkpoint(
        tf.estimator.Estimator(models.linear_model_fn, params={})))
    with tf.Graph().as_default() as graph:
      step = _tf_private.create_global_step(estimator, graph)
      self.assertIs(step, tf.compat.v1.train.get_global_step())
      spec = _tf_private.call_model_fn(
          estimator, {'x': tf.zeros([2, datasets.FEATURE_DIM])}, None,
          tf.estimator.ModeKeys.PREDICT)
      self.assertIsInstance(spec, tf.estimator.EstimatorSpec)
      outputs = _tf_private.export_outputs_for_mode(
          mode=spec.mode, serving_export_outputs=spec.export_outputs,
          predictions=spec.predictions)
      receiver = receiver_fns.serving_receiver_fn()()
      self.assertIsInstance(receiver, _tf_private.ServingInputReceiver)
      signatures = _tf_private.build_all_signature_defs(
          receiver.receiver_tensors, outputs, serving_only=True)
      self.assertIn('serving_default', signatures)
      supervised = receiver_fns.supervised_receiver_fn()()
      self.assertIsInstance(supervised, _tf_private.SupervisedInputReceiver)

  def test_object_checkpoint_helpers(self):
    from multimode_export import _tf_private  # pylint: disable=g-import-not-at-top
    with tf.Graph().as_default():
      w = tf.compat.v1.get_variable('w', [2])
      checkpoint = tf.train.Checkpoint(w=w)
      self.assertTrue(_tf_private.is_object_checkpoint(checkpoint))
      self.assertFalse(_tf_private.is_object_checkpoint(
          tf.compat.v1.train.Saver()))
      saver = _tf_private.saver_for_object_checkpoint(checkpoint)
      self.assertIsInstance(saver, tf.compat.v1.train.Saver)
    with tf.Graph().as_default():
      self.assertFalse(tf.executing_eagerly())
      with _tf_private.eager_mode():
        self.assertTrue(tf.executing_eagerly())

  def test_saving_without_values_helpers(self):
    # What saved_model/_without_values.py relies on (2.13.1-2.21.0): an
    # uninitialized variable has no value, tf.saved_model.save records it in
    # the checkpoint's object graph but writes no value for it, and the
    # saved nodes come back in node-id order.
    from multimode_export import _tf_private  # pylint: disable=g-import-not-at-top
    from tensorflow.core.protobuf import trackable_object_graph_pb2  # pylint: disable=g-import-not-at-top
    module = tf.Module()
    module.empty = _tf_private.uninitialized_variable([3, 2], tf.float32,
                                                      'empty')
    module.full = tf.Variable([1.0], name='full')
    self.assertFalse(module.empty.is_initialized())
    self.assertEqual(module.empty.shape, [3, 2])
    export_dir = self.create_tempdir().full_path
    nodes = _tf_private.save_and_return_nodes(module, export_dir)
    self.assertIs(nodes[0], module)
    reader = tf.train.load_checkpoint(
        os.path.join(export_dir, 'variables', 'variables'))
    self.assertCountEqual(reader.get_variable_to_shape_map(), [
        '_CHECKPOINTABLE_OBJECT_GRAPH', 'full/.ATTRIBUTES/VARIABLE_VALUE'])
    graph = trackable_object_graph_pb2.TrackableObjectGraph.FromString(
        reader.get_tensor('_CHECKPOINTABLE_OBJECT_GRAPH'))
    keys = {id(nodes[i]): [a.checkpoint_key for a in node.attributes]
            for i, node in enumerate(graph.nodes)}
    self.assertEqual(keys[id(module.empty)],
                     ['empty/.ATTRIBUTES/VARIABLE_VALUE'])
    self.assertEqual(keys[id(module.full)],
                     ['full/.ATTRIBUTES/VARIABLE_VALUE'])



class ConversionHelpersTest(tf.test.TestCase):
  """The private names the TF2 conversion (multimode_export/tf2/) uses."""

  def _wrapped(self):
    def body():
      a = tf.compat.v1.get_variable('a', initializer=2.0, use_resource=True)
      b = tf.compat.v1.get_variable('b', initializer=3.0, use_resource=True)
      x = tf.compat.v1.placeholder(tf.float32, [], name='x')
      tf.identity(a * x, name='ax')
      tf.identity(b * x, name='bx')
      tf.identity(a + b, name='ab')
    wrapped = tf.compat.v1.wrap_function(body, [])
    for variable in wrapped.graph.variables:
      variable.assign(2.0 if variable.name.startswith('a') else 3.0)
    return wrapped

  def test_pruned_function_captures_only_what_it_reads(self):
    wrapped = self._wrapped()
    graph = wrapped.graph
    x = graph.get_tensor_by_name('x:0')
    # Control: the public prune hands every function both variables.
    public = wrapped.prune(feeds=[x], fetches=graph.get_tensor_by_name('ax:0'))
    self.assertLen(public.captured_inputs, 2)
    ax = _tf_private.prune_with_own_captures(
        wrapped, [('x', x)], {'y': graph.get_tensor_by_name('ax:0')}, [], 'ax')
    self.assertLen(ax.captured_inputs, 1)
    self.assertEqual(float(ax(x=tf.constant(5.0))['y']), 10.0)
    ab = _tf_private.prune_with_own_captures(
        wrapped, [], {'s': graph.get_tensor_by_name('ab:0')}, [], 'ab')
    self.assertLen(ab.captured_inputs, 2)
    self.assertEqual(float(ab()['s']), 5.0)

  def test_pruned_function_saves_and_loads_with_keywords(self):
    wrapped = self._wrapped()
    graph = wrapped.graph
    root = _tf_private.trackable_object()
    root.variables = list(graph.variables)
    root.bx = _tf_private.prune_with_own_captures(
        wrapped, [('x', graph.get_tensor_by_name('x:0'))],
        {'y': graph.get_tensor_by_name('bx:0')}, [], 'bx')
    path = self.create_tempdir().full_path
    tf.saved_model.save(root, path)
    loaded = tf.saved_model.load(path)
    self.assertLen(loaded.variables, 2)
    self.assertEqual(float(loaded.bx(x=tf.constant(2.0))['y']), 6.0)


if __name__ == '__main__':
  absltest.main()
