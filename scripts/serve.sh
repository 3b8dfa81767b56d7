#!/usr/bin/env bash
# The command scripts/app.sh runs once the venv is ready: start the app, on 127.0.0.1 unless told otherwise.
# Open it to a team with TRANSFER_LAB_ADDRESS=0.0.0.0 (or an interface's address), or pass
# Streamlit's own --server.address; see the README's "Serving a team" first.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${TRANSFER_LAB_WEIGHTS_DIR:-}" ] && [ -d ../shared/keras-weights ]; then
  export TRANSFER_LAB_WEIGHTS_DIR="$(cd ../shared/keras-weights && pwd)"
fi
address="${TRANSFER_LAB_ADDRESS:-127.0.0.1}"
for arg in "$@"; do
  case "$arg" in --server.address|--server.address=*) address="" ;; esac  # the flag wins
done
# Without sign-in the app is one person's: an address others can reach needs the loud opt-in
# (core/serving.py says which); with sign-in, the cookie secret must be a real one.
bound="$address"
for arg in "$@"; do case "$arg" in --server.address=*) bound="${arg#*=}" ;; esac; done
prev=""; for arg in "$@"; do [ "$prev" = "--server.address" ] && bound="$arg"; prev="$arg"; done
.venv/bin/python -m core.serving "$bound" || exit 1
exec .venv/bin/streamlit run streamlit_app.py ${address:+--server.address "$address"} "$@"
