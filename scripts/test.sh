#!/usr/bin/env bash
# The test command: installs what is needed (scripts/setup_env.sh, then .venv-label for MONAI Label on top
# of it, scripts/setup_label_env.sh), lints, runs the label app's docstring examples in .venv-label, then
# the unit tests, the bundle end-to-end tests (the MONAI Label server test among them) and the docstring
# examples on 2 processes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
bash scripts/setup_label_env.sh
.venv/bin/ruff check wss_monai tests scripts apps conftest.py
.venv-label/bin/python -m pytest -q -p no:cacheprovider --doctest-modules wss_monai/label/app
exec .venv/bin/python -m pytest -n 2 --doctest-modules wss_monai tests "$@"
