"""Checkpoints that survive a kill during a save, and a resumable ``model_final.pt`` after every epoch.

MONAI's :class:`~monai.handlers.CheckpointSaver` hands ignite's ``Checkpoint`` a ``DiskSaver`` that writes
in place (``atomic=False``), and ignite removes the previous checkpoint *before* it writes the next one: a
run killed in between is left with a 0-byte or truncated file and nothing to resume from.
:class:`SafeCheckpointSaver` keeps MONAI's handler (its options, events and file names) and changes three
things:

- every file goes through :class:`AtomicDiskSaver`: written to a temporary file in the same folder, then
  renamed over the target; a checkpoint it replaces is removed only once the new one exists;
- ``final_interval`` also writes the final checkpoint (``model_final.pt``) every N epochs, so a killed run
  can be resumed from its last whole epoch;
- an error in the middle of an epoch does not overwrite that checkpoint with a half-epoch state (which a
  resumed run could not continue exactly): the last whole-epoch one is kept and named in the log.

It also has ``state_dict`` / ``load_state_dict`` (the best key metric so far), so a resumed run does not
replace ``model.pt`` by a worse model at its first validation.

Example:
    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> saver = AtomicDiskSaver(tempfile.mkdtemp(), filename="model_final.pt")
    >>> saver({"model": torch.nn.Linear(2, 1).state_dict()}, "ignored.pt")
    >>> sorted(p.name for p in Path(saver.dirname).iterdir())
    ['model_final.pt']
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from ignite.handlers.checkpoint import BaseSaveHandler
from monai.handlers import CheckpointSaver

from wss_monai.utils.atomic import atomic_path
from wss_monai.utils.distributed import is_main_process

__all__ = ["AtomicDiskSaver", "SafeCheckpointSaver"]

logger = logging.getLogger(__name__)


class AtomicDiskSaver(BaseSaveHandler):
    """An ignite save handler that writes each checkpoint atomically and removes old ones only afterwards.

    Args:
        dirname: the folder of the checkpoints (created when missing).
        filename: a fixed file name for every save (as MONAI's ``final_filename`` / ``key_metric_filename``);
            ``None`` keeps the name ignite gives (``checkpoint_epoch=3.pt``).
    """

    def __init__(self, dirname: str | Path, filename: str | None = None) -> None:
        self.dirname = Path(dirname)
        self.filename = filename
        self._pending_removal: list[str] = []

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        if not is_main_process():
            return
        name = self.filename or filename
        path = self.dirname / name
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)
        logger.debug("saved %s", path)
        for old in self._pending_removal:
            if old != name:
                (self.dirname / old).unlink(missing_ok=True)
        self._pending_removal.clear()

    def remove(self, filename: str) -> None:
        """Removes ``filename`` after the next save; a fixed name is replaced by that save instead."""
        name = self.filename or filename
        if name != self.filename:
            self._pending_removal.append(name)


class SafeCheckpointSaver(CheckpointSaver):
    """:class:`monai.handlers.CheckpointSaver` with atomic writes and a final checkpoint after every N epochs.

    Args:
        final_interval: with ``save_final``, also write the final checkpoint every ``final_interval`` epochs
            (0: only at completion and at an error, as MONAI does).
        *args, **kwargs: as for :class:`monai.handlers.CheckpointSaver`.
    """

    def __init__(self, *args: Any, final_interval: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if isinstance(final_interval, bool) or not isinstance(final_interval, int) or final_interval < 0:
            raise ValueError(f"final_interval must be an integer >= 0 (epochs), got {final_interval!r}")
        self.final_interval = final_interval
        for checkpoint in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if checkpoint is not None:
                checkpoint.save_handler = AtomicDiskSaver(
                    self.save_dir, getattr(checkpoint.save_handler, "filename", None)
                )

    def attach(self, engine: Engine) -> None:
        super().attach(engine)
        if self._final_checkpoint is not None and self.final_interval:
            engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.final_interval), self.epoch_completed)

    def _delete_previous_final_ckpt(self) -> None:
        # the next save replaces the fixed-name file atomically (AtomicDiskSaver.remove defers the rest):
        # only forget it, without MONAI's "Deleted previous saved final checkpoint" message
        if self._final_checkpoint is not None:
            for item in self._final_checkpoint._saved:
                self._final_checkpoint.save_handler.remove(item.filename)
            self._final_checkpoint._saved.clear()

    def epoch_completed(self, engine: Engine) -> None:
        """Writes the final checkpoint (the state after this epoch) over the previous one."""
        self._delete_previous_final_ckpt()
        self._final_checkpoint(engine)
        self.logger.info("epoch %d: saved the resumable checkpoint %s", engine.state.epoch, self._final_path())

    def exception_raised(self, engine: Engine, e: Exception) -> None:
        """Saves the final checkpoint at an error between epochs; in mid-epoch keeps the last whole-epoch one."""
        length = engine.state.epoch_length
        if length and engine.state.iteration % length:
            self.logger.warning(
                "error in epoch %d at iteration %d: %s still holds the state after the last whole epoch; "
                "resume from it with --resume_checkpoint",
                engine.state.epoch,
                engine.state.iteration,
                self._final_path(),
            )
            raise e
        super().exception_raised(engine, e)

    def _final_path(self) -> str:
        if self._final_filename is not None:
            return str(Path(self.save_dir) / self._final_filename)
        return str(self._final_checkpoint.last_checkpoint) if self._final_checkpoint is not None else "?"

    def state_dict(self) -> dict:
        """The key-metric tracking (best score and file so far); empty without ``save_key_metric``."""
        return {} if self._key_metric_checkpoint is None else self._key_metric_checkpoint.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        if state_dict and self._key_metric_checkpoint is not None:
            self._key_metric_checkpoint.load_state_dict(state_dict)
