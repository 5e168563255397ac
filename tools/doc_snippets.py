"""Runs the code blocks of README.md and docs/*.md; compares shown output.

Every fenced block of a page is classified by its language and by an
optional marker, an HTML comment on the line before it (invisible on the
rendered page):

  ```python               run: executed in the page's namespace
  ```console              run: each `$ command` (a trailing `\\` continues
                          it) runs in bash; the lines after it are its
                          expected output (stdout and stderr)
  ```sh / bash / shell    run: the block is one bash script that must exit 0
  ```text, json, ...      shown as is (a tree, a listing, a format)
  <!-- docs-test: output -->       what the previous python block printed
                          (`output stderr`: with what it wrote to stderr)
  <!-- docs-test: file NAME -->    written to NAME in the page's directory
  <!-- docs-test: skip REASON -->  not run here, for the reason given
  <!-- docs-test: generated KEY -->  written and compared by the test that
                          measures it (KEY names it, e.g. a scenario)

A fence without a language is an error: say what the block is. The blocks
of one page run in order in one fresh process, in a new temporary
directory whose top-level entries are symlinks to the checkout's (so
`python tools/...` works and nothing is written into the checkout), with
the running Python's bin directory first on PATH.

Expected output is compared after a small normalisation of both sides: the
page's directory is removed from paths, ten-digit version numbers become
`<version>`, times like `24.03s` become `<time>`, `TensorFlow X.Y.Z` and
`Python X.Y.Z` lose their versions, trailing blanks go. A line `...` in the
expected output matches any number of lines, `...` within a line any text.

    python tools/doc_snippets.py docs/cli.md           # run, print problems
    python tools/doc_snippets.py --update docs/cli.md  # rewrite output blocks
                                                       # (those without ...)
"""

import argparse
import dataclasses
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import traceback
from typing import Dict, List, Optional, Sequence, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_LANGUAGES = ('python', 'console', 'sh', 'bash', 'shell')
MARKER_KINDS = ('output', 'file', 'skip', 'generated', 'ci', 'needs')
_NO_ARGUMENT = ('output', 'ci')  # the others need one
# Generated from docstrings and checked by tests/docs_test.py; its blocks
# are signatures, not programs.
EXCLUDED_PAGES = ('docs/api.md',)
PAGE_TIMEOUT_SECONDS = 900

_FENCE = re.compile(r'^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*'
                    r'(?P<lang>[^`\s]*)[^`]*$')
_MARKER = re.compile(r'^\s*<!--\s*docs-test:\s*(?P<kind>[\w-]+)\s*'
                     r'(?P<arg>.*?)\s*-->\s*$')
_VERSION = re.compile(r'\b1\d{9}\b')
_TIME = re.compile(r'\b\d+\.\d+ ?s\b')
_PROGRAM_VERSION = re.compile(r'\b(TensorFlow|Python) \d+\.\d+\.\d+\b')


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
      marker = (kind, arg)
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


def _run_shell(script: str, workdir: str, env: Dict[str, str],
               strict: bool) -> Dict[str, object]:
  prefix = 'set -euo pipefail\n' if strict else ''
  done = subprocess.run(['bash', '-c', prefix + script], cwd=workdir, env=env,
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                        text=True, stdin=subprocess.DEVNULL, check=False)
  return {'output': done.stdout, 'returncode': done.returncode}


class _Stream:
  """A stream that writes to every stream in `targets`.

  The worker installs one as sys.stdout and one as sys.stderr for its whole
  life and points them at each block's buffers in turn: a logging handler
  that kept the stream it first saw still writes to the current block.
  """

  def __init__(self, *targets):
    self.targets = list(targets)

  def write(self, text):
    for target in self.targets:
      target.write(text)
    return len(text)

  def flush(self):
    for target in self.targets:
      target.flush()

  def isatty(self):
    return False


def _run_python(text: str, where: str, namespace: dict) -> Dict[str, object]:
  stdout, combined = io.StringIO(), io.StringIO()
  sys.stdout.targets[:] = [stdout, combined]
  sys.stderr.targets[:] = [combined]
  error = None
  try:
    exec(compile(text, where, 'exec'), namespace)  # pylint: disable=exec-used
  except BaseException as e:  # pylint: disable=broad-except
    # Without this module's own frame: the trace starts in the block.
    error = ''.join(traceback.format_exception(
        type(e), e, e.__traceback__.tb_next))
  finally:
    sys.stdout.targets[:] = []
    sys.stderr.targets[:] = []
  return {'output': stdout.getvalue(), 'combined': combined.getvalue(),
          'error': error}


