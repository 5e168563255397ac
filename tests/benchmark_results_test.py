"""docs/benchmarks/results.md is what the benchmark renders from its data.

benchmarks/export_cost.py writes the measurements to results.json and renders
results.md from them; a hand edit of a number in the page, or a page left over
from another run, makes this test fail. Re-render with
`python benchmarks/export_cost.py --render`.
"""

# bazel-data: //benchmarks:export_cost.py //docs:benchmarks/results.json //docs:benchmarks/results.md

import importlib.util
import json
import os

from absl.testing import absltest

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_OUT = os.path.join(_ROOT, 'docs', 'benchmarks')


def _export_cost():
  """benchmarks/export_cost.py as a module (benchmarks/ is no package)."""
  path = os.path.join(_ROOT, 'benchmarks', 'export_cost.py')
  spec = importlib.util.spec_from_file_location('export_cost', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


class BenchmarkResultsTest(absltest.TestCase):

  def test_results_md_is_rendered_from_results_json(self):
    export_cost = _export_cost()
    with open(os.path.join(_OUT, 'results.json'), encoding='utf-8') as f:
      data = json.load(f)
    with open(os.path.join(_OUT, 'results.md'), encoding='utf-8') as f:
      page = f.read()
    tables = page.split(export_cost.BIG_HEADING)[0].rstrip('\n') + '\n'
    self.assertEqual(tables, export_cost.render_markdown(data),
                     'docs/benchmarks/results.md differs from results.json: '
                     'run python benchmarks/export_cost.py --render')

  def test_every_measured_size_is_in_the_page(self):
    with open(os.path.join(_OUT, 'results.json'), encoding='utf-8') as f:
      data = json.load(f)
    with open(os.path.join(_OUT, 'results.md'), encoding='utf-8') as f:
      page = f.read()
    for size, runs in data['sizes'].items():
      gib = runs['_meta']['ckpt_bytes'] / 2**30
      self.assertIn(f'| {gib:.2f} | package |', page, size)


if __name__ == '__main__':
  absltest.main()
