#!/usr/bin/env bash
# Creates .venv-label: a separate environment for MONAI Label 0.8.5 beside the CPU torch build.
#
# A plain `pip install monailabel` replaces torch with a CUDA build, downgrades numpy and brings a
# torchvision that cannot load beside CPU torch. So: torch==2.13.0 and numpy<2 first, then
# monailabel with --no-deps, then its runtime requirements minus torch, torchvision, sam2, mlflow and
# openslide (scripts/label_env/requirements.txt) under scripts/label_env/constraints.txt, then this
# project, editable and with --no-deps. Re-running is cheap: nothing is installed again while those
# files and pyproject.toml are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
ENV=${LABEL_ENV:-.venv-label}
if [ ! -x "$ENV/bin/python" ]; then
  echo "creating $ENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$ENV"
fi
stamp="$ENV/.wss-monai-label-installed"
want=$(cat pyproject.toml scripts/label_env/requirements.txt scripts/label_env/constraints.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  pip=("$ENV/bin/python" -m pip install --quiet -c scripts/label_env/constraints.txt)
  "${pip[@]}" --upgrade pip
  "${pip[@]}" "torch==2.13.0" "numpy<2"
  "${pip[@]}" --no-deps "monailabel==0.8.5"
  "${pip[@]}" -r scripts/label_env/requirements.txt
  "${pip[@]}" --no-deps -e .
  "$ENV/bin/python" -c "import monailabel.app, monailabel.tasks.train.basic_train, wss_monai"
  echo "$want" > "$stamp"
fi
