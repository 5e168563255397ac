"""The benchmark pages in docs/benchmarks/ are what their data renders to.

benchmarks/export_cost.py writes the measurements to results.json and renders
results.md from them; benchmarks/small_model.py does the same with
small_model.json and small_model.md, benchmarks/verify_cost.py with
verify.json and verify.md, benchmarks/hostile_scan.py with hostile_scan.json
and hostile_scan.md. A hand edit of a number in a page, or a page left
over from another run, makes this test fail. Re-render with
`python benchmarks/export_cost.py --render`,
`python benchmarks/small_model.py --sm_render` or
`python benchmarks/verify_cost.py --render`.
"""

# bazel-data: //benchmarks:export_cost.py //benchmarks:small_model.py //benchmarks:verify_cost.py //docs:benchmarks/results.json //docs:benchmarks/results.md //docs:benchmarks/small_model.json //docs:benchmarks/small_model.md //docs:benchmarks/verify.json //docs:benchmarks/verify.md //benchmarks:hostile_scan.py //docs:benchmarks/hostile_scan.json //docs:benchmarks/hostile_scan.md

import importlib.util
import json
import os
import sys

from absl.testing import absltest

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_OUT = os.path.join(_ROOT, 'docs', 'benchmarks')


def _benchmark(name: str):
  """benchmarks/<name>.py as a module (benchmarks/ is no package).

  Registered in sys.modules and loaded once: small_model.py and
  verify_cost.py import export_cost by that name, and absl flags are defined
  once per process.
  """
  if name not in sys.modules:
    path = os.path.join(_ROOT, 'benchmarks', f'{name}.py')
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
  return sys.modules[name]


def _read(name: str) -> str:
  with open(os.path.join(_OUT, name), encoding='utf-8') as f:
    return f.read()


class BenchmarkResultsTest(absltest.TestCase):

  def test_results_md_is_rendered_from_results_json(self):
    export_cost = _benchmark('export_cost')
    data = json.loads(_read('results.json'))
    page = _read('results.md')
    tables = page.split(export_cost.BIG_HEADING)[0].rstrip('\n') + '\n'
    self.assertEqual(tables, export_cost.render_markdown(data),
                     'docs/benchmarks/results.md differs from results.json: '
                     'run python benchmarks/export_cost.py --render')

  def test_every_measured_size_is_in_the_page(self):
    data = json.loads(_read('results.json'))
    page = _read('results.md')
    for size, runs in data['sizes'].items():
      gib = runs['_meta']['ckpt_bytes'] / 2**30
      self.assertIn(f'| {gib:.2f} | package |', page, size)

  def _assert_rendered(self, page: str, script: str, render_flag: str):
    """docs/benchmarks/<page>.md is what benchmarks/<script>.py renders
    from <page>.json."""
    self.assertEqual(_read(f'{page}.md'),
                     _benchmark(script).render_markdown(
                         json.loads(_read(f'{page}.json'))),
                     f'docs/benchmarks/{page}.md differs from {page}.json: '
                     f'run python benchmarks/{script}.py {render_flag}')

  def test_small_model_md_is_rendered_from_small_model_json(self):
    self._assert_rendered('small_model', 'small_model', '--sm_render')

  def test_results_md_links_the_other_pages(self):
    for page in ('small_model.md', 'verify.md'):
      self.assertIn(f'({page})', _read('results.md'))

  def test_verify_md_is_rendered_from_verify_json(self):
    self._assert_rendered('verify', 'verify_cost', '--render')

  def test_hostile_scan_md_is_rendered_from_hostile_scan_json(self):
    self._assert_rendered('hostile_scan', 'hostile_scan', '--hs_render')

  def test_verify_json_holds_every_part(self):
    data = json.loads(_read('verify.json'))
    verify_cost = _benchmark('verify_cost')
    self.assertCountEqual([p for p in verify_cost.PARTS if p in data],
                          verify_cost.PARTS)


if __name__ == '__main__':
  absltest.main()
