"""Pins the public API: `multimode_export.__all__` and what it names."""

import inspect

from absl.testing import absltest

import multimode_export

# Changing the public API is a decision: update this list with it.
EXPECTED_ALL = (
    'AssetsExtraError',
    'CheckResult',
    'CheckpointNotFoundError',
    'CheckpointReadError',
    'ConversionError',
    'Error',
    'EvalMetrics',
    'ExportDirError',
    'ExportError',
    'InvalidModeError',
    'MissingVariablesError',
    'ModelFnError',
    'MultiModeExportMixin',
    'MultiModeExporter',
    'NotASavedModelError',
    'PublishError',
    'RawSignatureError',
    'ReceiverError',
    'ServingSignatures',
    'TrainStep',
    'UnloadableGraphError',
    'VariableMismatchError',
    'VerificationError',
    'VerifyReport',
    'WarmupRequestsError',
    'choose_variables_carrier',
    'convert_to_tf2',
    'export_all_saved_models',
    'export_saved_models_per_mode',
    'inspect',
    'load_mode',
    'verify',
)


class ApiTest(absltest.TestCase):

  def test_all_is_pinned(self):
    self.assertEqual(tuple(multimode_export.__all__), EXPECTED_ALL)

  def test_all_is_sorted_and_unique(self):
    names = list(multimode_export.__all__)
    self.assertEqual(names, sorted(set(names)))

  def test_every_name_exists_and_is_documented(self):
    for name in multimode_export.__all__:
      value = getattr(multimode_export, name)
      self.assertTrue(inspect.getdoc(value), f'{name} has no docstring')

  def test_no_undeclared_public_names(self):
    public = {n for n, v in vars(multimode_export).items()
              if not n.startswith('_') and not inspect.ismodule(v)}
    self.assertEqual(public, set(multimode_export.__all__))

  def test_exceptions_derive_from_error(self):
    for name in multimode_export.__all__:
      value = getattr(multimode_export, name)
      if inspect.isclass(value) and issubclass(value, BaseException):
        self.assertTrue(issubclass(value, multimode_export.Error), name)

  def test_version(self):
    self.assertRegex(multimode_export.__version__, r'^\d+\.\d+\.\d+')


if __name__ == '__main__':
  absltest.main()
