"""Tests for integration/_distribution: the setup warnings of distributed jobs.

The failures they warn about are measured on real clusters by
`strategy_cluster_test.py` (set up right there: no warning in its
evaluator's log).
"""
# bazel-data: //docs:distributed.md

import json
import os
from unittest import mock

from absl.testing import parameterized
import tensorflow as tf

import multimode_export
from multimode_export.integration import _distribution as distribution
from testing import receiver_fns

_TRAINERS = {'chief': ['127.0.0.1:1'], 'worker': ['127.0.0.1:2']}


def _config(task_type, cluster=None):
  return {'cluster': _TRAINERS if cluster is None else cluster,
          'task': {'type': task_type, 'index': 0}}


class SetupProblemsTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ('no_tf_config', {}, True, []),
      ('single_machine_eager', {'cluster': {}}, True, []),
      ('chief_graph_mode', _config('chief'), False, []),
      ('chief_eager', _config('chief'), True, ['eager']),
      ('evaluator_listed_graph_mode',
       _config('evaluator', dict(_TRAINERS, evaluator=['127.0.0.1:3'])),
       False, []),
      ('evaluator_not_listed', _config('evaluator'), False, ['evaluator']),
      ('evaluator_not_listed_eager', _config('evaluator'), True,
       ['eager', 'evaluator']),
      ('malformed_task', {'cluster': _TRAINERS, 'task': 'evaluator'}, False,
       []),
  )
  def test_problems(self, tf_config, eager, expected):
    problems = distribution.setup_problems(tf_config, eager)
    kinds = [('eager' if p == distribution.EAGER_ON else 'evaluator')
             for p in problems]
    self.assertEqual(kinds, expected)

  def test_evaluator_message_names_the_jobs_and_the_fix(self):
    [problem] = distribution.setup_problems(_config('evaluator'), False)
    self.assertIn("jobs ['chief', 'worker']", problem)
    self.assertIn('"evaluator": ["host:port"]', problem)
    self.assertIn("KeyError: 'evaluator'", problem)

  def test_read_tf_config(self):
    self.assertEqual(distribution.read_tf_config({}), {})
    self.assertEqual(distribution.read_tf_config({'TF_CONFIG': '{nope'}), {})
    self.assertEqual(distribution.read_tf_config({'TF_CONFIG': '[1]'}), {})
    config = _config('chief')
    self.assertEqual(
        distribution.read_tf_config({'TF_CONFIG': json.dumps(config)}), config)


class ExporterWarnsTest(tf.test.TestCase):
  """The exporter logs the warnings when it is constructed."""

  def _construct(self, tf_config):
    with mock.patch.dict(os.environ, {'TF_CONFIG': json.dumps(tf_config)}):
      with self.assertLogs(level='WARNING') as logs:
        multimode_export.MultiModeExporter('e', receiver_fns.receiver_map())
    return '\n'.join(logs.output)

  def test_evaluator_in_eager_mode_outside_the_cluster(self):
    self.assertTrue(tf.executing_eagerly())  # the test process's default
    logged = self._construct(_config('evaluator'))
    self.assertIn("Exporter 'e': TF_CONFIG describes a cluster and eager "
                  'execution is on', logged)
    self.assertIn('tf.compat.v1.disable_eager_execution()', logged)
    self.assertIn("Exporter 'e': this task is the evaluator and TF_CONFIG's "
                  "cluster has no 'evaluator' job", logged)

  def test_docs_show_the_messages_as_logged(self):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, 'docs', 'distributed.md')) as f:
      page = f.read()
    for problem in distribution.setup_problems(_config('evaluator'), True):
      self.assertIn(f"Exporter 'multimode': {problem} (docs/distributed.md).",
                    page)

  def test_nothing_without_a_cluster(self):
    with mock.patch.dict(os.environ, {'TF_CONFIG': ''}):
      self.assertEqual(distribution.warn_about_setup('e'), [])


if __name__ == '__main__':
  tf.test.main()
