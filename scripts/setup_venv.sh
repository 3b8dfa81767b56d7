#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and install a requirements file into it.
# Usage: scripts/setup_venv.sh requirements.txt|requirements-dev.txt
set -euo pipefail
cd "$(dirname "$0")/.."
req="${1:-requirements.txt}"
py="${PYTHON:-python3}"
"$py" - <<'PY' || { echo "Transfer Lab needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)." >&2; exit 1; }
import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY
[ -x .venv/bin/python ] || "$py" -m venv .venv
stamp=".venv/.installed-$(cat "$req" requirements.txt | sha256sum | cut -c1-16)-$(basename "$req")"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r "$req"
  touch "$stamp"
fi
