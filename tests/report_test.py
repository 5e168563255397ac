"""Recorder: checks in report order, also when one is recorded later."""

from absl.testing import absltest

from multimode_export.checks import _report as report_lib


def _names(recorder):
  return [c.name for c in recorder.results]


class RecorderTest(absltest.TestCase):

  def test_a_reserved_place_keeps_the_order(self):
    recorder = report_lib.Recorder()
    recorder.run('first', (), lambda: 'ok')
    later = recorder.reserve()
    dropped = recorder.reserve()
    recorder.skip('third', ('serve',), 'not run')
    recorder.fail('fourth', ('serve',), 'broken')
    recorder.drop(dropped)
    self.assertFalse(recorder.run(
        'second', (), lambda: 1 / 0, place=later))
    self.assertEqual(_names(recorder), ['first', 'second', 'third', 'fourth'])
    second = recorder.results[1]
    self.assertEqual((second.ok, second.detail),
                     (False, 'ZeroDivisionError: division by zero'))

  def test_fail_and_skip_fill_a_place(self):
    recorder = report_lib.Recorder()
    failed, skipped = recorder.reserve(), recorder.reserve()
    recorder.run('last', (), lambda: 'ok')
    recorder.skip('skipped', (), 'why', place=skipped)
    recorder.fail('failed', (), 'why', place=failed)
    self.assertEqual(_names(recorder), ['failed', 'skipped', 'last'])

  def test_an_unfilled_place_is_an_error(self):
    recorder = report_lib.Recorder()
    place = recorder.reserve()
    with self.assertRaisesRegex(RuntimeError, 'never filled'):
      recorder.results  # pylint: disable=pointless-statement
    recorder.run('check', (), lambda: 'ok', place=place)
    with self.assertRaisesRegex(ValueError, 'place'):
      recorder.drop(place)


if __name__ == '__main__':
  absltest.main()
