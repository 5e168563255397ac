"""The benchmark pages in docs/benchmarks/ are what their data renders to.

benchmarks/export_cost.py writes the measurements to results.json and renders
results.md from them; every other benchmark script does the same with a page
of its own (small_model, verify, durability, convert, converter,
hostile_scan: see benchmarks/README.md). A hand edit of a number in a page, or
a page left over from another run, makes this test fail. Re-render with the
script's render flag (`--render`; small_model.py: `--sm_render`,
hostile_scan.py: `--hs_render`, converter_cost.py: `--converter_render`).
"""

# bazel-data: //benchmarks:export_cost.py //benchmarks:small_model.py //benchmarks:verify_cost.py //docs:benchmarks/results.json //docs:benchmarks/results.md //docs:benchmarks/small_model.json //docs:benchmarks/small_model.md //docs:benchmarks/verify.json //docs:benchmarks/verify.md //benchmarks:durability.py //docs:benchmarks/durability.json //docs:benchmarks/durability.md //benchmarks:convert_cost.py //docs:benchmarks/convert.json //docs:benchmarks/convert.md //benchmarks:hostile_scan.py //docs:benchmarks/hostile_scan.json //docs:benchmarks/hostile_scan.md //benchmarks:converter_cost.py //docs:benchmarks/converter.json //docs:benchmarks/converter.md

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

  def test_durability_md_is_rendered_from_durability_json(self):
    self._assert_rendered('durability', 'durability', '--render')

  def test_durability_json_holds_both_sizes_and_every_contender(self):
    data = json.loads(_read('durability.json'))
    durability = _benchmark('durability')
    self.assertCountEqual(data['sizes'], durability.DEFAULT_SIZES)
    for size in data['sizes'].values():
      for state, contenders in durability.CONTENDERS.items():
        self.assertCountEqual(size['runs'][state], contenders)
        for runs in size['runs'][state].values():
          self.assertLen(runs, size['repeats'])

  def test_hostile_scan_md_is_rendered_from_hostile_scan_json(self):
    self._assert_rendered('hostile_scan', 'hostile_scan', '--hs_render')

  def test_verify_json_holds_every_part(self):
    data = json.loads(_read('verify.json'))
    verify_cost = _benchmark('verify_cost')
    self.assertCountEqual([p for p in verify_cost.PARTS if p in data],
                          verify_cost.PARTS)

  def test_convert_md_is_rendered_from_convert_json(self):
    self._assert_rendered('convert', 'convert_cost', '--render')

  def test_converter_md_is_rendered_from_converter_json(self):
    self._assert_rendered('converter', 'converter_cost', '--converter_render')


if __name__ == '__main__':
  absltest.main()
