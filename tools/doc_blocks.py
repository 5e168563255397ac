"""The fenced code blocks of README.md and docs/*.md, and how output compares.

Every fenced block of a page is classified by its language and by an
optional marker, an HTML comment on the line before it (invisible on the
rendered page); docs/testing.md has the table:

  ```python               run in the page's namespace
  ```console              each `$ command` runs in bash (a trailing `\\`
                          continues it); the lines after it are its output
  ```sh / bash / shell    one bash script that must exit 0
  ```text, json, ...      shown as is (a tree, a listing, a format)
  <!-- docs-test: output [stderr] -->  what the previous python block printed
  <!-- docs-test: file NAME -->        written to NAME in the page's directory
  <!-- docs-test: needs PATH -->       run only where PATH exists (CI: must)
  <!-- docs-test: ci -->               every line of it is in .ci/run
  <!-- docs-test: generated TEST KEY -->  written and checked by TEST
  <!-- docs-test: skip REASON -->      not run, for the reason given

A fence without a language is an error: say what the block is.

Shown output is compared after a small normalisation of both sides: the
page's directory is removed from paths, ten-digit version numbers become
`<version>`, times like `24.03s` become `<time>`, `TensorFlow X.Y.Z` and
`Python X.Y.Z` lose their versions, trailing blanks go. A line `...` in the
shown output matches any number of lines, `...` within a line any text.
"""

import dataclasses
import difflib
import os
import re
from typing import List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARKER_KINDS = ('output', 'file', 'skip', 'generated', 'ci', 'needs',
                'quotes')
_NO_ARGUMENT = ('output', 'ci')  # the others need one
# Generated from docstrings and checked by tests/docs_test.py; its blocks
# are signatures, not programs.
EXCLUDED_PAGES = ('docs/api.md',)

_FENCE = re.compile(r'^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*'
                    r'(?P<lang>[^`\s]*)[^`]*$')
_MARKER = re.compile(r'^\s*<!--\s*docs-test:\s*(?P<kind>[\w-]+)\s*'
                     r'(?P<arg>.*?)\s*-->\s*$')
_VERSION = re.compile(r'\b1\d{9}\b')
_TIME = re.compile(r'\b\d+\.\d+ ?s\b')
_PROGRAM_VERSION = re.compile(r'\b(TensorFlow|Python) \d+\.\d+\.\d+\b')
_DECIMAL = re.compile(r'(?<![\w.])\d+\.\d+(?![\w.])')
_NUMBER = re.compile(r'\d+(?:\.\d+)?')
_NUMBERS = re.compile(r'N(?:, N)+')


class DocsError(Exception):
  """A page's blocks cannot be classified or run."""


@dataclasses.dataclass(frozen=True)
class Block:
  """One fenced block of a page.

  Attributes:
    page: the page's path relative to the repository root.
    line: the line number of the opening fence (1-based).
    end: the line number of the closing fence.
    lang: the fence's language, lower case.
    text: the block's content, dedented by the fence's indentation.
    kind: 'python', 'console', 'sh' (run); 'output', 'file', 'skip',
      'generated' (from a marker); 'shown' (anything else).
    arg: the marker's argument (reason, file name, key).
    indent: the fence's indentation.
    needs: for a `needs` marker, the path the block needs.
  """
  page: str
  line: int
  end: int
  lang: str
  text: str
  kind: str
  arg: str = ''
  indent: str = ''
  needs: str = ''

  @property
  def where(self) -> str:
    return f'{self.page}:{self.line}'


def pages(root: str = ROOT) -> List[str]:
  """README.md and docs/*.md (relative paths), api.md excluded."""
  found = ['README.md'] + sorted(
      f'docs/{n}' for n in os.listdir(os.path.join(root, 'docs'))
      if n.endswith('.md'))
  return [p for p in found if p not in EXCLUDED_PAGES]


def _kind(lang: str, marker: Optional[Tuple[str, str]], where: str) -> str:
  if marker and marker[0] != 'needs':
    return marker[0]
  if not lang:
    raise DocsError(f'{where}: a fence without a language; use python, '
                    'console, sh, text (or another) or a docs-test marker')
  if lang in ('py', 'python', 'python3'):
    return 'python'
  if lang == 'console':
    return 'console'
  if lang in ('sh', 'bash', 'shell'):
    return 'sh'
  return 'shown'


def parse(page: str, root: str = ROOT) -> List[Block]:
  """The fenced blocks of `page`, classified.

  Raises:
    DocsError: an unknown marker, a marker without its argument, a fence
      without a language, or an unclosed fence.
  """
  with open(os.path.join(root, page), encoding='utf-8') as f:
    lines = f.read().split('\n')
  blocks, i, marker = [], 0, None
  while i < len(lines):
    line = lines[i]
    found = _MARKER.match(line)
    if found:
      kind, arg = found.group('kind'), found.group('arg')
      if kind not in MARKER_KINDS:
        raise DocsError(f'{page}:{i + 1}: unknown docs-test marker {kind!r}; '
                        f'expected one of {", ".join(MARKER_KINDS)}')
      if kind not in _NO_ARGUMENT and not arg:
        raise DocsError(f'{page}:{i + 1}: docs-test: {kind} needs '
                        'an argument (reason, file name or key)')
      marker = None if kind == 'quotes' else (kind, arg)  # see quotations
      i += 1
      continue
    fence = _FENCE.match(line)
    if not fence:
      if line.strip():
        marker = None  # a marker applies to the very next block only
      i += 1
      continue
    indent, mark = fence.group('indent'), fence.group('fence')
    closing = re.compile(rf'^\s*{re.escape(mark[0])}{{{len(mark)},}}\s*$')
    end = next((j for j in range(i + 1, len(lines))
                if closing.match(lines[j])), None)
    if end is None:
      raise DocsError(f'{page}:{i + 1}: unclosed fence')
    body = [l[len(indent):] if l.startswith(indent) else l.lstrip()
            for l in lines[i + 1:end]]
    lang = fence.group('lang').lower()
    where = f'{page}:{i + 1}'
    needs = marker[1] if marker and marker[0] == 'needs' else ''
    blocks.append(Block(page, i + 1, end + 1, lang, '\n'.join(body),
                        _kind(lang, marker, where),
                        marker[1] if marker and not needs else '', indent,
                        needs))
    marker = None
    i = end + 1
  return blocks


