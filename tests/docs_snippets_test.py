"""Every code block of README.md and docs/*.md runs and shows what it prints.

`tools/doc_snippets.py` classifies the fenced blocks (by language and by a
`<!-- docs-test: ... -->` marker, see docs/testing.md) and runs one page's
blocks in order, in one fresh process and a new temporary directory. One
test per page fails on a block that raises or exits non-zero, or whose
shown output differs from what it printed. The other tests pin the
extractor's rules on small pages written here.
"""

# It runs the pages in the checkout (its .venv, tools/ and every page's
# files), which Bazel's sandbox does not have: pytest runs it, Bazel does not.
# bazel-tags: manual

import os
import textwrap

from absl import flags
from absl.testing import absltest
from absl.testing import parameterized

from tools import doc_blocks
from tools import doc_snippets

# Under pytest absl's flags are never parsed; create_tempdir() needs them.
if not flags.FLAGS.is_parsed():
  flags.FLAGS.mark_as_parsed()


def _name(page: str) -> str:
  return os.path.splitext(page)[0].replace('/', '_')


def _report(problems) -> str:
  return '\n\n'.join(f'{p.block.where}: {p.message}' for p in problems)


@absltest.skipIf('TEST_SRCDIR' in os.environ,
                 'under Bazel: the pages run under pytest in the same CI run; '
                 'twice would double their time')
class PagesTest(parameterized.TestCase):
  """Runs each page; any failing block or differing output fails it."""

  @parameterized.named_parameters(
      (_name(page), page) for page in doc_blocks.pages())
  def test_page(self, page):
    workdir = doc_snippets.make_workdir(self.create_tempdir().full_path)
    _, problems = doc_snippets.check_page(page, workdir)
    self.assertEmpty(problems, f'{page}:\n{_report(problems)}\nFix the page, '
                     f'or run: python tools/doc_snippets.py --update {page}')

  def test_every_page_parses_and_generated_blocks_name_their_test(self):
    for page in doc_blocks.pages():
      for block in doc_blocks.parse(page):
        if block.kind == 'generated':
          source = os.path.join(doc_blocks.ROOT, block.arg.split()[0])
          self.assertTrue(os.path.exists(source), block.where)
          with open(source, encoding='utf-8') as f:
            self.assertTrue(page in f.read(), f'{block.where}: {source} does '
                            'not name the page it writes')


class QuotationsTest(absltest.TestCase):

  def test_quoted_measurements_are_in_their_results_file(self):
    found = [q for page in doc_blocks.pages()
             for q in doc_blocks.quotations(page)]
    self.assertNotEmpty(found)
    for where, source, missing in found:
      self.assertEqual(missing, [], f'{where} quotes numbers {source} does '
                       'not have: update the quote (or re-run the benchmark)')


