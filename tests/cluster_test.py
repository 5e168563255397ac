"""A real multi-process cluster exporting through MultiModeExporter.

Starts separate processes on 127.0.0.1 with TF_CONFIG (chief, one worker, two
parameter servers and an evaluator), each running `tests/cluster_task.py`,
i.e. `tf.estimator.train_and_evaluate` of an embedding model partitioned
across both parameter servers, exporting into a directory other than
`model_dir` (`export_dir_base`; a second run exports into the moto S3
server). Checks that the evaluator's exports appear,
hold every mode, equal the checkpoint they were made from and serve its
predictions, that old ones are garbage-collected, and that every process
exits. Bounded by HARD_TIMEOUT_SECONDS; every process started here is killed
(by its own process group) whatever happens.
"""
# bazel-data: :cluster_task //docs:distributed.md

import json
import os
import time
from typing import List

from absl import logging
import numpy as np
import tensorflow as tf

from testing import assertions
from testing import clusters
from testing import datasets
from testing import models
from testing import object_stores
from testing import running
from tools import doc_generated
_HERE = os.path.dirname(os.path.abspath(__file__))
HARD_TIMEOUT_SECONDS = 150
MAX_STEPS = 60
SAVE_STEPS = 10
EXPORTS_TO_KEEP = 2
S3_MAX_STEPS = 30
EXPORTER_NAME = 'multimode'


def _evaluated_steps(model_dir: str) -> List[int]:
  """Global steps of the evaluations in the evaluator's event file, in order."""
  steps = []
  for path in sorted(tf.io.gfile.glob(os.path.join(model_dir, 'eval',
                                                   'events.out.tfevents.*'))):
    for event in tf.compat.v1.train.summary_iterator(path):
      if any(v.tag == 'loss' for v in event.summary.value):
        steps.append(event.step)
  return steps


