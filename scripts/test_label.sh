#!/usr/bin/env bash
# The MONAI Label tests alone: creates .venv and .venv-label if needed, runs the label modules' docstring
# examples in the label environment, then the label tests (the server runs in .venv-label).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_label_env.sh
.venv-label/bin/python -m pytest -q -p no:cacheprovider --doctest-modules wss_monai/label
exec .venv/bin/python -m pytest -q tests/test_label_scribbles.py tests/test_label_refine.py tests/test_label_datalist.py \
  tests/test_label_boxes.py \
  tests/test_label_server.py "$@"
