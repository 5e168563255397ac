"""Writes docs/api.md from the docstrings of `multimode_export.__all__`.

Every public name gets a section: its signature and its docstring, Google
style sections (Args, Returns, Raises, ...) turned into Markdown lists;
classes also list their bases, constructor and public methods. The output
depends only on the package's source, so CI can check it is current.

    .venv/bin/python tools/gen_api_docs.py          # rewrite docs/api.md
    .venv/bin/python tools/gen_api_docs.py --check  # exit 1 if it is stale

(any Python with TensorFlow and the package's dependencies will do).
"""

import argparse
import difflib
import enum
import inspect
import os
import re
import sys
import textwrap
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

if not __package__:
  # Run as a script: only tools/ is on sys.path, add the repository root.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
import multimode_export  # pylint: disable=g-import-not-at-top,wrong-import-position

PACKAGE = 'multimode_export'
DEFAULT_OUTPUT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'docs',
    'api.md')
MAX_LINE = 80

_SECTION = re.compile(
    r'^(Args|Arguments|Attributes|Returns|Yields|Raises|Example|Examples|'
    r'Note|Notes|See Also|Warning|Warnings|References):\s*$')
_ITEM_SECTIONS = ('Args', 'Arguments', 'Attributes', 'Raises')
_CODE_SECTIONS = ('Example', 'Examples')
_ITEM = re.compile(
    r'^(\*{0,2}[A-Za-z_][\w.]*(?:\s*\([^)]*\))?'
    r'(?:\s*,\s*[A-Za-z_][\w.]*)*):(?:\s+(.*))?$')
# A repr holding a memory address would change on every run.
_TF_TENSOR = re.compile(r'tensorflow\.python(?:\.\w+)*\.Tensor\b')
_TF_ESTIMATOR = re.compile(
    r'tensorflow_estimator\.python(?:\.\w+)*\.Estimator\b')
_ADDRESS = re.compile(r' at 0x[0-9a-fA-F]+')


class Kind(enum.Enum):
  """The groups of the reference, in the order they appear."""
  FUNCTION = 'Functions'
  CLASS = 'Classes'
  EXCEPTION = 'Exceptions'
  OTHER = 'Other names'


class DocsError(Exception):
  """The API cannot be documented deterministically."""


def kind_of(obj: object) -> Kind:
  if inspect.isclass(obj):
    return Kind.EXCEPTION if issubclass(obj, BaseException) else Kind.CLASS
  if callable(obj):
    return Kind.FUNCTION
  return Kind.OTHER


def _anchor(heading: str) -> str:
  # GitHub's rule: lower case, drop punctuation but `-` and `_`, spaces to `-`.
  return re.sub(r'[^\w\- ]', '', heading.lower()).replace(' ', '-')


def _type_name(cls: type) -> str:
  if cls.__module__ == 'builtins':
    return cls.__qualname__
  if (cls.__module__.startswith(PACKAGE) and
      getattr(multimode_export, cls.__name__, None) is cls):
    return cls.__name__
  return f'{cls.__module__}.{cls.__qualname__}'


_OWN_CLASS = re.compile(PACKAGE + r'(?:\.[A-Za-z_]\w*)*\.([A-Z]\w*)')


def _public_class_name(match: 're.Match[str]') -> str:
  name = match.group(1)
  return name if hasattr(multimode_export, name) else match.group(0)