class ClusterTest(tf.test.TestCase):

  def _run_cluster(self, root, export_base, max_steps=MAX_STEPS, env=None):
    """Runs the job; returns (model_dir, record file, seconds it took)."""
    started = time.time()
    deadline = started + HARD_TIMEOUT_SECONDS
    model_dir = os.path.join(root, 'model')
    record_file = os.path.join(root, 'exports.jsonl')
    cluster = clusters.Cluster(
        {'chief': 1, 'worker': 1, 'ps': 2},
        os.path.join(_HERE, 'cluster_task.py'),
        [f'--model_dir={model_dir}', f'--record_file={record_file}',
         f'--max_steps={max_steps}', f'--save_steps={SAVE_STEPS}',
         f'--exports_to_keep={EXPORTS_TO_KEEP}',
         f'--exporter_name={EXPORTER_NAME}',
         f'--export_dir_base={export_base}'], root, env=env)
    try:
      cluster.start('ps', 0)
      cluster.start('ps', 1)
      cluster.start('chief')
      cluster.start('evaluator')
      # The worker joins once the chief has initialized the variables (the
      # first checkpoint), otherwise it would poll for them only every 30 s.
      while not tf.io.gfile.exists(os.path.join(model_dir, 'checkpoint')):
        cluster.wait([], deadline)
        if time.time() > deadline:
          raise TimeoutError('the chief wrote no checkpoint')
        time.sleep(0.2)
      cluster.start('worker')
      cluster.wait(['chief-0', 'worker-0', 'evaluator-0'], deadline)
      # Parameter servers never exit by themselves: the job is done.
      self.assertIsNone(cluster.procs['ps-0'].poll())
      self.assertIsNone(cluster.procs['ps-1'].poll())
    except (TimeoutError, RuntimeError) as e:
      self.fail(f'{e}\n{cluster.log_tails()}')
    finally:
      cluster.kill_all()
    for name in ('chief-0', 'worker-0', 'evaluator-0'):
      self.assertEqual(cluster.procs[name].returncode, 0,
                       cluster.log_tail(name))
    return model_dir, record_file, time.time() - started

  def test_evaluator_exports_from_parameter_server_training(self):
    root = self.create_tempdir().full_path
    # Checkpoints in model_dir, exports published elsewhere.
    export_base = os.path.join(root, 'served', EXPORTER_NAME)
    model_dir, record_file, elapsed = self._run_cluster(root, export_base)
    logging.info('Cluster run took %.1f s', elapsed)
    self.printed = [f'cluster run took {elapsed:.1f} s']
    self.assertLess(elapsed, HARD_TIMEOUT_SECONDS)
    self._check_partitioning(model_dir)
    self._check_exports(model_dir, export_base, record_file)
    print('\n'.join(self.printed))
    # docs/distributed.md shows these lines (with one run's numbers).
    self.assertEqual(doc_generated.disagreement(
        'docs/distributed.md', 'tests/cluster_test.py',
        '\n'.join(self.printed), measured=True), '')

  def test_evaluator_exports_into_s3_from_a_local_model_dir(self):
    # The same job, its exports published into a bucket of the moto S3
    # server on 127.0.0.1; the test process reads it through a worker
    # process (testing.object_stores), as s3:// needs.
    server = object_stores.StoreServer.start('s3')
    self.addCleanup(server.stop)
    base = server.create_bucket() + '/served/' + EXPORTER_NAME
    root = self.create_tempdir().full_path
    model_dir, record_file, _ = self._run_cluster(
        root, base, max_steps=S3_MAX_STEPS, env=server.client_env())
    made = models.read_records(record_file)
    self.assertEqual({r['task_type'] for r in made}, {'evaluator'})
    self.assertTrue(all(r['path'] for r in made), made)
    self.assertGreater(len(made), EXPORTS_TO_KEEP)
    self.assertEqual(made[-1]['checkpoint'],
                     tf.train.latest_checkpoint(model_dir))
    for record in made:
      self.assertEqual(record['path'].rsplit('/', 1)[0], base)
    self.assertFalse(os.path.exists(os.path.join(model_dir, 'export')))
    with object_stores.Worker(server.client_env(),
                              log_path=os.path.join(root, 'reader.log')) as w:
      self.assertEqual(w.call('listdir', base),
                       [r['path'].rsplit('/', 1)[1]
                        for r in made[-EXPORTS_TO_KEEP:]])
      for record in made[-EXPORTS_TO_KEEP:]:
        self.assertEqual(w.call('saved_values', record['path']),
                         w.call('checkpoint_values', record['checkpoint']))
      report = w.call('verify', base)  # loads and runs every tag set
      self.assertTrue(report['ok'], report['text'])
      self.assertEqual(report['export_dir'], made[-1]['path'])

  def _check_partitioning(self, model_dir):
    chief = json.load(open(os.path.join(model_dir, 'task-chief-0.json')))
    worker = json.load(open(os.path.join(model_dir, 'task-worker-0.json')))
    for report in (chief, worker):
      # replica_device_setter places variables round-robin over the PS.
      self.assertCountEqual([report['devices']['embedding/part_0'],
                             report['devices']['embedding/part_1']],
                            ['/job:ps/task:0', '/job:ps/task:1'])
    self.assertGreater(chief['steps'], 0)
    self.assertGreater(worker['steps'], 0)  # two trainers really shared it
    self.printed.append(
        f"steps run: chief {chief['steps']}, worker {worker['steps']}")

  def _check_exports(self, model_dir, base, record_file):
    records = models.read_records(record_file)
    self.assertNotEmpty(records)
    self.assertEqual({r['task_type'] for r in records}, {'evaluator'})
    made = [r for r in records if r['path']]
    self.assertLen(made, len(records))
    steps = [r['global_step'] for r in made]
    # Every evaluation the evaluator logged was exported, each from a newer
    # checkpoint the chief saved, the last from the final one.
    self.assertEqual(steps, _evaluated_steps(model_dir))
    self.assertEqual(steps, sorted(set(steps)))
    saved = tf.train.get_checkpoint_state(model_dir).all_model_checkpoint_paths
    for record in made:
      self.assertIn(record['checkpoint'], saved)
    self.assertEqual(made[-1]['checkpoint'],
                     tf.train.latest_checkpoint(model_dir))
    self.assertGreaterEqual(made[-1]['global_step'], MAX_STEPS)
    self.assertGreater(len(made), EXPORTS_TO_KEEP)
    self.printed.append(f'evaluated and exported at global steps {steps}')
    self.assertFalse(os.path.exists(os.path.join(model_dir, 'export')))
    kept = made[-EXPORTS_TO_KEEP:]
    self.assertEqual(sorted(os.listdir(base)),
                     sorted(os.path.basename(r['path']) for r in kept))
    for record in made[:-EXPORTS_TO_KEEP]:
      self.assertFalse(os.path.exists(record['path']))
    for record in kept:
      # The checkpoint was saved by two parameter servers: two data shards.
      self.assertLen(tf.io.gfile.glob(record['checkpoint'] + '.data-*'), 2)
      assertions.assert_export_matches_checkpoint(self, record['path'],
                                              record['checkpoint'])
      self._check_serving(record['path'], record['checkpoint'])

  def _check_serving(self, export_dir, checkpoint):
    values = assertions.checkpoint_values(checkpoint)
    ids, _ = datasets.make_id_data(n=5, seed=3)
    expected = (values['embedding'][ids].mean(axis=1) @ values['dense'] +
                values['bias'])
    _, session, meta = running.tf1_load(export_dir, ['serve'])
    with session:
      out = running.run_signature(session, meta, 'serving_default',
                                 {'ids': ids})
    np.testing.assert_allclose(out['y'], expected, rtol=1e-5, atol=1e-6)


if __name__ == '__main__':
  tf.test.main()
