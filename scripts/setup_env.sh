#!/usr/bin/env bash
# Creates .venv (Python >= 3.10) and installs wss-monai with its test and solver extras.
# torch is pinned to 2.13.0 and installed first, so that pip takes the CPU build where one is provided.
# Re-running is cheap: nothing is installed again while pyproject.toml is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.wss-monai-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet "torch==2.13.0"
  .venv/bin/python -m pip install --quiet -e ".[test,solvers]"
  echo "$want" > "$stamp"
fi
