"""docs/benchmarks/*.md are what the benchmarks render from their data.

benchmarks/export_cost.py writes the measurements to results.json and renders
results.md from them; benchmarks/small_model.py writes small_model.json and
renders small_model.md. A hand edit of a number in a page, or a page left over
from another run, makes this test fail. Re-render with
`python benchmarks/export_cost.py --render` and
`python benchmarks/small_model.py --sm_render`.
"""

# bazel-data: //benchmarks:export_cost.py //benchmarks:small_model.py //docs:benchmarks/results.json //docs:benchmarks/results.md //docs:benchmarks/small_model.json //docs:benchmarks/small_model.md

import importlib.util
import json
import os
import sys

from absl.testing import absltest

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_OUT = os.path.join(_ROOT, 'docs', 'benchmarks')


def _benchmark(name: str):
  """benchmarks/<name>.py as a module (benchmarks/ is no package).

  Loaded once and registered under its name: small_model.py imports
  export_cost, and their absl flags must be defined once.
  """
  if name in sys.modules:
    return sys.modules[name]
  path = os.path.join(_ROOT, 'benchmarks', name + '.py')
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module
  spec.loader.exec_module(module)
  return module


def _export_cost():
  return _benchmark('export_cost')


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

  def test_small_model_md_is_rendered_from_small_model_json(self):
    small_model = _benchmark('small_model')
    with open(os.path.join(_OUT, 'small_model.json'), encoding='utf-8') as f:
      data = json.load(f)
    with open(os.path.join(_OUT, 'small_model.md'), encoding='utf-8') as f:
      page = f.read()
    self.assertEqual(page, small_model.render_markdown(data),
                     'docs/benchmarks/small_model.md differs from '
                     'small_model.json: run python benchmarks/small_model.py '
                     '--sm_render')

  def test_results_md_links_the_small_model_page(self):
    with open(os.path.join(_OUT, 'results.md'), encoding='utf-8') as f:
      self.assertIn('(small_model.md)', f.read())


if __name__ == '__main__':
  absltest.main()
