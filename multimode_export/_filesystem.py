"""Path helpers shared by the modules that read and write files, for local
paths and URLs (`gs://`, `s3://`, `ram://`) alike."""

import os
from typing import List, Union

import tensorflow as tf

PathLike = Union[str, bytes, os.PathLike]


def as_str(path: PathLike) -> str:
  """`path` (str, bytes or os.PathLike) as a str."""
  path = os.fspath(path)
  return path.decode('utf-8') if isinstance(path, bytes) else path


def is_local(path: str) -> bool:
  """Whether `path` is on the local filesystem (no scheme, or file://)."""
  return '://' not in path or path.startswith('file://')


def local_path(path: str) -> str:
  """A local path without its optional file:// scheme."""
  return path[len('file://'):] if path.startswith('file://') else path


def join(*parts: str) -> str:
  """Joins path parts with '/', for local paths and URLs alike."""
  return '/'.join([parts[0].rstrip('/')] + [p.strip('/') for p in parts[1:]])


def missing_dirs(path: str) -> List[str]:
  """`path` and those of its ancestors that do not exist, innermost first.

  What an export creates and must remove again if it fails. On a remote
  filesystem the walk stops below the scheme's root (`gs://bucket/...`).
  """
  missing = []
  if is_local(path):
    path = os.path.abspath(local_path(path))
    while not os.path.lexists(path):
      missing.append(path)
      path = os.path.dirname(path)
    return missing
  root = path[:path.index('://') + 3]
  rest = path[len(root):].rstrip('/')
  while rest and not tf.io.gfile.exists(root + rest):
    missing.append(root + rest)
    rest = rest.rsplit('/', 1)[0] if '/' in rest else ''
  return missing


def walk_files(root: str) -> List[str]:
  """Every file below `root` (any filesystem), as full paths."""
  out = []
  for dirpath, _, filenames in tf.io.gfile.walk(root):
    out.extend(join(dirpath, f) for f in filenames)
  return out
