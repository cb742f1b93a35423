#!/usr/bin/env bash
# The test command: installs what is needed (scripts/setup_env.sh), lints, then runs the unit tests,
# the bundle end-to-end tests and the docstring examples on 2 processes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
.venv/bin/ruff check wss_monai tests scripts
exec .venv/bin/python -m pytest -n 2 --doctest-modules wss_monai tests "$@"
