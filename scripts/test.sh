#!/usr/bin/env bash
# One command: install into .venv (plus Chromium for the browser tier) and run every test tier.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not browser"` (then one pytest, no engine pass).
#
# Without arguments the tiers run as two pytest processes side by side: the served-app tiers
# (browser, attack, cluster: mostly waiting on servers, Chromium and worker processes) and the
# slow trainings beside the library tiers (fast, real: mostly TensorFlow on the CPU), so the
# waits of the one overlap the computing of the other on a 2-core machine (the slow trainings
# even out the two: 23 and 32 min without them). Each has its own temporary folder; the
# served-app log is printed when both have ended. Then the engine pass.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh requirements-dev.txt
bash scripts/install_browser.sh
export TRANSFER_LAB_SHARED="${TRANSFER_LAB_SHARED:-$(cd .. && pwd)/shared}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
if [ "$#" -gt 0 ]; then
  exec .venv/bin/python -m pytest "$@"
fi
SERVED="browser or attack or cluster or slow"
scratch="$(mktemp -d -t transfer-lab-tests.XXXXXX)"
trap 'rm -rf "$scratch"' EXIT
set +e
.venv/bin/python -m pytest -m "$SERVED" --basetemp "$scratch/served" -p no:cacheprovider \
  > "$scratch/served.log" 2>&1 &
served_pid=$!
.venv/bin/python -m pytest -m "not ($SERVED)" --basetemp "$scratch/library"
library_code=$?
wait "$served_pid"
served_code=$?
echo; echo "================ the served-app tiers and the slow trainings ($SERVED) ================"
cat "$scratch/served.log"
# The tiers run TensorFlow (exact references); the suites of frozen forward passes run again on
# the engine users get by default (OpenVINO, bf16 on this CPU), at bf16 tolerances.
TRANSFER_LAB_ENGINE=auto .venv/bin/python -m pytest -m "engine and not real and not browser and not slow and not cluster" \
  -p no:cacheprovider --basetemp "$scratch/engine"
engine_code=$?
set -e
code=0
for c in "$library_code" "$served_code" "$engine_code"; do
  if [ "$c" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure." >&2
    c=1
  fi
  [ "$code" -eq 0 ] && code=$c
done
exit "$code"
