#!/usr/bin/env bash
# The demo: installs what is needed, generates phantom data, trains the acdc bundle from scribbles and
# from full labels, predicts NIfTI files, evaluates, prints a Dice table and writes runs/demo/overlay.png.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/wss-monai demo --work_dir runs/demo "$@"
