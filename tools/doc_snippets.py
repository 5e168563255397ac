"""Runs the code blocks of README.md and docs/*.md; compares shown output.

The blocks and their markers are classified by `doc_blocks` (see
docs/testing.md). The blocks of one page run in order in one fresh process,
in a new temporary directory whose top-level entries are symlinks to the
checkout's (so `python tools/...` works and what the examples write stays
out of the checkout), with the running Python's bin directory first on PATH.

    python tools/doc_snippets.py docs/cli.md           # run, print problems
    python tools/doc_snippets.py --update docs/cli.md  # write what was printed
                                                       # into output blocks
                                                       # (those without ...)
"""

import argparse
import dataclasses
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import traceback
from typing import Dict, List, Optional, Sequence, Tuple

if not __package__:
  # Run as a script (also the worker): add the repository root.
  sys.path.insert(0, os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))
from tools import doc_blocks  # pylint: disable=wrong-import-position

ROOT = doc_blocks.ROOT
PAGE_TIMEOUT_SECONDS = 900
RUN_KINDS = ('python', 'console', 'sh', 'file')
Block = doc_blocks.Block
DocsError = doc_blocks.DocsError


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
    if ((name.startswith('.') and name != '.venv') or
        name.endswith('.egg-info') or name in ('build', 'dist')):
      continue
    os.symlink(os.path.join(root, name), os.path.join(workdir, name))
  return workdir


def run_blocks(runnable: Sequence[Block], workdir: str) -> List[dict]:
  """Runs the blocks in order in one worker process; their results.

  The list may be shorter than the blocks: the worker stops after the first
  failing block.
  """
  blocks = []
  for block in runnable:
    commands = (doc_blocks.console_commands(block)
                if block.kind == 'console' else [])
    blocks.append(dict(dataclasses.asdict(block),
                       commands=[c.text for c in commands]))
  spec = {'workdir': workdir, 'blocks': blocks,
          'results': os.path.join(workdir, '.results.json')}
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
  blocks = doc_blocks.parse(page, root)
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
        if not doc_blocks.matches(block.text, actual, workdir):
          problems.append(Problem(
              block, 'shown output differs from what ' + previous.where +
              ' printed:\n' + doc_blocks.diff(block.text, actual, workdir),
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
  commands = doc_blocks.console_commands(block)
  for index, (command, ran) in enumerate(zip(commands, result['commands'])):
    if ran['returncode']:
      problems.append(Problem(block, f'$ {command.text}\nexited '
                              f"{ran['returncode']}:\n{ran['output']}"))
    elif not doc_blocks.matches(command.expected, ran['output'], workdir):
      difference = doc_blocks.diff(command.expected, ran['output'], workdir)
      problems.append(Problem(
          block, f'$ {command.text} (line {command.line}): shown output '
          f'differs:\n{difference}', _strip_workdir(ran['output'], workdir),
          index))
  return problems


def _updated_text(block: Block, problems: Sequence[Problem]) -> str:
  """The block's text with the printed output of `problems` written in."""
  if block.kind != 'console':
    return problems[0].actual
  outputs = {p.command: p.actual for p in problems}
  parts = []
  for index, command in enumerate(doc_blocks.console_commands(block)):
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
        doc_blocks.console_commands(problem.block)[problem.command].expected
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
  for page in args.pages or doc_blocks.pages():
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
