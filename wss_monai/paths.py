"""Where the bundles and recipes live, so that configs resolve from any working directory."""

from __future__ import annotations

import os
from pathlib import Path

ROOT_ENV = "WSS_MONAI_ROOT"


def repository_root() -> Path:
    """The folder holding ``bundles/`` and ``configs/``.

    Taken from the ``WSS_MONAI_ROOT`` environment variable when set, otherwise the parent of the
    installed package (an editable install or a source checkout).
    """
    root = Path(os.environ.get(ROOT_ENV, Path(__file__).resolve().parent.parent))
    if not (root / "bundles").is_dir():
        raise FileNotFoundError(
            f"no 'bundles' folder under {root}; install wss-monai in editable mode (pip install -e .) "
            f"or set {ROOT_ENV} to the repository root"
        )
    return root


def bundle_dir(name: str) -> str:
    """Absolute path of ``bundles/<name>`` as a string (used by the bundle configs as ``bundle_root``)."""
    path = repository_root() / "bundles" / name
    if not path.is_dir():
        available = sorted(p.name for p in (repository_root() / "bundles").iterdir() if p.is_dir())
        raise FileNotFoundError(f"no bundle named {name!r} under {path.parent}; available: {available}")
    return str(path)
