"""Helpers for bundle configs: argument checks and resuming a run."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger("wss_monai.config")

__all__ = [
    "NEWER_STATES",
    "SCHEDULE_LENGTHS",
    "check_checkpoint_file",
    "extend_lr_schedule",
    "list_images",
    "read_checkpoint",
    "require_dir",
    "require_saved_state",
    "resume",
]


def require_dir(path: str | Path | None, name: str) -> str:
    """``path`` as a string when it is an existing folder, else an error naming the argument ``name``."""
    if path is None or str(path) == "":
        raise ValueError(f"{name} is not set: pass --{name} /path/to/folder")
    if not Path(path).is_dir():
        raise FileNotFoundError(f"{name} {str(path)!r} is not an existing folder")
    return str(Path(path).resolve())


def read_checkpoint(path: str | Path, name: str = "checkpoint", map_location: Any = "cpu") -> dict:
    """Loads a checkpoint file, with an error naming the file and the argument ``name`` when it cannot be used.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is empty (a save that was killed) or not a checkpoint torch can read.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{name} {str(path)!r} does not exist")
    size = path.stat().st_size
    if size == 0:
        raise ValueError(
            f"{name} {str(path)!r} is empty (0 bytes): its save was interrupted; use an earlier checkpoint"
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as error:
        raise ValueError(
            f"{name} {str(path)!r} ({size} bytes) is not a readable checkpoint: {type(error).__name__}: {error}"
        ) from error
    if not isinstance(state, Mapping):
        raise ValueError(f"{name} {str(path)!r} holds a {type(state).__name__}, not a dict of states")
    return state


_CHECKPOINT_MAGIC = (b"PK", b"\x80")
"""The first bytes of torch's zip checkpoints and of legacy pickled ones."""


def check_checkpoint_file(path: str | Path | None, name: str = "ckpt_path") -> str:
    """``path`` as a string if it looks like a whole checkpoint (exists, not empty, a torch file), without loading it.

    Raises:
        ValueError: ``path`` is not set.
        FileNotFoundError: the file is missing.
        ValueError: the file is empty (a save that was killed) or does not start as a torch checkpoint does.
    """
    if path is None or str(path) == "":
        raise ValueError(f"{name} is not set: pass --{name} /path/to/checkpoint.pt")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{name} {str(path)!r} does not exist")
    with open(path, "rb") as f:
        head = f.read(2)
    if not head:
        raise ValueError(
            f"{name} {str(path)!r} is empty (0 bytes): its save was interrupted; use an earlier checkpoint"
        )
    if not head.startswith(_CHECKPOINT_MAGIC):
        raise ValueError(f"{name} {str(path)!r} is not a torch checkpoint (it starts with {head!r})")
    return str(path)


NEWER_STATES = {
    "random_state": "the resumed data order and augmentations differ from a straight run's",
    "best_checkpoint": "the first validation after resuming replaces model.pt whatever its score",
    "pce_weight_ramp": "the trust region's partial-CE weight counts its epochs from the resumed run's start "
    "(no change with tr_pce_weight 0)",
}
"""Checkpoint entries that older runs did not save; resuming without them is possible, not exact."""

SCHEDULE_LENGTHS = ("T_max", "total_iters")
"""Attributes of torch's LR schedulers that fix the length of the schedule (CosineAnnealingLR, PolynomialLR, ...)."""


def extend_lr_schedule(scheduler: Any, lengths: Mapping[str, Any]) -> bool:
    """Sets a loaded LR scheduler's length back to the configured one and its learning rates to match.

    A checkpoint holds the schedule length of the run that wrote it (``T_max = max_epochs``); a run resumed
    with a larger ``max_epochs`` must follow the schedule of its own length, not climb back up the cosine.
    The learning rates are set from the scheduler's closed form at its current step.

    Args:
        scheduler: a ``torch.optim.lr_scheduler`` object, after ``load_state_dict``.
        lengths: the values of :data:`SCHEDULE_LENGTHS` it had before loading (the configured ones).

    Returns:
        Whether anything changed.
    """
    changed = {k: v for k, v in lengths.items() if getattr(scheduler, k, v) != v}
    if not changed:
        return False
    for key, value in changed.items():
        logger.info("LR schedule %s: %s set to %s", key, getattr(scheduler, key), value)
        setattr(scheduler, key, value)
    closed_form = getattr(scheduler, "_get_closed_form_lr", None)
    if closed_form is None:
        logger.warning("%s has no closed form: its learning rate is kept as saved", type(scheduler).__name__)
        return True
    lrs = closed_form()
    for group, lr in zip(scheduler.optimizer.param_groups, lrs):
        group["lr"] = lr
    scheduler._last_lr = list(lrs)
    return True


def require_saved_state(handlers: Sequence[Any], objects: Mapping[str, Any]) -> None:
    """Checks that every handler with a ``state_dict`` (a schedule, a ramp, dual variables) is saved in checkpoints.

    The engine attaches the handlers of ``recipe_state`` and ``regulariser_state`` and saves them all; this
    check catches a handler with state attached some other way, which would restart from its initial state
    on resume.

    Raises:
        ValueError: naming the handlers with state that ``objects`` (the checkpoint's entries) lacks.
    """
    saved = {id(obj) for obj in objects.values()}
    missing = [type(h).__name__ for h in handlers if callable(getattr(h, "state_dict", None)) and id(h) not in saved]
    if missing:
        raise ValueError(
            f"the handlers {missing} have a state_dict but are not in the checkpoint objects {sorted(objects)}: add "
            "them to recipe_state (or regulariser_state), or a resumed run restarts their schedules"
        )


def resume(checkpoint: str | Path | None, objects: Mapping, device: torch.device | str = "cpu") -> bool:
    """Load every object of ``objects`` (model, optimizer, trainer, schedules, random state) from ``checkpoint``.

    The configured ``max_epochs`` wins over the one saved, and an LR scheduler keeps its configured length
    (:func:`extend_lr_schedule`): a run of 4 epochs stopped after 2 and resumed goes on as the straight run,
    and a finished run resumed with a larger ``max_epochs`` follows the longer schedule. A checkpoint
    written before runs saved their random state (``random_state``) is resumed with a warning that the
    data order and augmentations will differ from a straight run's (:data:`NEWER_STATES`).

    Does nothing and returns False when ``checkpoint`` is None.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: the file is empty or unreadable (see :func:`read_checkpoint`).
        KeyError: the checkpoint lacks objects; the message names them and what it holds.
    """
    if checkpoint is None or str(checkpoint) == "":
        return False
    from ignite.handlers import Checkpoint

    path = Path(checkpoint)
    state = read_checkpoint(path, "resume_checkpoint", map_location=device)
    objects = dict(objects)
    for name in set(NEWER_STATES) & set(objects) - set(state):
        logger.warning("%s holds no %r (written by an older version): %s", path, name, NEWER_STATES[name])
        objects.pop(name)
    missing = sorted(set(objects) - set(state))
    if missing:
        raise KeyError(f"checkpoint {str(path)!r} lacks {missing}; it holds {sorted(state)}")
    trainer = objects.get("trainer")
    max_epochs = getattr(getattr(trainer, "state", None), "max_epochs", None)
    lengths = {
        name: {k: getattr(obj, k) for k in SCHEDULE_LENGTHS if hasattr(obj, k)}
        for name, obj in objects.items()
        if isinstance(obj, torch.optim.lr_scheduler.LRScheduler)
    }
    Checkpoint.load_objects(to_load=objects, checkpoint=state)
    if max_epochs is not None and trainer.state.max_epochs < max_epochs:
        trainer.state.max_epochs = max_epochs  # the configured budget wins over the one saved: training goes on
    for name, configured in lengths.items():
        extend_lr_schedule(objects[name], configured)
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
