"""Real clusters trained with tf.distribute strategies, exporting on the evaluator.

Each task is a separate process on 127.0.0.1 running `tests/strategy_task.py`
with its `TF_CONFIG` (`testing.clusters`):

* `MultiWorkerMirroredStrategy`: chief + worker + evaluator;
* `tf.compat.v1.distribute.experimental.ParameterServerStrategy`: chief +
  worker + 2 parameter servers (the embedding partitioned over them) +
  evaluator.

Every task turns eager execution off first and the evaluator is listed in
the cluster (what docs/distributed.md tells users to set); one more test
runs a MultiWorkerMirroredStrategy evaluator outside the cluster, which
the exporter warns about before the strategy fails. Each export the
evaluator's `MultiModeExporter` made must hold every mode, equal the
checkpoint it was made from variable by variable (the global step stored in
it included, which under asynchronous PS training can be past the step in
the file name), and serve what `Estimator.predict` gives for that
checkpoint. Bounded by HARD_TIMEOUT_SECONDS; every process started is
killed (its process group) and reaped whatever happens.
"""
# bazel-data: :strategy_task //docs:distributed.md

import os
import time

from absl import logging
import numpy as np
import tensorflow as tf

from multimode_export.integration import _distribution as distribution
from testing import assertions
from testing import clusters
from testing import datasets
from testing import models
from testing import running
from tools import doc_generated

_HERE = os.path.dirname(os.path.abspath(__file__))
HARD_TIMEOUT_SECONDS = 120
EXPORTS_TO_KEEP = 2
# strategy -> (jobs besides the evaluator, max_steps, embedding partitions)
_SETUPS = {
    'mwms': ({'chief': 1, 'worker': 1}, 20, 1),
    'ps': ({'chief': 1, 'worker': 1, 'ps': 2}, 30, 2),
}


