"""pytest setup: absltest's tempdir helpers need absl flags to be parsed."""

from absl import flags

if not flags.FLAGS.is_parsed():
  flags.FLAGS.mark_as_parsed()
