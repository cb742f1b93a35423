"""Helpers for bundle configs: argument checks and resuming a run."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch

logger = logging.getLogger("wss_monai.config")

__all__ = ["list_images", "require_dir", "resume"]


def require_dir(path: str | Path | None, name: str) -> str:
    """``path`` as a string when it is an existing folder, else an error naming the argument ``name``."""
    if path is None or str(path) == "":
        raise ValueError(f"{name} is not set: pass --{name} /path/to/folder")
    if not Path(path).is_dir():
        raise FileNotFoundError(f"{name} {str(path)!r} is not an existing folder")
    return str(Path(path).resolve())


def resume(checkpoint: str | Path | None, objects: Mapping, device: torch.device | str = "cpu") -> bool:
    """Load every object of ``objects`` (model, optimizer, trainer, schedules) from ``checkpoint``.

    Does nothing and returns False when ``checkpoint`` is None; raises ``FileNotFoundError`` when the
    file is missing and ``KeyError`` naming the objects the checkpoint lacks.
    """
    if checkpoint is None or str(checkpoint) == "":
        return False
    from ignite.handlers import Checkpoint

    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"resume_checkpoint {str(path)!r} does not exist")
    state = torch.load(path, map_location=device, weights_only=False)
    missing = sorted(set(objects) - set(state))
    if missing:
        raise KeyError(f"checkpoint {str(path)!r} lacks {missing}; it holds {sorted(state)}")
    trainer = objects.get("trainer")
    max_epochs = getattr(getattr(trainer, "state", None), "max_epochs", None)
    Checkpoint.load_objects(to_load=dict(objects), checkpoint=state)
    if max_epochs is not None and trainer.state.max_epochs < max_epochs:
        trainer.state.max_epochs = max_epochs  # the configured budget wins over the one saved: training goes on
    logger.info("resumed from %s at iteration %s", path, getattr(getattr(trainer, "state", None), "iteration", "?"))
    return True


def list_images(folder: str | Path, pattern: str = "*.nii*") -> list[str]:
    """Sorted files of ``folder`` matching ``pattern``; an error naming the folder when there are none."""
    folder = Path(require_dir(folder, "input_dir"))
    files = sorted(str(p) for p in folder.glob(pattern) if p.is_file())
    if not files:
        raise FileNotFoundError(f"no file matching {pattern!r} in {str(folder)!r}")
    logger.info("%d images to segment in %s", len(files), folder)
    return files