def _worker(spec_path: str) -> None:
  """Runs the blocks listed in the JSON file `spec_path`; writes results."""
  with open(spec_path, encoding='utf-8') as f:
    spec = json.load(f)
  workdir = spec['workdir']
  os.chdir(workdir)
  sys.path.insert(0, workdir)
  sys.stdout, sys.stderr = _Stream(), _Stream()
  env = dict(os.environ)
  namespace = {'__name__': '__docs__'}
  results = []
  for block in spec['blocks']:
    where = f"{block['page']}:{block['line']}"
    kind = block['kind']
    if kind == 'python':
      result = _run_python(block['text'], where, namespace)
      failed = result['error'] is not None
    elif kind == 'file':
      with open(os.path.join(workdir, block['arg']), 'w',
                encoding='utf-8') as f:
        f.write(block['text'] + '\n')
      result, failed = {}, False
    elif kind == 'sh':
      result = _run_shell(block['text'], workdir, env, strict=True)
      failed = result['returncode'] != 0
    else:  # console
      result = {'commands': []}
      failed = False
      for command in block['commands']:
        ran = _run_shell(command, workdir, env, strict=False)
        result['commands'].append(ran)
        if ran['returncode'] != 0:
          failed = True
          break
    results.append(result)
    if failed:
      break
  with open(spec['results'], 'w', encoding='utf-8') as f:
    json.dump(results, f)


def make_workdir(parent: Optional[str] = None, root: str = ROOT) -> str:
  """A new directory whose top-level entries link to the checkout's."""
  workdir = tempfile.mkdtemp(prefix='docs-', dir=parent)
  for name in os.listdir(root):
    if (name.startswith('.') and name != '.venv') or name.endswith('.egg-info') or name in (
        'build', 'dist'):
      continue
    os.symlink(os.path.join(root, name), os.path.join(workdir, name))
  return workdir


def run_blocks(runnable: Sequence[Block], workdir: str) -> List[dict]:
  """Runs the blocks in order in one worker process; their results.

  The list may be shorter than the blocks: the worker stops after the first
  failing block.
  """
  spec = {'workdir': workdir, 'results': os.path.join(workdir, '.results.json'),
          'blocks': [dict(dataclasses.asdict(b), commands=[
              c.text for c in console_commands(b)] if b.kind == 'console'
                          else []) for b in runnable]}
  spec_path = os.path.join(workdir, '.blocks.json')
  with open(spec_path, 'w', encoding='utf-8') as f:
    json.dump(spec, f)
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', PYTHONHASHSEED='0',
             CUDA_VISIBLE_DEVICES='')
  env['PATH'] = os.pathsep.join([os.path.dirname(sys.executable),
                                 env.get('PATH', '')])
  done = subprocess.run(
      [sys.executable, os.path.abspath(__file__), '--worker', spec_path],
      cwd=workdir, env=env, stdin=subprocess.DEVNULL, capture_output=True,
      text=True, timeout=PAGE_TIMEOUT_SECONDS, check=False)
  if done.returncode != 0 or not os.path.exists(spec['results']):
    raise DocsError(f'the worker for {runnable[0].page} failed '
                    f'({done.returncode}):\n{done.stdout}\n{done.stderr}')
  with open(spec['results'], encoding='utf-8') as f:
    return json.load(f)


@dataclasses.dataclass(frozen=True)
class Problem:
  """A block that failed, or whose shown output differs from the real one.

  Attributes:
    block: the block.
    message: what went wrong.
    actual: for an output mismatch, what was printed (path-normalised only),
      to write into the page instead.
    command: for a console block, the index of the command concerned.
  """
  block: Block
  message: str
  actual: Optional[str] = None
  command: Optional[int] = None


def _diff(expected: str, actual: str, workdir: str) -> str:
  import difflib  # pylint: disable=g-import-not-at-top
  return '\n'.join(difflib.unified_diff(
      normalise(expected).split('\n'), normalise(actual, workdir).split('\n'),
      'shown', 'printed', lineterm=''))


RUN_KINDS = ('python', 'console', 'sh', 'file')


def available(block: Block) -> bool:
  """False for a block whose `needs` path is missing here."""
  return not block.needs or os.path.exists(block.needs)


def _ci_problems(block: Block, root: str) -> List[Problem]:
  with open(os.path.join(root, '.ci', 'run'), encoding='utf-8') as f:
    script = f.read().split('\n')
  missing = [l for l in block.text.split('\n')
             if l.strip() and not any(l in line for line in script)]
  return [Problem(block, f'marked "ci" but .ci/run has no line {l!r}')
          for l in missing]


