#!/usr/bin/env bash
# Sets up, then runs the whole test suite under the TensorFlow backend and again under JAX.
# Extra arguments go to both pytest runs (e.g. `-m "not slow"` or `-k attention`).
# Tests run in KZOO_TEST_WORKERS processes (default 2, pytest-xdist; 0 runs in-process).
set -uo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh || exit 1
bash tools/install_browser.sh  # Chromium for the attention page's browser test; prints why not and goes on
export TF_CPP_MIN_LOG_LEVEL=2 PYTHONHASHSEED=0
status=0
for backend in tensorflow jax; do
  echo "=== pytest with KERAS_BACKEND=$backend"
  KERAS_BACKEND=$backend .venv/bin/python -m pytest -n "${KZOO_TEST_WORKERS:-2}" "$@"
  code=$?
  if [ $code -eq 5 ]; then
    echo "pytest collected no tests under $backend: the suite is missing or deselected entirely" >&2
  fi
  [ $code -eq 0 ] || status=1
done
exit $status
