#!/usr/bin/env bash
# Builds the wheel, installs it in a fresh venv and runs the test suite against
# it from outside the source tree: a module or data file that setup.py fails to
# package makes the tests fail here, which an editable install would hide.
#
# Usage: bash tools/test_wheel.sh [pytest args...]   (default: -q -n 2 tests)
# Work dir: $MULTIMODE_EXPORT_WHEEL_DIR, kept (default: a new temp dir,
# removed at exit).
set -euo pipefail
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
repo="$(cd "$(dirname "$0")/.." && pwd)"
if [ -n "${MULTIMODE_EXPORT_WHEEL_DIR:-}" ]; then
  work="$MULTIMODE_EXPORT_WHEEL_DIR"
else
  # A temp dir of our own (wheel, venv, tree: about 1.7 GB) goes at exit.
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work/dist" "$work/tree"
python3 -m pip wheel -q --no-deps -w "$work/dist" "$repo" </dev/null
wheel="$(ls "$work"/dist/multimode_export-*.whl)"
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q "${wheel}[cpu,test,object-stores]" </dev/null
if [ $# -eq 0 ]; then
  # The whole suite: the warmup tests need the tensorflow-serving-api protos,
  # without the second TensorFlow the package would pull, and the runtime
  # tests tf2onnx and onnxruntime (see .ci/run). Chosen test files (CI's
  # smoke set) do without.
  "$work/venv/bin/pip" install -q --no-deps tensorflow-serving-api==2.15.1 </dev/null
  "$work/venv/bin/pip" install -q tf2onnx==1.17.0 onnx==1.17.0 onnxruntime==1.32.0 \
    onnxruntime-extensions==0.15.2 </dev/null
fi
# The tests and the files they read, without the package sources: the package
# can only come from the wheel. (bazel_build_test checks the source tree's
# BUILD files, which a wheel does not have.)
for entry in tests docs tools README.md setup.py; do
  cp -r "$repo/$entry" "$work/tree/"
done
cd "$work/tree"
if [ $# -eq 0 ]; then set -- -q -n 2 tests; fi
REPO="$repo" "$work/venv/bin/python" - <<'PY'
import multimode_export, os, sys
where = os.path.dirname(multimode_export.__file__)
if 'site-packages' not in where:
  sys.exit(f'multimode_export imported from {where}, not from the wheel')
# Every module of the source tree must be in the wheel and import from it,
# whichever tests run below.
import importlib, pathlib
source = pathlib.Path(os.environ['REPO'], 'multimode_export')
names = sorted('.'.join(('multimode_export',) + p.relative_to(source).with_suffix('').parts)
               .replace('.__init__', '') for p in source.rglob('*.py'))
for name in names:
  module = importlib.import_module(name)
  if 'site-packages' not in module.__file__:
    sys.exit(f'{name} imported from {module.__file__}, not from the wheel')
print(f'testing the wheel installed at {where}: its {len(names)} modules import')
PY
"$work/venv/bin/python" -m pytest \
  --ignore=tests/bazel_build_test.py "$@" </dev/null
