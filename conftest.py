"""Collection of the test run: the MONAI Label app needs ``monailabel``, present only in ``.venv-label``."""

import importlib.util

collect_ignore_glob = [] if importlib.util.find_spec("monailabel") else ["wss_monai/label/app/*"]
