"""SavedModels crafted to hang, exhaust or fool `verify`, for the budget tests.

The second round after `crafted` (which acts outside the export): each
builder writes a small, real SavedModel (from `crafted`'s builder) with one
feature an attacker would use against the verifier itself: a graph carried
as data, an ambiguous tag set, a main op that ends the process, a scan that
explodes, a size claim that does not match what is stored, a run that never
ends or allocates without bound.
"""

import os
from typing import Callable

import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2

from multimode_export.variables import _bundle_index as bundle_index
from testing import crafted


_build = crafted._build  # pylint: disable=protected-access


def _edit_saved_model(export_dir: str,
                      edit: Callable[[saved_model_pb2.SavedModel], None]
                     ) -> str:
  path = os.path.join(export_dir, tf.saved_model.SAVED_MODEL_FILENAME_PB)
  saved_model = saved_model_pb2.SavedModel()
  with open(path, 'rb') as f:
    saved_model.ParseFromString(f.read())
  edit(saved_model)
  with open(path, 'wb') as f:
    f.write(saved_model.SerializeToString())
  return export_dir


def _output(meta_graph_def, key: str, node: str, dtype) -> None:
  """Adds `node:0` as output `key` of `serving_default`."""
  outputs = meta_graph_def.signature_def['serving_default'].outputs
  outputs[key].name = f'{node}:0'
  outputs[key].dtype = dtype.as_datatype_enum


def dataset_from_graph(export_dir: str, secret: str, canary: str) -> str:
  """`serving_default` runs a dataset graph held in a string constant.

  The inner graph (a serialized GraphDef) reads `secret` and writes it to
  `canary`; the outer graph holds it as data and runs it through
  `DatasetFromGraph` and `DatasetToSingleElement`.
  """
  def write(path):
    written = tf.io.write_file(canary, tf.io.read_file(path))
    with tf.control_dependencies([written]):
      return tf.identity(path)

  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    dataset = tf.data.Dataset.from_tensors(secret).map(write)
    serialized = session.run(dataset._as_serialized_graph())  # pylint: disable=protected-access

  def outputs(x, v):
    carried = tf.constant(serialized, name='carried_graph')
    variant = tf.raw_ops.DatasetFromGraph(graph_def=carried,
                                          name='dataset_from_graph')
    element = tf.raw_ops.DatasetToSingleElement(
        dataset=variant, output_types=[tf.string], output_shapes=[[]])
    with tf.control_dependencies(element):
      return {'y': x * v[0]}

  return _build(export_dir, outputs)


def serve_twice(export_dir: str, canary: str) -> str:
  """A hostile MetaGraphDef tagged `serve, serve`, then a clean `serve`.

  TensorFlow's loaders match tag sets: loading `serve` takes the first,
  whose main op and signature write `canary`.
  """
  hostile_dir = export_dir + '_hostile'
  crafted.write_file_everywhere(hostile_dir, canary)
  _build(export_dir, lambda x, v: {'y': x * v[0]})
  hostile = saved_model_pb2.SavedModel()
  with open(os.path.join(hostile_dir, 'saved_model.pb'), 'rb') as f:
    hostile.ParseFromString(f.read())
  first = hostile.meta_graphs[0]
  first.meta_info_def.tags.append(tf.saved_model.SERVING)

  def put_first(saved_model):
    saved_model.meta_graphs.insert(0, first)

  return _edit_saved_model(export_dir, put_first)


def abort_main_op(export_dir: str) -> str:
  """The main op is `Abort(exit_without_error=True)`: loading ends with 0."""
  return _build(
      export_dir, lambda x, v: {'y': x * v[0]},
      main_op_fn=lambda: tf.raw_ops.Abort(exit_without_error=True,
                                          name='abort'))


def select_chain(export_dir: str, secret: str, levels: int = 40) -> str:
  """`serving_default` reads `secret` through `levels` nested Selects.

  Each level uses the previous one twice: 2**levels paths, `levels` nodes.
  """

  def outputs(x, v):
    path = tf.constant(secret, name='path')
    for level in range(levels):
      path = tf.compat.v1.where(x[0] > 0, path, path, name=f'select_{level}')
    return {'y': x * v[0], 'text': tf.io.read_file(path, name='read_chain')}

  return _build(export_dir, outputs)


def string_constant_claiming(export_dir: str, elements: int = 2**34) -> str:
  """`serving_default` outputs a one-value string constant of [elements]."""
  _build(export_dir, lambda x, v: {'y': x * v[0]})

  def add(saved_model):
    meta = saved_model.meta_graphs[0]
    node = meta.graph_def.node.add(name='claiming', op='Const')
    node.attr['dtype'].type = types_pb2.DT_STRING
    tensor = node.attr['value'].tensor
    tensor.dtype = types_pb2.DT_STRING
    tensor.tensor_shape.dim.add(size=elements)
    tensor.string_val.append(b'x')
    _output(meta, 'claiming', 'claiming', tf.string)

  return _edit_saved_model(export_dir, add)


def variant_index_entry(export_dir: str, elements: int = 2**25) -> str:
  """The index gains a variant entry `w` of [elements], storing 0 bytes."""
  _build(export_dir, lambda x, v: {'y': x * v[0]})
  index = os.path.join(export_dir, 'variables', 'variables.index')
  header, entries = bundle_index.read(index)
  forged = type(entries[b'v'])()
  forged.dtype = types_pb2.DT_VARIANT
  forged.shape.dim.add(size=elements)
  entries[b'w'] = forged
  crafted.write_index(index, header, entries)
  return export_dir


def endless_while(export_dir: str) -> str:
  """`serving_default` runs a While loop whose condition stays true."""
  return _build(export_dir, lambda x, v: {
      'y': x * v[0],
      'loop': tf.while_loop(lambda i: i < 10.0, lambda i: i * 0.0,
                            [tf.constant(0.0)], name='endless')[0]})


def dequeue_nothing(export_dir: str) -> str:
  """`serving_default` dequeues from a FIFOQueue nothing is enqueued to."""

  def outputs(x, v):
    queue = tf.queue.FIFOQueue(1, [tf.float32], shapes=[[]], name='queue')
    return {'y': x * v[0], 'dequeued': queue.dequeue(name='dequeue')}

  return _build(export_dir, outputs)


def fill_huge(export_dir: str, elements: int = 2**34) -> str:
  """`serving_default` outputs `tf.fill([elements], 1.0)`."""
  return _build(export_dir, lambda x, v: {
      'y': x * v[0], 'filled': tf.fill([elements], 1.0, name='fill')})


def many_no_ops(export_dir: str, count: int) -> str:
  """A plain export whose graph gains `count` NoOp nodes (a large proto)."""
  _build(export_dir, lambda x, v: {'y': x * v[0]})

  def add(saved_model):
    nodes = saved_model.meta_graphs[0].graph_def.node
    for i in range(count):
      nodes.add(name=f'padding/no_op_{i:08d}', op='NoOp')

  return _edit_saved_model(export_dir, add)