@dataclasses.dataclass(frozen=True)
class Command:
  """One `$ command` of a console block and the output shown after it."""
  text: str
  expected: str
  line: int


def console_commands(block: Block) -> List[Command]:
  """The commands of a console block, with their shown output."""
  commands: List[Command] = []
  lines = block.text.split('\n')
  i = 0
  while i < len(lines):
    if not lines[i].startswith('$ '):
      if not commands:
        raise DocsError(f'{block.where}: a console block starts with '
                        f'"$ command", got {lines[i]!r}')
      i += 1
      continue
    start = i
    command = [lines[i][2:]]
    while command[-1].endswith('\\') and i + 1 < len(lines):
      i += 1
      command.append(lines[i])
    j = i + 1
    while j < len(lines) and not lines[j].startswith('$ '):
      j += 1
    commands.append(Command('\n'.join(command), '\n'.join(lines[i + 1:j]),
                            block.line + 1 + start))
    i = j
  return commands


def normalise(text: str, workdir: str = '') -> str:
  """What naturally varies between runs, replaced by placeholders."""
  if workdir:
    for d in {workdir, os.path.realpath(workdir)}:
      text = text.replace(d + os.sep, '').replace(d, '.')
  text = _VERSION.sub('<version>', text)
  text = _TIME.sub('<time>', text)
  text = _PROGRAM_VERSION.sub(r'\1 <version>', text)
  return '\n'.join(l.rstrip() for l in text.strip('\n').split('\n'))


def _pattern(expected: str) -> 're.Pattern':
  parts = []
  for line in expected.split('\n'):
    if line.strip() == '...':
      parts.append(r'(?:[^\n]*\n)*?')
    else:
      parts.append('.*?'.join(re.escape(p) for p in line.split('...')) + r'\n')
  return re.compile(''.join(parts))


def matches(expected: str, actual: str, workdir: str = '') -> bool:
  """Whether `actual` is what `expected` shows, after normalisation."""
  want, got = normalise(expected), normalise(actual, workdir)
  if want == got:
    return True
  return bool(_pattern(want).fullmatch(got + '\n'))


# --- The worker: runs one page's blocks in order, in its own process. -----


def write_block(page: str, block: Block, text: str, root: str = ROOT) -> None:
  """Replaces the content of `block` (a block of `page`) with `text`."""
  path = os.path.join(root, page)
  with open(path, encoding='utf-8') as f:
    lines = f.read().split('\n')
  lines[block.line:block.end - 1] = [block.indent + l if l else l
                                     for l in text.split('\n')]
  with open(path, 'w', encoding='utf-8') as f:
    f.write('\n'.join(lines))


def shape(text: str) -> str:
  """`text` with every number replaced by N, a list of numbers by N, ...

  For measured output whose values vary from run to run: the shown lines
  and the printed ones must have the same shape.
  """
  lines = [l.rstrip() for l in text.strip('\n').split('\n')]
  return _NUMBERS.sub('N, ...', _NUMBER.sub('N', '\n'.join(lines)))


def diff(expected: str, actual: str, workdir: str = '') -> str:
  """A unified diff of the normalised shown and printed output."""
  return '\n'.join(difflib.unified_diff(
      normalise(expected).split('\n'), normalise(actual, workdir).split('\n'),
      'shown', 'printed', lineterm=''))


def quotations(page: str, root: str = ROOT) -> List[Tuple[str, str, List[str]]]:
  """Measured numbers a page quotes from a results file, and where.

  A `<!-- docs-test: quotes FILE -->` marker makes every decimal number
  (`0.34`) of the paragraph or table after it a quotation of FILE.

  Returns:
    (where, FILE, [numbers of the paragraph that FILE does not contain]).
  """
  with open(os.path.join(root, page), encoding='utf-8') as f:
    lines = f.read().split('\n')
  found = []
  for i, line in enumerate(lines):
    marker = _MARKER.match(line)
    if not marker or marker.group('kind') != 'quotes':
      continue
    source = marker.group('arg')
    with open(os.path.join(root, source), encoding='utf-8') as f:
      numbers = set(_DECIMAL.findall(f.read()))
    end = next((j for j in range(i + 1, len(lines)) if not lines[j].strip()),
               len(lines))
    quoted = _DECIMAL.findall('\n'.join(lines[i + 1:end]))
    found.append((f'{page}:{i + 1}', source,
                  [n for n in quoted if n not in numbers]))
  return found