def check_page(page: str, workdir: str, root: str = ROOT) -> Tuple[
    List[Block], List[Problem]]:
  """Runs `page`'s blocks in `workdir`; its blocks and the problems found.

  A block whose `needs` path is missing is not run; in CI (`CI=true`) that
  is a problem.
  """
  blocks = parse(page, root)
  problems: List[Problem] = []
  runnable = [b for b in blocks if b.kind in RUN_KINDS and available(b)]
  results = dict(zip(runnable, run_blocks(runnable, workdir))) if runnable \
      else {}
  previous = None
  for block in blocks:
    if block.kind == 'ci':
      problems.extend(_ci_problems(block, root))
    elif not available(block):
      if os.environ.get('CI') == 'true':
        problems.append(Problem(block, f'needs {block.needs}, missing in CI'))
    elif block.kind == 'output':
      if previous is None or previous.kind != 'python':
        problems.append(Problem(block, 'an output block must follow a python '
                                'block'))
      elif previous in results and results[previous].get('error') is None:
        actual = results[previous][
            'combined' if block.arg == 'stderr' else 'output']
        if not matches(block.text, actual, workdir):
          problems.append(Problem(
              block, 'shown output differs from what ' + previous.where +
              ' printed:\n' + _diff(block.text, actual, workdir),
              _strip_workdir(actual, workdir)))
    elif block in results:
      problems.extend(_block_problems(block, results[block], workdir))
    if block.kind in ('python', 'console', 'sh'):
      previous = block
  not_run = [b for b in runnable if b not in results]
  if not_run:
    problems.append(Problem(not_run[0], f'not run, nor the {len(not_run) - 1} '
                            'blocks after it: an earlier block failed'))
  return blocks, problems


def _strip_workdir(text: str, workdir: str) -> str:
  for d in {workdir, os.path.realpath(workdir)}:
    text = text.replace(d + os.sep, '').replace(d, '.')
  return text.rstrip('\n')


def _block_problems(block: Block, result: dict, workdir: str) -> List[Problem]:
  if block.kind == 'file':
    return []
  if block.kind == 'python':
    if result['error']:
      return [Problem(block, f"raised:\n{result['error']}\nprinted:\n"
                      f"{result['output']}")]
    return []
  if block.kind == 'sh':
    if result['returncode']:
      return [Problem(block, f"exited {result['returncode']}:\n"
                      f"{result['output']}")]
    return []
  problems = []
  commands = console_commands(block)
  for index, (command, ran) in enumerate(zip(commands, result['commands'])):
    if ran['returncode']:
      problems.append(Problem(block, f'$ {command.text}\nexited '
                              f"{ran['returncode']}:\n{ran['output']}"))
    elif not matches(command.expected, ran['output'], workdir):
      problems.append(Problem(
          block, f'$ {command.text} (line {command.line}): shown output '
          f"differs:\n{_diff(command.expected, ran['output'], workdir)}",
          _strip_workdir(ran['output'], workdir), index))
  return problems


def _updated_text(block: Block, problems: Sequence[Problem]) -> str:
  """The block's text with the printed output of `problems` written in."""
  if block.kind != 'console':
    return problems[0].actual
  outputs = {p.command: p.actual for p in problems}
  parts = []
  for index, command in enumerate(console_commands(block)):
    parts.append('$ ' + command.text)
    output = outputs.get(index, command.expected)
    if output:
      parts.append(output)
  return '\n'.join(parts)


def update_page(page: str, problems: Sequence[Problem],
                root: str = ROOT) -> int:
  """Writes the printed output into mismatching blocks without `...`.

  Returns:
    The number of blocks rewritten.
  """
  path = os.path.join(root, page)
  with open(path, encoding='utf-8') as f:
    lines = f.read().split('\n')
  by_block: Dict[Block, List[Problem]] = {}
  for problem in problems:
    if problem.actual is not None and '...' not in (
        console_commands(problem.block)[problem.command].expected
        if problem.block.kind == 'console' else problem.block.text):
      by_block.setdefault(problem.block, []).append(problem)
  for block in sorted(by_block, key=lambda b: -b.line):
    body = [block.indent + l if l else l
            for l in _updated_text(block, by_block[block]).split('\n')]
    lines[block.line:block.end - 1] = body
  done = len(by_block)
  with open(path, 'w', encoding='utf-8') as f:
    f.write('\n'.join(lines))
  return done


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('pages', nargs='*', help='default: every page')
  parser.add_argument('--update', action='store_true',
                      help='rewrite mismatching output blocks without ...')
  parser.add_argument('--worker', help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.worker:
    _worker(args.worker)
    return 0
  failed = 0
  for page in args.pages or pages():
    page = os.path.relpath(os.path.abspath(page), ROOT)
    workdir = make_workdir()
    try:
      blocks, problems = check_page(page, workdir)
    finally:
      shutil.rmtree(workdir, ignore_errors=True)
    counts = {k: sum(b.kind == k for b in blocks) for k in (
        'python', 'console', 'sh', 'output', 'file', 'skip', 'generated',
        'shown')}
    print(f'{page}: ' + ', '.join(f'{v} {k}' for k, v in counts.items() if v))
    for problem in problems:
      print(f'  {problem.block.where}: {problem.message}')
    if args.update and problems:
      print(f'  rewrote {update_page(page, problems)} output block(s)')
    failed += bool(problems)
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(main())
