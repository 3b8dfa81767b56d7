#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and install a requirements file into it: its lock
# (requirements.txt -> requirements.lock, requirements-dev.txt -> requirements-dev.lock: exact versions,
# every file's sha256, made by scripts/lock.sh) with pip's hash checking; the bare lower bounds only for a
# requirements file without a lock. Nothing is installed again until the lock's content changes.
# Usage: scripts/setup_venv.sh requirements.txt|requirements-dev.txt
set -euo pipefail
cd "$(dirname "$0")/.."
req="${1:-requirements.txt}"
py="${PYTHON:-python3}"
"$py" - <<'PY' || { echo "Transfer Lab needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)." >&2; exit 1; }
import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY
[ -x .venv/bin/python ] || "$py" -m venv .venv
lock="${req%.txt}.lock"
if [ -f "$lock" ]; then
  if ! grep -q "^# inputs: $(cat "$req" requirements.txt | sha256sum | cut -c1-16) " "$lock"; then
    echo "warning: $req or requirements.txt changed since $lock was made: installing the lock as it is;" \
      "run 'bash scripts/lock.sh' (README: Updating the pinned installs) to pin the change." >&2
  fi
  stamp=".venv/.installed-$(sha256sum < "$lock" | cut -c1-16)-$(basename "$lock")"
  if [ ! -f "$stamp" ]; then
    # The lock pins pip as well; hash checking refuses any file, dependency included, that it does not list.
    .venv/bin/python -m pip install --quiet --require-hashes -r "$lock"
    rm -f .venv/.installed-*-"$(basename "$lock")"
    touch "$stamp"
  fi
else
  stamp=".venv/.installed-$(cat "$req" requirements.txt | sha256sum | cut -c1-16)-$(basename "$req")"
  if [ ! -f "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -r "$req"
    touch "$stamp"
  fi
fi
