#!/usr/bin/env bash
# The MONAI Label tests alone: creates .venv and .venv-label if needed, imports the app's modules in the
# label environment (their doctests), then runs the label tests (the server runs in .venv-label).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
bash scripts/setup_label_env.sh
.venv-label/bin/python -m pytest -q -p no:cacheprovider --doctest-modules wss_monai/label
exec .venv/bin/python -m pytest -q tests/test_label_scribbles.py tests/test_label_refine.py tests/test_label_datalist.py \
  tests/test_label_boxes.py \
  tests/test_label_server.py "$@"