def format_signature(name: str, sig: inspect.Signature,
                     drop_first: bool = False) -> str:
  """`name(params) -> ret`, one parameter per line when it is too long."""
  params = list(sig.parameters.values())
  if drop_first and params:
    params = params[1:]
  parts = []
  star_done = False
  for i, param in enumerate(params):
    if param.kind is param.VAR_POSITIONAL:
      star_done = True
    elif param.kind is param.KEYWORD_ONLY and not star_done:
      parts.append('*')
      star_done = True
    parts.append(str(param))
    if (param.kind is param.POSITIONAL_ONLY and
        (i + 1 == len(params) or
         params[i + 1].kind is not param.POSITIONAL_ONLY)):
      parts.append('/')
  ret = ''
  if sig.return_annotation is not inspect.Signature.empty:
    ret = ' -> ' + inspect.formatannotation(sig.return_annotation)
  one_line = f'{name}({", ".join(parts)}){ret}'
  if len(one_line) <= MAX_LINE:
    text = one_line
  else:
    text = f'{name}(\n' + ''.join(f'    {p},\n' for p in parts) + f'){ret}'
  # TensorFlow moves its classes between private modules across releases
  # (Tensor: framework.ops in 2.13, framework.tensor in 2.15): name them by
  # their public alias so the file is the same on every supported version.
  text = _TF_TENSOR.sub('tf.Tensor', text)
  # Annotated with the v1 base class, which every Estimator subclasses.
  text = _TF_ESTIMATOR.sub('tf.compat.v1.estimator.Estimator', text)
  # The package's own classes by their public name, not their internal module.
  text = _OWN_CLASS.sub(_public_class_name, text)
  if _ADDRESS.search(text):
    raise DocsError(f'{name}: a default value has a repr with a memory '
                    f'address, which would change on every run: {text}')
  return text


def _signature(obj: Callable[..., object]) -> Optional[inspect.Signature]:
  try:
    return inspect.signature(obj)
  except (TypeError, ValueError):  # Builtins without a signature.
    return None


def _items(block: List[str]) -> Iterator[str]:
  """`name: text` entries (continued by indented lines) as list items."""
  current: Optional[Tuple[str, List[str]]] = None
  for line in block:
    match = _ITEM.match(line)
    if match and not line.startswith(' '):
      if current:
        yield _item(*current)
      names = ', '.join(f'`{n.strip()}`' for n in match.group(1).split(','))
      current = (names, [match.group(2) or ''])
    elif current:
      current[1].append(line.strip())
    elif line.strip():
      current = ('', [line.strip()])
  if current:
    yield _item(*current)


def _item(names: str, text: List[str]) -> str:
  body = ' '.join(t for t in text if t)
  return f'- {names}: {body}' if names else f'- {body}'


def docstring_markdown(doc: Optional[str]) -> str:
  """A Google-style docstring as Markdown.

  Section headers become bold labels, Args/Attributes/Raises entries list
  items, Examples and indented blocks in the free text fenced code blocks.
  """
  if not doc or not doc.strip():
    return '*No docstring.*'
  lines = inspect.cleandoc(doc).splitlines()
  out: List[str] = []
  i = 0
  while i < len(lines):
    line = lines[i]
    section = _SECTION.match(line)
    if section:
      name = section.group(1)
      i += 1
      block = []
      while i < len(lines) and (not lines[i].strip() or
                                lines[i].startswith(' ')):
        block.append(lines[i])
        i += 1
      block = textwrap.dedent('\n'.join(block)).strip('\n').splitlines()
      out += ['', f'**{name}:**', '']
      if name in _ITEM_SECTIONS:
        out += list(_items(block))
      elif name in _CODE_SECTIONS:
        out += ['```python'] + block + ['```']
      else:
        out += [' '.join(l.strip() for l in block if l.strip())]
      out.append('')
    elif line.startswith(' ') and (not out or not out[-1].strip()):
      block = []
      while i < len(lines) and (not lines[i].strip() or
                                lines[i].startswith(' ')):
        block.append(lines[i])
        i += 1
      block = textwrap.dedent('\n'.join(block)).strip('\n').splitlines()
      out += ['```python'] + block + ['```', '']
    else:
      out.append(line)
      i += 1
  text = '\n'.join(out)
  return re.sub(r'\n{3,}', '\n\n', text).strip('\n')


def public_methods(cls: type) -> List[Tuple[str, object]]:
  """Public methods and properties the package defines on `cls`.

  Members inherited from outside the package (e.g. `Exception`'s) are left
  out; definition order, the class's own members first.
  """
  seen = set()
  members = []
  for klass in cls.__mro__:
    if not klass.__module__.startswith(PACKAGE):
      continue
    for name, member in vars(klass).items():
      if name.startswith('_') or name in seen:
        continue
      if isinstance(member, (staticmethod, classmethod, property)) or (
          inspect.isfunction(member)):
        seen.add(name)
        members.append((name, member))
  return members


