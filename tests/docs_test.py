"""docs/api.md is current and documents every public name.

The reference is generated from the docstrings by tools/gen_api_docs.py; this
test fails when it is stale (a docstring or signature changed without
regenerating it) and, like Optax's coverage check, when a name of
`multimode_export.__all__` or a public method is missing from it.
"""

# bazel-data: //docs:api.md

import inspect
import os
import re

from absl import flags
from absl.testing import absltest

import multimode_export
from tools import gen_api_docs

# Under pytest absl's flags are never parsed; create_tempdir() needs them.
if not flags.FLAGS.is_parsed():
  flags.FLAGS.mark_as_parsed()


def read_api_md() -> str:
  with open(gen_api_docs.DEFAULT_OUTPUT, encoding='utf-8') as f:
    return f.read()


def headings(text: str, level: int):
  return re.findall(rf'^{"#" * level} (\S+)$', text, re.M)


class ApiDocsTest(absltest.TestCase):

  def test_api_md_is_current(self):
    self.assertEqual(gen_api_docs.main(['--check']), 0,
                     'docs/api.md is stale: run python tools/gen_api_docs.py')

  def test_check_fails_on_a_stale_file_and_writing_fixes_it(self):
    path = os.path.join(self.create_tempdir().full_path, 'api.md')
    self.assertEqual(gen_api_docs.main(['--check', '--output', path]), 1)
    with open(path, 'w', encoding='utf-8') as f:
      f.write(read_api_md().replace('Exports one SavedModel', 'Old words'))
    self.assertEqual(gen_api_docs.main(['--check', '--output', path]), 1)
    self.assertEqual(gen_api_docs.main(['--output', path]), 0)
    self.assertEqual(gen_api_docs.main(['--check', '--output', path]), 0)
    with open(path, encoding='utf-8') as f:
      self.assertEqual(f.read(), read_api_md())

  def test_every_public_name_has_a_section(self):
    self.assertCountEqual(headings(read_api_md(), 3),
                          multimode_export.__all__)

  def test_every_public_method_has_a_section(self):
    expected = [f'{name}.{method}'
                for name in multimode_export.__all__
                if inspect.isclass(getattr(multimode_export, name))
                for method, _ in gen_api_docs.public_methods(
                    getattr(multimode_export, name))]
    self.assertIn('MultiModeExportMixin.export_all_saved_models', expected)
    self.assertCountEqual(headings(read_api_md(), 4), expected)

  def test_every_public_name_has_a_docstring(self):
    undocumented = [n for n in multimode_export.__all__
                    if not (getattr(multimode_export, n).__doc__ or '').strip()]
    self.assertEqual(undocumented, [])
    self.assertNotIn('*No docstring.*', read_api_md())

  def test_signatures_and_sections_are_rendered(self):
    text = read_api_md()
    self.assertIn('multimode_export.export_all_saved_models(\n    estimator: ',
                  text)
    self.assertIn('    *,\n    allow_links: bool = True,', text)
    self.assertIn('class multimode_export.InvalidModeError(Error, ValueError)',
                  text)
    self.assertIn('- `checkpoint_path`: checkpoint prefix or directory', text)

  def test_google_docstring_to_markdown(self):
    doc = '''Summary line.

    Longer text.

        code_example(1)

    Args:
      x: the first
        argument, continued.
      y (int): the second.

    Returns:
      The result,
      on two lines.

    Raises:
      ValueError, TypeError: when bad.
    '''
    self.assertEqual(gen_api_docs.docstring_markdown(doc), '\n'.join([
        'Summary line.', '', 'Longer text.', '',
        '```python', 'code_example(1)', '```', '',
        '**Args:**', '',
        '- `x`: the first argument, continued.',
        '- `y (int)`: the second.', '',
        '**Returns:**', '', 'The result, on two lines.', '',
        '**Raises:**', '', '- `ValueError`, `TypeError`: when bad.']))

  def test_memory_addresses_are_refused(self):
    sentinel = object()

    def f(x=sentinel):
      del x

    with self.assertRaisesRegex(gen_api_docs.DocsError, 'memory address'):
      gen_api_docs.format_signature('f', inspect.signature(f))


if __name__ == '__main__':
  absltest.main()
