#!/usr/bin/env bash
# One command: install into .venv and start the app on http://localhost:8501
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh requirements.txt
if [ -z "${TRANSFER_LAB_WEIGHTS_DIR:-}" ] && [ -d ../shared/keras-weights ]; then
  export TRANSFER_LAB_WEIGHTS_DIR="$(cd ../shared/keras-weights && pwd)"
fi
exec .venv/bin/streamlit run streamlit_app.py "$@"
