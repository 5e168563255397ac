"""Path helpers shared by the modules that write files."""

import os
from typing import Union

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
