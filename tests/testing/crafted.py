"""SavedModels crafted to act outside their directory, for the safety tests.

Each builder writes a small but real SavedModel (TF1 builder, a variable, a
saver, a `serving_default` signature) with one hostile feature, as someone
handing you an export could. The canary builders write a file when any of
their graph runs: a test asserts the file is never there.
"""

import os
import struct
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.core.protobuf import tensor_bundle_pb2

from multimode_export.variables import _bundle_index as bundle_index

_TABLE_MAGIC = 0xdb4775248b80fb57
_CRC_MASK_DELTA = 0xa282ead8
SERVE = (tf.saved_model.SERVING,)
_ASSETS_COLLECTION = 'saved_model_assets'


def _build(export_dir: str, make_outputs: Callable[[tf.Tensor], dict], *,
           input_dtype=tf.float32, input_shape=(None,), main_op_fn=None,
           assets: Optional[Dict[str, str]] = None,
           graphs: Optional[list] = None) -> str:
  """A SavedModel with one variable and a `serving_default` signature.

  Args:
    export_dir: where to write it (must not exist).
    make_outputs: input tensor -> {output key: tensor}.
    input_dtype: dtype of the input `x`.
    input_shape: its static shape.
    main_op_fn: builds an op the loaders run after restoring, or None.
    assets: {tensor name suffix: source file} added as assets (the builder
      copies each into `assets/`); the tensors are `asset_<suffix>`.
    graphs: if given, the graph is appended to it (a PyFunc's callback lives
      as long as the graph that registered it).

  Returns:
    export_dir.
  """
  graph = tf.Graph()
  if graphs is not None:
    graphs.append(graph)
  with graph.as_default(), tf.compat.v1.Session() as session:
    x = tf.compat.v1.placeholder(input_dtype, list(input_shape), name='x')
    v = tf.compat.v1.get_variable('v', initializer=[1.0, 2.0])
    asset_tensors = {
        key: tf.constant(path, name=f'asset_{key}')
        for key, path in sorted((assets or {}).items())}
    for tensor in asset_tensors.values():
      tf.compat.v1.add_to_collection(tf.compat.v1.GraphKeys.ASSET_FILEPATHS,
                                     tensor)
    outputs = make_outputs(x, v=v, **asset_tensors)
    session.run(tf.compat.v1.global_variables_initializer())
    signature = tf.compat.v1.saved_model.predict_signature_def(
        {'x': x}, outputs)
    builder = tf.compat.v1.saved_model.Builder(export_dir)
    builder.add_meta_graph_and_variables(
        session, list(SERVE),
        signature_def_map={'serving_default': signature},
        assets_collection=tf.compat.v1.get_collection(
            tf.compat.v1.GraphKeys.ASSET_FILEPATHS),
        main_op=main_op_fn() if main_op_fn else None)
    builder.save()
  return export_dir


def write_file_in_signature(export_dir: str, canary: str) -> str:
  """`serving_default` writes `canary` (WriteFile) before returning."""

  def outputs(x, v):
    write = tf.io.write_file(canary, 'written by running the graph',
                             name='write_canary')
    with tf.control_dependencies([write]):
      return {'y': x * v[0]}

  return _build(export_dir, outputs)


def write_file_everywhere(export_dir: str, canary: str) -> str:
  """Writes `canary` from the main op (at load) and from the signature."""

  def main_op():
    return tf.group(tf.io.write_file(canary, 'main op ran',
                                     name='main_op_write'),
                    tf.compat.v1.tables_initializer())

  def outputs(x, v):
    write = tf.io.write_file(canary, 'signature ran', name='signature_write')
    with tf.control_dependencies([write]):
      return {'y': x * v[0]}

  return _build(export_dir, outputs, main_op_fn=main_op)


def read_file_outside(export_dir: str, path: str) -> str:
  """`serving_default` returns the contents of `path` (ReadFile)."""
  return _build(export_dir, lambda x, v: {
      'y': x * v[0], 'stolen': tf.io.read_file(path, name='read_outside')})


def py_func_canary(export_dir: str, canary: str,
                   graphs: Optional[list] = None) -> str:
  """`serving_default` calls a Python function that writes `canary`.

  The function is registered in this process only, while the building graph
  lives (keep it in `graphs`): a verify run in this process would really
  call it.
  """

  def write(value):
    with open(canary, 'w') as f:
      f.write('PyFunc ran')
    return value

  return _build(export_dir, lambda x, v: {
      'y': tf.compat.v1.py_func(write, [x * v[0]], tf.float32,
                                name='python_callback')}, graphs=graphs)


def asset_named(export_dir: str, filename: str, source: str) -> str:
  """An export whose asset file name is rewritten to `filename`.

  The graph reads the asset (ReadFile of the asset tensor), so a loader
  that joined `filename` to `assets/` would read whatever it points at.

  Args:
    export_dir: where to write it.
    filename: the file name to put in the AssetFileDef, e.g. '../x' or an
      absolute path.
    source: an existing file to export as the asset first.
  """
  _build(export_dir, lambda x, v, vocab: {
      'y': x * v[0], 'text': tf.io.read_file(vocab, name='read_asset')},
         assets={'vocab': source})

  def rename(meta_graph_def):
    # The V1 builder lists assets in a collection, TF2 in asset_file_def.
    for asset in meta_graph_def.asset_file_def:
      asset.filename = filename
    if _ASSETS_COLLECTION in meta_graph_def.collection_def:
      for value in meta_graph_def.collection_def[
          _ASSETS_COLLECTION].any_list.value:
        asset = meta_graph_pb2.AssetFileDef()
        value.Unpack(asset)
        asset.filename = filename
        value.Pack(asset)

  return _edit(export_dir, rename)


