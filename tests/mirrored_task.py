"""Trains with MirroredStrategy on two logical CPUs and exports each eval.

Run by exporter_test.py in its own process, because logical devices can only
be configured before TensorFlow initializes its runtime. Prints
`replicas=<n>` so the test can check the strategy really mirrored.
"""

from absl import app
from absl import flags
import tensorflow as tf

_MODEL_DIR = flags.DEFINE_string('model_dir', None, 'Model directory.',
                                 required=True)
_RECORD_FILE = flags.DEFINE_string('record_file', None,
                                   'JSON-lines record of export calls.',
                                   required=True)


def main(argv):
  del argv
  cpu = tf.config.list_physical_devices('CPU')[0]
  tf.config.set_logical_device_configuration(
      cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
  from testing import datasets, models, receiver_fns  # pylint: disable=g-import-not-at-top
  # The default NCCL/RING all-reduce hangs on logical CPU devices in graph
  # mode; reducing to one device is what a CPU-only job should use anyway.
  strategy = tf.distribute.MirroredStrategy(
      ['/cpu:0', '/cpu:1'],
      cross_device_ops=tf.distribute.ReductionToOneDevice())
  print(f'replicas={strategy.num_replicas_in_sync}', flush=True)
  estimator = tf.estimator.Estimator(
      models.linear_model_fn, model_dir=_MODEL_DIR.value,
      params={'partitions': 1},
      config=tf.estimator.RunConfig(
          tf_random_seed=1, train_distribute=strategy,
          save_checkpoints_steps=10, keep_checkpoint_max=100))
  exporter = models.RecordingExporter('mirrored', receiver_fns.receiver_map(),
                                      exports_to_keep=2,
                                      record_file=_RECORD_FILE.value)
  tf.estimator.train_and_evaluate(
      estimator,
      tf.estimator.TrainSpec(datasets.input_fn(), max_steps=20),
      tf.estimator.EvalSpec(datasets.input_fn(seed=1), steps=2,
                            exporters=[exporter], start_delay_secs=0,
                            throttle_secs=0))


if __name__ == '__main__':
  app.run(main)