class StrategyClusterTest(tf.test.TestCase):

  def _run_cluster(self, strategy):
    """Runs the job; returns (model_dir, export base, records, printed)."""
    jobs, max_steps, _ = _SETUPS[strategy]
    started = time.time()
    deadline = started + HARD_TIMEOUT_SECONDS
    root = self.create_tempdir().full_path
    model_dir = os.path.join(root, 'model')
    base = os.path.join(root, 'served')
    record_file = os.path.join(root, 'exports.jsonl')
    started_dir = os.path.join(root, 'started')
    os.mkdir(started_dir)
    cluster = clusters.Cluster(
        dict(jobs, evaluator=1), os.path.join(_HERE, 'strategy_task.py'),
        [f'--model_dir={model_dir}', f'--record_file={record_file}',
         f'--strategy={strategy}', f'--max_steps={max_steps}',
         '--save_steps=10', f'--export_dir_base={base}',
         f'--started_dir={started_dir}'], root)
    self.addCleanup(cluster.kill_all)  # whatever happens
    try:
      for index in range(jobs.get('ps', 0)):
        cluster.start('ps', index)
      # A PS worker waits for the chief's session itself (strategy_task).
      for task_type in ('chief', 'worker', 'evaluator'):
        cluster.start(task_type)
      cluster.wait(['chief-0', 'worker-0', 'evaluator-0'], deadline)
      for index in range(jobs.get('ps', 0)):  # they never exit by themselves
        self.assertIsNone(cluster.procs[f'ps-{index}'].poll())
    except (TimeoutError, RuntimeError) as e:
      self.fail(f'{e}\n{cluster.log_tails()}')
    finally:
      cluster.kill_all()
    elapsed = time.time() - started
    logging.info('%s cluster run took %.1f s', strategy, elapsed)
    evaluator_log = open(cluster.log_path('evaluator-0')).read()
    for problem in distribution.setup_problems(
        {'cluster': {'chief': ['x']}, 'task': {'type': 'evaluator'}}, True):
      self.assertNotIn(problem[:40], evaluator_log)  # set up as documented
    steps = {}
    for task in ('chief-0', 'worker-0'):  # both trainers really trained
      with open(os.path.join(started_dir, task + '.steps')) as f:
        steps[task] = int(f.read())
      self.assertGreater(steps[task], 0, task)
    return (model_dir, base, models.read_records(record_file),
            [f'{strategy}: cluster run took {elapsed:.1f} s',
             f"{strategy}: steps run: chief {steps['chief-0']}, worker "
             f"{steps['worker-0']}"])

  def _check_exports(self, strategy, model_dir, base, records):
    _, max_steps, partitions = _SETUPS[strategy]
    self.assertNotEmpty(records)
    self.assertEqual({r['task_type'] for r in records}, {'evaluator'})
    self.assertTrue(all(r['path'] for r in records), records)
    for record in records:  # the evaluation read the same checkpoint
      self.assertEqual(record['global_step'], record['stored_step'], record)
    self.assertEqual(records[-1]['checkpoint'],
                     tf.train.latest_checkpoint(model_dir))
    self.assertGreaterEqual(records[-1]['stored_step'], max_steps)
    kept = records[-EXPORTS_TO_KEEP:]
    self.assertEqual(sorted(os.listdir(base)),
                     sorted(os.path.basename(r['path']) for r in kept))
    estimator = tf.estimator.Estimator(
        models.embedding_model_fn, model_dir=model_dir,
        params={'partitions': partitions})
    for record in kept:
      checkpoint = record['checkpoint']
      self.assertLen(tf.io.gfile.glob(checkpoint + '.data-*'),
                     2 if strategy == 'ps' else 1)
      # The exported global_step is the one stored in the checkpoint.
      assertions.assert_export_matches_checkpoint(self, record['path'],
                                                  checkpoint)
      self.assertEqual(running.meta_graph_tags(record['path']),
                       [['eval'], ['serve'], ['train']])
      self._check_serving(estimator, record['path'], checkpoint)
    named = [int(r['checkpoint'].rsplit('-', 1)[1]) for r in records]
    return (f'{strategy}: exported checkpoints {named}, global steps stored '
            f'in them {[r["stored_step"] for r in records]}')

  def _check_serving(self, estimator, export_dir, checkpoint):
    ids, _ = datasets.make_id_data(n=5, seed=3)
    predicted = next(estimator.predict(
        lambda: tf.data.Dataset.from_tensors({'ids': ids}),
        checkpoint_path=checkpoint, yield_single_examples=False))['y']
    _, session, meta = running.tf1_load(export_dir, ['serve'])
    with session:
      served = running.run_signature(session, meta, 'serving_default',
                                    {'ids': ids})['y']
    np.testing.assert_allclose(served, predicted, rtol=1e-6, atol=1e-7)

  def _test(self, strategy):
    model_dir, base, records, printed = self._run_cluster(strategy)
    printed.append(self._check_exports(strategy, model_dir, base, records))
    print('\n'.join(printed))
    return printed

  def test_multi_worker_mirrored_strategy(self):
    printed = self._test('mwms')
    self._check_doc(printed, 'mwms')

  def test_parameter_server_strategy(self):
    printed = self._test('ps')
    self._check_doc(printed, 'ps')

  def test_mwms_evaluator_outside_the_cluster_is_told_what_to_set(self):
    # The mistake, for real: the evaluator is not in TF_CONFIG's cluster.
    # The exporter (constructed before the strategy) logs what to set; then
    # creating the strategy fails, before any evaluation.
    root = self.create_tempdir().full_path
    cluster = clusters.Cluster(
        {'chief': 1, 'worker': 1}, os.path.join(_HERE, 'strategy_task.py'),
        [f'--model_dir={os.path.join(root, "model")}',
         f'--record_file={os.path.join(root, "exports.jsonl")}',
         '--strategy=mwms'], root)
    self.addCleanup(cluster.kill_all)
    cluster.start('evaluator')
    evaluator = cluster.procs['evaluator-0']
    try:
      evaluator.wait(timeout=HARD_TIMEOUT_SECONDS)
    finally:
      cluster.kill_all()
    self.assertNotEqual(evaluator.returncode, 0)
    with open(cluster.log_path('evaluator-0')) as f:
      log = f.read()
    [problem] = distribution.setup_problems(
        {'cluster': cluster.cluster, 'task': {'type': 'evaluator'}}, False)
    warned = log.find(f"Exporter 'multimode': {problem}")
    failed = log.find("KeyError: 'evaluator'")
    self.assertGreaterEqual(warned, 0, log[-3000:])
    self.assertGreater(failed, warned, log[-3000:])

  def _check_doc(self, printed, key):
    # docs/distributed.md shows these lines (with one run's numbers).
    self.assertEqual(doc_generated.disagreement(
        'docs/distributed.md', f'tests/strategy_cluster_test.py {key}',
        '\n'.join(printed), measured=True), '')


if __name__ == '__main__':
  tf.test.main()
