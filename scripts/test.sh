#!/usr/bin/env bash
# The test command: installs what is needed (scripts/setup_env.sh, then .venv-label for MONAI Label on top
# of it, scripts/setup_label_env.sh, which imports the label app there), lints, then runs the unit tests,
# the bundle end-to-end tests (the MONAI Label server tests among them) and the docstring examples on
# 2 processes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
bash scripts/setup_label_env.sh
.venv/bin/ruff check wss_monai tests scripts apps conftest.py
exec .venv/bin/python -m pytest -n 2 --doctest-modules wss_monai tests "$@"
