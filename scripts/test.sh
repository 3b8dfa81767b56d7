#!/usr/bin/env bash
# One command: install into .venv (plus Chromium for the browser tier) and run every test tier.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not browser"` (then the engine pass is skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh requirements-dev.txt
bash scripts/install_browser.sh
export TRANSFER_LAB_SHARED="${TRANSFER_LAB_SHARED:-$(cd .. && pwd)/shared}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
set +e
.venv/bin/python -m pytest "$@"
code=$?
if [ "$#" -eq 0 ]; then
  # The tiers run TensorFlow (exact references); the suites of frozen forward passes run again on
  # the engine users get by default (OpenVINO, bf16 on this CPU), at bf16 tolerances.
  TRANSFER_LAB_ENGINE=auto .venv/bin/python -m pytest -m "engine and not real and not browser and not slow and not cluster" \
    -p no:cacheprovider
  engine_code=$?
  [ "$code" -eq 0 ] && code=$engine_code
fi
set -e
if [ "$code" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure." >&2
  exit 1
fi
exit "$code"