def signature_runs_the_saver(export_dir: str) -> str:
  """`serving_default` also outputs the saver's save tensor.

  Running the signature would save a checkpoint at the saver's default
  filename (relative to the current directory).
  """
  _build(export_dir, lambda x, v: {'y': x * v[0]})

  def expose(meta_graph_def):
    outputs = meta_graph_def.signature_def['serving_default'].outputs
    outputs['saved'].name = meta_graph_def.saver_def.save_tensor_name
    outputs['saved'].dtype = tf.string.as_datatype_enum

  return _edit(export_dir, expose)


def saver_reads(export_dir: str, path: str) -> str:
  """An export whose saver's RestoreV2 reads the checkpoint `path`."""
  _build(export_dir, lambda x, v: {'y': x * v[0]})

  def redirect(meta_graph_def):
    graph_def = meta_graph_def.graph_def
    const = graph_def.node.add(name='elsewhere', op='Const')
    const.attr['dtype'].type = tf.string.as_datatype_enum
    const.attr['value'].tensor.CopyFrom(tf.make_tensor_proto(path))
    for node in graph_def.node:
      if node.op == 'RestoreV2':
        node.input[0] = 'elsewhere'

  return _edit(export_dir, redirect)


def unknown_op(export_dir: str, op_type: str = 'MyCustomKernel') -> str:
  """`serving_default` outputs a node whose op TensorFlow does not define."""
  _build(export_dir, lambda x, v: {'y': x * v[0]})

  def add(meta_graph_def):
    meta_graph_def.graph_def.node.add(name='custom', op=op_type)
    outputs = meta_graph_def.signature_def['serving_default'].outputs
    outputs['custom'].name = 'custom:0'
    outputs['custom'].dtype = tf.float32.as_datatype_enum

  return _edit(export_dir, add)


def _edit(export_dir: str, edit: Callable[[object], None]) -> str:
  """Applies `edit` to every MetaGraphDef of `saved_model.pb`, in place."""
  path = os.path.join(export_dir, tf.saved_model.SAVED_MODEL_FILENAME_PB)
  saved_model = saved_model_pb2.SavedModel()
  with open(path, 'rb') as f:
    saved_model.ParseFromString(f.read())
  for meta_graph_def in saved_model.meta_graphs:
    edit(meta_graph_def)
  with open(path, 'wb') as f:
    f.write(saved_model.SerializeToString())
  return export_dir


def huge_input(export_dir: str, dtype=tf.float32,
               elements: int = 2**40) -> str:
  """`serving_default` declares an input of shape [elements] (no batch)."""
  return _build(export_dir, lambda x, v: {'y': tf.reduce_sum(
      tf.cast(tf.strings.length(x) if dtype == tf.string else x,
              tf.float32)) * v[0]},
                input_dtype=dtype, input_shape=(elements,))


def index_claiming(export_dir: str, claimed_shape: Sequence[int]) -> str:
  """A plain export whose index says variable `v` has `claimed_shape`.

  The data file is untouched (8 bytes for `v`); only the index's entry for
  `v` is rewritten, as a forged export would.
  """
  _build(export_dir, lambda x, v: {'y': x * v[0]})
  index = os.path.join(export_dir, 'variables', 'variables.index')
  header, entries = bundle_index.read(index)
  entry = entries[b'v']
  del entry.shape.dim[:]
  for size in claimed_shape:
    entry.shape.dim.add(size=size)
  write_index(index, header, entries)
  return export_dir


def _varint(value: int) -> bytes:
  out = bytearray()
  while True:
    byte = value & 0x7f
    value >>= 7
    out.append(byte | (0x80 if value else 0))
    if not value:
      return bytes(out)


def _block(items: Sequence) -> bytes:
  """An uncompressed table block of (key, value) pairs plus its trailer."""
  body = b''.join(_varint(0) + _varint(len(k)) + _varint(len(v)) + k + v
                  for k, v in items)
  body += struct.pack('<II', 0, 1)  # one restart point, at 0
  crc = bundle_index.crc32c(body + b'\0')
  masked = (((crc >> 15) | (crc << 17)) + _CRC_MASK_DELTA) & 0xffffffff
  return body + b'\0' + struct.pack('<I', masked)


def write_index(path: str, header: tensor_bundle_pb2.BundleHeaderProto,
                entries: Dict[bytes, tensor_bundle_pb2.BundleEntryProto]
               ) -> None:
  """Writes a tensor_bundle `.index` table (one data block, uncompressed)."""
  items = [(b'', header.SerializeToString())] + [
      (k, entries[k].SerializeToString()) for k in sorted(entries)]
  data = _block(items)
  metaindex = _block([])
  handle = lambda offset, block: _varint(offset) + _varint(len(block) - 5)
  index = _block([(items[-1][0] + b'\xff', handle(0, data))])
  footer = handle(len(data), metaindex) + handle(
      len(data) + len(metaindex), index)
  footer = footer.ljust(40, b'\0') + struct.pack('<Q', _TABLE_MAGIC)
  with open(path, 'wb') as f:
    f.write(data + metaindex + index + footer)
