#!/usr/bin/env bash
# Creates .venv-label: MONAI Label 0.8.5 layered on .venv (scripts/setup_env.sh).
#
# A plain `pip install monailabel` replaces torch with a CUDA build, downgrades numpy and brings a
# torchvision that cannot load beside CPU torch. So .venv-label is a small environment of its own
# that sees .venv's packages through a .pth file (torch 2.13 CPU, monai, numpy 2, itk, this project)
# and adds only what MONAI Label's server imports: monailabel and pydicom-seg with --no-deps (their
# metadata asks for numpy<2, torchvision, sam2, mlflow; the server needs none of them), then
# scripts/label_env/requirements.txt under scripts/label_env/constraints.txt and .venv's `pip freeze`
# as constraints. It ends by checking that numpy and torch still come from .venv. About a minute from
# nothing; re-running is cheap: nothing is installed again while those files and pyproject.toml are
# unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
PYTHON=${PYTHON:-python3}
ENV=${LABEL_ENV:-.venv-label}
BASE_SITE=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
stamp="$ENV/.wss-monai-label-installed"
want=$(cat pyproject.toml scripts/setup_label_env.sh scripts/label_env/requirements.txt scripts/label_env/constraints.txt \
  | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  rm -rf "$ENV"
  echo "creating $ENV on top of .venv"
  "$PYTHON" -m venv "$ENV"
  site=$("$ENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  echo "$BASE_SITE" > "$site/wss_monai_base.pth"
  base_pins="$ENV/base-constraints.txt"
  .venv/bin/python -m pip freeze --exclude-editable | grep -v '^-e ' > "$base_pins"
  pip=("$ENV/bin/python" -m pip install --quiet --disable-pip-version-check)
  "${pip[@]}" --no-deps "monailabel==0.8.5" "pydicom-seg==0.4.1"
  "${pip[@]}" -c scripts/label_env/constraints.txt -c "$base_pins" -r scripts/label_env/requirements.txt
  "$ENV/bin/python" - "$BASE_SITE" <<'PY'
import sys
from pathlib import Path

import numpy, torch  # noqa: E401
for module in (numpy, torch):
    if not Path(module.__file__).resolve().is_relative_to(Path(sys.argv[1]).resolve()):
        sys.exit(f"{module.__name__} {module.__version__} was installed into the label environment ({module.__file__}); "
                 f"it must come from .venv ({sys.argv[1]})")
import monailabel.app, monailabel.interfaces.app, monailabel.main, monailabel.tasks.train.basic_train  # noqa: E401,F401
import wss_monai.label.app  # noqa: F401
PY
  echo "$want" > "$stamp"
fi
