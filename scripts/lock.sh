#!/usr/bin/env bash
# Regenerate the pinned installs from the lower bounds: requirements-dev.txt -> requirements-dev.lock
# (what scripts/test.sh and CI install), then requirements.txt -> requirements.lock (what scripts/app.sh
# installs), constrained to the dev lock's pins so that the app gets exactly the versions CI tested.
# Exact versions and the sha256 of every wheel and sdist of each pinned version; setup_venv.sh installs
# them with pip's hash checking. pip-tools runs from its own throwaway venv, never .venv.
#
# Usage: bash scripts/lock.sh                 keep every current pin that still meets the bounds; resolve only
#                                             what is new or no longer fits (~1 min; a first lock: ~7 min)
#        bash scripts/lock.sh --upgrade       move every package to the newest version the bounds allow
#        bash scripts/lock.sh -P streamlit    move one package (pip-compile's --upgrade-package; repeatable)
# Any other argument goes to pip-compile. Make the locks with Python 3.11 (PYTHON=/path/to/python3.11).
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-python3}"
"$py" - <<'PY' || { echo "Make the locks with Python 3.11, as CI installs them (set PYTHON=/path/to/python3.11)." >&2; exit 1; }
import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)
PY
tools="${TRANSFER_LAB_LOCK_TOOLS:-${TMPDIR:-/tmp}/transfer-lab-locktools}"
pip_tools="pip-tools==7.7.0"
if [ "$("$tools/bin/pip-compile" --version 2>/dev/null)" != "pip-compile, version ${pip_tools#*==}" ]; then
  rm -rf "$tools"
  "$py" -m venv "$tools"
  "$tools/bin/python" -m pip install --quiet --upgrade pip "$pip_tools"
fi

# The inputs' digest, the same one setup_venv.sh computes to tell a lock that is older than its inputs.
inputs_digest() { cat "$1" requirements.txt | sha256sum | cut -c1-16; }

compile() {  # compile OUTPUT INPUT [pip-compile options...]
  local out="$1" in="$2"; shift 2
  [ -f "$out" ] || : > "$out"
  # pip itself is pinned too (stdin "-"), so setup_venv.sh's installer is the locked one as well.
  echo "pip" | CUSTOM_COMPILE_COMMAND="bash scripts/lock.sh" "$tools/bin/pip-compile" --quiet \
    --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links \
    --output-file "$out" "$@" "$in" -
  sed 's|^    # via -r -$|    # via scripts/lock.sh (the installer)|; s|^    #   -r -$|    #   scripts/lock.sh (the installer)|' \
    "$out" > "$out.tmp" && mv "$out.tmp" "$out"
  printf '# inputs: %s (setup_venv.sh compares it with requirements*.txt)\n' "$(inputs_digest "$in")" >> "$out"
}

compile requirements-dev.lock requirements-dev.txt "$@"
# The app lock starts from the dev lock's pins (and hashes) and may not leave them.
[ -f requirements.lock ] || cp requirements-dev.lock requirements.lock
compile requirements.lock requirements.txt -c requirements-dev.lock "$@"
echo "requirements-dev.lock: $(grep -c '^[A-Za-z]' requirements-dev.lock) packages; requirements.lock: $(grep -c '^[A-Za-z]' requirements.lock) packages."
