#!/usr/bin/env bash
# One command: install into .venv (plus Chromium for the browser tier) and run every test tier.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not browser"`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh requirements-dev.txt
bash scripts/install_browser.sh
export TRANSFER_LAB_SHARED="${TRANSFER_LAB_SHARED:-$(cd .. && pwd)/shared}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
set +e
.venv/bin/python -m pytest "$@"
code=$?
set -e
if [ "$code" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure." >&2
  exit 1
fi
exit "$code"