def _package_init(cls: type) -> Optional[Callable[..., None]]:
  """The `__init__` the package defines for `cls` (or a package base)."""
  for klass in cls.__mro__:
    if klass.__module__.startswith(PACKAGE) and '__init__' in vars(klass):
      return vars(klass)['__init__']
  return None


def _member_markdown(cls: type, name: str, member: object) -> List[str]:
  qualified = f'{cls.__name__}.{name}'
  out = [f'#### {qualified}', '']
  if isinstance(member, property):
    out += ['*property*', '', docstring_markdown(member.__doc__), '']
    return out
  function = member.__func__ if isinstance(
      member, (staticmethod, classmethod)) else member
  sig = _signature(function)
  if sig is not None:
    prefix = ('@staticmethod\n' if isinstance(member, staticmethod) else
              '@classmethod\n' if isinstance(member, classmethod) else '')
    drop = not isinstance(member, staticmethod)
    out += ['```python', prefix + format_signature(qualified, sig, drop),
            '```', '']
  out += [docstring_markdown(function.__doc__), '']
  return out


def _name_markdown(name: str, obj: object) -> List[str]:
  out = [f'### {name}', '']
  qualified = f'{PACKAGE}.{name}'
  if inspect.isclass(obj):
    bases = ', '.join(_type_name(b) for b in obj.__bases__
                      if b is not object)
    code = [f'class {qualified}' + (f'({bases})' if bases else '')]
    init = _package_init(obj)
    if init is not None and _signature(init) is not None:
      code += ['', format_signature(name, _signature(init), True)]
    out += ['```python'] + code + ['```', '']
    out += [docstring_markdown(obj.__doc__), '']
    for member_name, member in public_methods(obj):
      out += _member_markdown(obj, member_name, member)
  elif callable(obj):
    sig = _signature(obj)
    if sig is not None:
      out += ['```python', format_signature(qualified, sig), '```', '']
    out += [docstring_markdown(obj.__doc__), '']
  else:
    value = repr(obj)
    if _ADDRESS.search(value):
      raise DocsError(f'{name}: its repr holds a memory address: {value}')
    out += ['```python', f'{qualified} = {value}', '```', '']
  return out


def render(module=multimode_export) -> str:
  """The text of docs/api.md for `module`'s `__all__`."""
  names = list(module.__all__)
  by_kind = {kind: [n for n in names if kind_of(getattr(module, n)) is kind]
             for kind in Kind}
  out = [
      '# API reference',
      '',
      '<!-- Generated by tools/gen_api_docs.py from the docstrings: do not '
      'edit.',
      '     Regenerate: python tools/gen_api_docs.py (tests/docs_test.py '
      'fails',
      '     while this file is stale). -->',
      '',
      f'Every public name of `{PACKAGE}` (its `__all__`), with its signature '
      'and docstring.',
      '',
  ]
  for kind, members in by_kind.items():
    if members:
      out.append(f'**{kind.value}:** ' + ', '.join(
          f'[`{n}`](#{_anchor(n)})' for n in members))
      out.append('')
  for kind, members in by_kind.items():
    if not members:
      continue
    out += [f'## {kind.value}', '']
    for name in members:
      out += _name_markdown(name, getattr(module, name))
  text = '\n'.join(out)
  return re.sub(r'\n{3,}', '\n\n', text).rstrip('\n') + '\n'


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--check', action='store_true',
                      help='exit 1 if the output file differs, write nothing')
  parser.add_argument('--output', default=DEFAULT_OUTPUT,
                      help='Markdown file to write (default: %(default)s)')
  args = parser.parse_args(argv)
  try:
    text = render()
  except DocsError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  if args.check:
    try:
      with open(args.output, encoding='utf-8') as f:
        current = f.read()
    except FileNotFoundError:
      current = ''
    if current == text:
      print(f'{args.output} is up to date')
      return 0
    diff = ''.join(difflib.unified_diff(
        current.splitlines(True), text.splitlines(True),
        f'{args.output} (committed)', f'{args.output} (generated)'))
    print(f'{args.output} is stale; regenerate it with '
          '`python tools/gen_api_docs.py` (a Python with TensorFlow):\n'
          f'{diff}', file=sys.stderr)
    return 1
  with open(args.output, 'w', encoding='utf-8') as f:
    f.write(text)
  print(f'wrote {args.output}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
