#!/usr/bin/env bash
# The test command: installs what is needed (scripts/setup_env.sh), lints, then runs the unit tests,
# the bundle end-to-end tests and the docstring examples on 2 processes.
# WSS_LABEL_TESTS=1 also creates .venv-label (scripts/setup_label_env.sh), so that the MONAI Label
# server test runs instead of being skipped. It is off by default: creating that environment from
# nothing took about 13 minutes here (downloads and itk), beyond the suite's 20-minute budget;
# scripts/test_label.sh runs the label tests alone.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
if [ "${WSS_LABEL_TESTS:-0}" != 0 ]; then
  bash scripts/setup_label_env.sh  # tests/test_label_server.py is skipped without .venv-label
fi
.venv/bin/ruff check wss_monai tests scripts apps conftest.py
exec .venv/bin/python -m pytest -n 2 --doctest-modules wss_monai tests "$@"
