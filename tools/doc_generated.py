"""Blocks and table rows of the docs that a test measures and keeps current.

A test that measures what a page shows (the fault-scenario table of
docs/publishing.md, the cluster run of docs/distributed.md) compares it
with the page here: a block marked `<!-- docs-test: generated TEST KEY -->`,
or the table row whose first cell ends with (`KEY`). With
MULTIMODE_EXPORT_UPDATE_DOCS=1 (and without xdist: `-p no:xdist`) the test
writes what it measured instead.
"""

import fnmatch
import os
import re
from typing import Dict, List, Tuple

from tools import doc_blocks

ROOT = doc_blocks.ROOT
DocsError = doc_blocks.DocsError

UPDATE_ENV = 'MULTIMODE_EXPORT_UPDATE_DOCS'


def updating() -> bool:
  """Whether tests should write what they measured into the docs.

  Set MULTIMODE_EXPORT_UPDATE_DOCS=1 and run the measuring test without
  xdist (`-p no:xdist`): each test then rewrites its block or table row.
  """
  return os.environ.get(UPDATE_ENV) == '1'


def generated_block(page: str, key: str,
                    root: str = ROOT) -> doc_blocks.Block:
  """The block of `page` marked `<!-- docs-test: generated KEY -->`."""
  found = [b for b in doc_blocks.parse(page, root) if b.kind == 'generated' and
           b.arg == key]
  if len(found) != 1:
    raise DocsError(f'{page}: expected one block marked "generated {key}", '
                    f'found {len(found)}')
  return found[0]


def _cells(line: str) -> List[str]:
  return [c.strip() for c in line.strip().strip('|').split('|')]


def _table_row(lines: List[str], key: str, page: str) -> Tuple[int, List[str]]:
  """(index of the row whose first cell ends with (`key`), its header)."""
  tag = f'(`{key}`)'
  for i, line in enumerate(lines):
    if line.startswith('|') and _cells(line)[0].endswith(tag):
      header = i
      while header > 0 and lines[header - 1].startswith('|'):
        header -= 1
      return i, _cells(lines[header])
  raise DocsError(f'{page}: no table row whose first cell ends with {tag}')


def table_row(page: str, key: str, root: str = ROOT) -> Dict[str, str]:
  """The cells, by column header, of the row of `page` tagged (`key`)."""
  with open(os.path.join(root, page), encoding='utf-8') as f:
    lines = f.read().split('\n')
  i, header = _table_row(lines, key, page)
  return dict(zip(header, _cells(lines[i])))


def write_table_cells(page: str, key: str, cells: Dict[str, str],
                      root: str = ROOT) -> None:
  """Writes `cells` (column header -> text) into the row tagged (`key`)."""
  path = os.path.join(root, page)
  with open(path, encoding='utf-8') as f:
    lines = f.read().split('\n')
  i, header = _table_row(lines, key, page)
  row = dict(zip(header, _cells(lines[i])))
  row.update(cells)
  lines[i] = '| ' + ' | '.join(row[h] for h in header) + ' |'
  with open(path, 'w', encoding='utf-8') as f:
    f.write('\n'.join(lines))


def disagreement(page: str, key: str, text: str, measured: bool = False,
                 root: str = ROOT) -> str:
  """How the block marked `generated KEY` differs from `text`; '' if not.

  Args:
    page: the page, relative to the repository root.
    key: the marker's argument: the test file, then what the block is.
    text: what the test printed or measured.
    measured: compare the `shape` only (values vary from run to run).
    root: the repository root.

  With MULTIMODE_EXPORT_UPDATE_DOCS=1 the block is rewritten instead.
  """
  block = generated_block(page, key, root)
  if updating():
    doc_blocks.write_block(page, block, text, root)
    return ''
  shape, normalise = doc_blocks.shape, doc_blocks.normalise
  same = (shape(block.text) == shape(text) if measured
          else normalise(block.text) == normalise(text))
  if same:
    return ''
  return (f'{block.where} ("generated {key}") differs from what the test '
          f'printed; rewrite it with {UPDATE_ENV}=1 python -m pytest -p '
          f'no:xdist {key.split()[0]}:\n' +
          doc_blocks.diff(shape(block.text) if measured else block.text,
                          shape(text) if measured else text))


_CODE = re.compile(r'`([^`]+)`')


def _test_names(cell: str) -> List[str]:
  """The test name patterns a cell names: `test_a_{b,c}` -> test_a_b, ..."""
  names = []
  for span in _CODE.findall(cell):
    if not span.startswith('test_'):
      continue
    braces = re.fullmatch(r'(.*)\{([^}]*)\}(.*)', span)
    names += ([braces.group(1) + part + braces.group(3)
               for part in braces.group(2).split(',')] if braces else [span])
  return names


def rows_naming_test(page: str, test_name: str,
                     root: str = ROOT) -> List[Tuple[Dict[str, str], bool]]:
  """The table rows of `page` whose cells name `test_name` (or a pattern).

  Returns:
    (cells by column header, whether the row names that test alone rather
    than a family of tests such as `test_a_{b,c}`), for each row.
  """
  with open(os.path.join(root, page), encoding='utf-8') as f:
    lines = f.read().split('\n')
  rows, header = [], []
  for line in lines:
    if not line.startswith('|'):
      header = []
      continue
    if not header:
      header = _cells(line)
      continue
    cells = dict(zip(header, _cells(line)))
    names = [n for c in cells.values() for n in _test_names(c)]
    if any(fnmatch.fnmatchcase(test_name, n) for n in names):
      rows.append((cells, names == [test_name]))
  return rows


def shows_message(cell: str, message: str) -> bool:
  """Whether a code span of `cell` shows `message` (`...`, `<tmp>`: any)."""
  for span in _CODE.findall(cell):
    parts = [p.strip() for p in re.split(r'\.\.\.|<tmp>', span)]
    if len(''.join(parts).strip()) > 3 and re.search(
        '.*'.join(re.escape(p) for p in parts), message, re.S):
      return True
  return False

