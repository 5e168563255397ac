"""Shared test fixtures by kind: datasets, models, receiver_fns, running (load and run an export), assertions
(compare with stock and the checkpoint) and faults. Imported as `from testing import models` with `tests/` on
sys.path (tests/conftest.py puts it there for pytest; Bazel targets get it through `imports`)."""
