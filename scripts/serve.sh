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
exec .venv/bin/streamlit run streamlit_app.py ${address:+--server.address "$address"} "$@"