class ExtractorTest(absltest.TestCase):
  """The extractor's rules, on pages written into a temporary root."""

  def _page(self, text: str) -> str:
    self.root = self.create_tempdir().full_path
    os.makedirs(os.path.join(self.root, 'docs'))
    with open(os.path.join(self.root, 'docs', 'page.md'), 'w') as f:
      f.write(textwrap.dedent(text))
    return 'docs/page.md'

  def _check(self, text: str):
    page = self._page(text)
    workdir = doc_snippets.make_workdir(self.create_tempdir().full_path,
                                        self.root)
    return doc_snippets.check_page(page, workdir, self.root)

  def test_classification(self):
    page = self._page('''\
        ```python
        x = 1
        ```
        <!-- docs-test: output -->
        ```text
        1
        ```
        ```console
        $ echo a \\
            b
        a b
        $ true
        ```
        <!-- docs-test: skip needs a cloud bucket -->
        ```sh
        gsutil ls gs://bucket
        ```
        <!-- docs-test: file f.py -->
          ```python
          print(2)
          ```
        ```json
        {}
        ```
        ''')
    blocks = doc_blocks.parse(page, self.root)
    self.assertEqual([(b.kind, b.arg) for b in blocks], [
        ('python', ''), ('output', ''), ('console', ''),
        ('skip', 'needs a cloud bucket'), ('file', 'f.py'), ('shown', '')])
    self.assertEqual(blocks[4].text, 'print(2)')
    commands = doc_blocks.console_commands(blocks[2])
    self.assertEqual([(c.text, c.expected) for c in commands],
                     [('echo a \\\n    b', 'a b'), ('true', '')])

  def test_unlabelled_fences_and_bad_markers_are_refused(self):
    for text, message in [
        ('```\nx\n```\n', 'without a language'),
        ('<!-- docs-test: sikp x -->\n```python\n```\n', "unknown .* 'sikp'"),
        ('<!-- docs-test: skip -->\n```python\n```\n', 'needs an argument'),
        ('```python\nx\n', 'unclosed fence')]:
      page = self._page(text)
      with self.assertRaisesRegex(doc_blocks.DocsError, message):
        doc_blocks.parse(page, self.root)

  def test_blocks_share_a_namespace_and_a_directory_in_order(self):
    _, problems = self._check('''\
        ```python
        import os
        with open('made.txt', 'w') as f:
          f.write('hello')
        n = 41
        ```
        ```console
        $ cat made.txt
        hello
        ```
        ```python
        print(n + 1, os.path.basename(os.getcwd()).startswith('docs-'))
        ```
        <!-- docs-test: output -->
        ```text
        42 True
        ```
        ''')
    self.assertEmpty(problems, _report(problems))

  def test_a_changed_output_fails_and_update_writes_the_printed_one(self):
    text = '''\
        ```python
        print('printed', 1795537890)
        ```
        <!-- docs-test: output -->
        ```text
        shown 1795537890
        ```
        ```console
        $ echo one; echo two
        one
        three
        ```
        '''
    blocks, problems = self._check(text)
    self.assertLen(problems, 2)
    self.assertIn('-shown <version>\n+printed <version>', problems[0].message)
    self.assertIn('-three\n+two', problems[1].message)
    self.assertEqual(doc_snippets.update_page('docs/page.md', problems,
                                              self.root), 2)
    workdir = doc_snippets.make_workdir(self.create_tempdir().full_path,
                                        self.root)
    _, problems = doc_snippets.check_page('docs/page.md', workdir, self.root)
    self.assertEmpty(problems, _report(problems))
    del blocks

  def test_a_failing_block_stops_the_page(self):
    _, problems = self._check('''\
        ```python
        raise ValueError('broken snippet')
        ```
        ```console
        $ echo never
        never
        ```
        ```console
        $ false
        ```
        ''')
    self.assertLen(problems, 2)
    self.assertIn("ValueError: broken snippet", problems[0].message)
    self.assertIn('not run, nor the 1 blocks after it', problems[1].message)

  def test_a_failing_command_fails(self):
    _, problems = self._check('```console\n$ ls no-such-file\n```\n')
    self.assertLen(problems, 1)
    self.assertIn('exited 2', problems[0].message)

  def test_normalisation_and_ellipsis(self):
    workdir = '/tmp/docs-abc'
    self.assertTrue(doc_blocks.matches(
        'Wrote export/1795535548 in 0.31 s with TensorFlow 2.15.1\n',
        'Wrote /tmp/docs-abc/export/1795999999 in 12.5 s with TensorFlow '
        '2.14.1   \n\n', workdir))
    self.assertTrue(doc_blocks.matches('first\n...\nlast: ... done',
                                         'first\nx\ny\nlast: 3 of 4 done'))
    self.assertTrue(doc_blocks.matches('first\n...\nlast', 'first\nlast'))
    self.assertFalse(doc_blocks.matches('first\nlast', 'first\nx\nlast'))
    self.assertFalse(doc_blocks.matches('a 12 B', 'a 13 B'))
    self.assertFalse(doc_blocks.matches('loss 0.3924', 'loss 0.3925'))

  def test_quotations(self):
    page = self._page('''\
        <!-- docs-test: quotes docs/results.md -->
        | a | 0.34 s | 8.2 s |

        9.9 is not quoted.
        ''')
    with open(os.path.join(self.root, 'docs', 'results.md'), 'w') as f:
      f.write('| 0.34 | 8.16 |')
    self.assertEqual(doc_blocks.quotations(page, self.root),
                     [('docs/page.md:1', 'docs/results.md', ['8.2'])])

  def test_ci_blocks_must_be_in_the_ci_script(self):
    page = self._page('<!-- docs-test: ci -->\n```sh\necho from-ci\n'
                      'echo not-there\n```\n')
    os.makedirs(os.path.join(self.root, '.ci'))
    with open(os.path.join(self.root, '.ci', 'run'), 'w') as f:
      f.write('set -e\necho from-ci </dev/null\n')
    workdir = doc_snippets.make_workdir(self.create_tempdir().full_path,
                                        self.root)
    _, problems = doc_snippets.check_page(page, workdir, self.root)
    self.assertEqual([p.message for p in problems],
                     ["marked \"ci\" but .ci/run has no line 'echo not-there'"])

  def test_blocks_needing_a_missing_path_fail_only_in_ci(self):
    text = ('<!-- docs-test: needs /no/such/python -->\n'
            '```console\n$ /no/such/python -V\n```\n')
    for ci, expected in (('', 0), ('true', 1)):
      with absltest.mock.patch.dict(os.environ, {'CI': ci}):
        _, problems = self._check(text)
      self.assertLen(problems, expected)


if __name__ == '__main__':
  absltest.main()
