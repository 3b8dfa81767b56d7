#!/usr/bin/env bash
# One command: install into .venv and start the app on http://127.0.0.1:8501 (this machine only;
# TRANSFER_LAB_ADDRESS or --server.address opens it wider: see the README's "Serving a team").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh requirements.txt
exec bash scripts/serve.sh "$@"
