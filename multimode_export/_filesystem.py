"""Path helpers shared by the modules that read and write files, for local
paths and URLs (`gs://`, `s3://`, `ram://`) alike."""

import os
from typing import List, Optional, Union

import tensorflow as tf

from multimode_export import _tf_private

PathLike = Union[str, bytes, os.PathLike]

# tensorflow-io 0.36.0's GCS reader crashed the process (double free,
# segfault) on one large read() of an object over ~100 KB, or on a large
# read after small ones; remote files are read front to back in bounded
# pieces. (An intermittent crash on objects of a few MiB remains, in the
# plugin: docs/object-stores.md.)
READ_PIECE_BYTES = 1 << 20


def as_str(path: PathLike) -> str:
  """`path` (str, bytes or os.PathLike) as a str."""
  path = os.fspath(path)
  return path.decode('utf-8') if isinstance(path, bytes) else path


def is_local(path: str) -> bool:
  """Whether `path` is on the local filesystem (no scheme, or file://)."""
  return '://' not in path or path.startswith('file://')


def is_object_store(path: str) -> bool:
  """Whether `path` is on S3 or GCS, where a "directory" is only a prefix
  of object names: nothing to create before writing below it."""
  return path.startswith(('s3://', 'gs://'))


def local_path(path: str) -> str:
  """A local path without its optional file:// scheme."""
  return path[len('file://'):] if path.startswith('file://') else path


def join(*parts: str) -> str:
  """Joins path parts with '/', for local paths and URLs alike."""
  return '/'.join([parts[0].rstrip('/')] + [p.strip('/') for p in parts[1:]])


def root_of(path: str) -> str:
  """The top directory of `path`'s filesystem, which is never created,
  listed as a child, or removed by an export.

  '/' for local paths; for a URL, `scheme://bucket/` (`s3://`, `gs://`;
  `hdfs://host:port/` likewise): object stores refuse the bucket-less
  `s3://bucket`; `ram://` for TF's in-memory filesystem, which has no
  buckets.

  Raises:
    ValueError: a URL with no bucket (`s3://`, `gs:///x`).
  """
  if is_local(path):
    return 'file:///' if path.startswith('file://') else '/'
  scheme_end = path.index('://') + 3
  if path.startswith('ram://'):
    return 'ram://'
  bucket = path[scheme_end:].split('/', 1)[0]
  if not bucket:
    raise ValueError(f'expected a URL with a bucket, {path[:scheme_end]}'
                     f'<bucket>/..., got {path!r}')
  return path[:scheme_end] + bucket + '/'


def dir_path(path: str) -> str:
  """`path` without trailing '/', except a root, which keeps its own:
  's3://bucket' and 's3://bucket/' -> 's3://bucket/', '/a/' -> '/a'.

  Raises:
    ValueError: a URL with no bucket.
  """
  root = root_of(path)
  stripped = path.rstrip('/')
  return root if len(stripped) < len(root) else stripped


def parent(path: str) -> Optional[str]:
  """The directory holding `path`, or None if `path` is a root:
  's3://bucket/a' -> 's3://bucket/', 's3://bucket/a/b' -> 's3://bucket/a'.

  Raises:
    ValueError: a URL with no bucket.
  """
  path = dir_path(path)
  root = root_of(path)
  if path == root:
    return None
  head = path.rsplit('/', 1)[0]
  return root if len(head) < len(root) else head


def missing_dirs(path: str) -> List[str]:
  """`path` and those of its ancestors that do not exist, innermost first.

  Stops at the filesystem's root (`root_of`): a bucket is never in the list.
  Empty on S3 and GCS, where `makedirs` creates nothing.
  """
  missing = []
  if is_local(path):
    current: Optional[str] = os.path.abspath(local_path(path))
    while current is not None and not os.path.lexists(current):
      missing.append(current)
      current = parent(current)
    return missing
  if is_object_store(path):
    return []  # a prefix is never created, so never removed either
  current = dir_path(path)
  while current is not None and current != root_of(current):
    if tf.io.gfile.exists(current):
      break
    missing.append(current)
    current = parent(current)
  return missing


def listdir(path: str) -> List[str]:
  """The names in the directory `path` (a sub-directory's may end with '/');
  empty if there is none.

  On S3 and GCS one listing request: `tf.io.gfile.listdir` asks whether
  `path` is a directory first, two requests more.
  """
  if is_object_store(path):
    return _tf_private.list_children(path)
  try:
    return tf.io.gfile.listdir(path)
  except tf.errors.NotFoundError:
    return []


def exists(path: str) -> bool:
  """Whether a file or a directory is at `path`.

  On GCS `tf.io.gfile.exists` (tensorflow-io) is False for a directory with
  no marker object (this package writes none, nor do most tools): such a
  directory exists if something is listed in it.
  """
  if tf.io.gfile.exists(path):
    return True
  return path.startswith('gs://') and bool(listdir(path))


def makedirs(path: str) -> None:
  """Creates the directory `path` and its parents; nothing on S3 and GCS,
  where a directory is only a prefix of the objects written below it."""
  if not is_object_store(path):
    tf.io.gfile.makedirs(path)


def walk_files(root: str) -> List[str]:
  """Every file below `root` (any filesystem), as full paths.

  One listing per directory. An entry is told apart as a directory by a
  trailing '/' (GCS), else on S3 by listing it (an object lists nothing:
  one request, where a `stat` is two), else by a `stat`.
  """
  out, pending = [], [(root, listdir(root))]
  while pending:
    directory, names = pending.pop()
    for name in names:
      path = join(directory, name.rstrip('/'))
      if name.endswith('/'):
        pending.append((path, listdir(path)))
      elif is_object_store(path):
        children = listdir(path)  # S3 marks no directory: probe it
        if children:
          pending.append((path, children))
        else:
          out.append(path)
      elif _is_dir(path):
        pending.append((path, listdir(path)))
      else:
        out.append(path)
  return sorted(out)


def read_bytes(path: str) -> bytes:
  """The whole file at `path` (any filesystem), read in bounded pieces."""
  with tf.io.gfile.GFile(path, 'rb') as f:
    return b''.join(iter(lambda: f.read(READ_PIECE_BYTES), b''))


def _is_dir(path: str) -> bool:
  # stat(), not isdir(): on S3 (tensorflow-io) isdir() makes twice the
  # requests.
  try:
    return tf.io.gfile.stat(path).is_directory
  except tf.errors.NotFoundError:
    return False


def rmtree_if_present(path: str) -> None:
  """Removes the directory `path` and everything in it, if there is one.

  A directory on S3 is only a prefix of its objects: it is gone once its
  last file was moved or deleted. Other errors propagate.
  """
  try:
    tf.io.gfile.rmtree(path)
  except tf.errors.NotFoundError:
    pass
