#!/usr/bin/env bash
# The test command: installs what is needed (scripts/setup_env.sh, and scripts/setup_label_env.sh for
# the MONAI Label server test unless WSS_LABEL_TESTS=0), lints, then runs the unit tests, the bundle
# end-to-end tests, the label server test and the docstring examples on 2 processes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
if [ "${WSS_LABEL_TESTS:-1}" != 0 ]; then
  bash scripts/setup_label_env.sh  # tests/test_label_server.py is skipped without .venv-label
fi
.venv/bin/ruff check wss_monai tests scripts apps conftest.py
exec .venv/bin/python -m pytest -n 2 --doctest-modules wss_monai tests "$@"
