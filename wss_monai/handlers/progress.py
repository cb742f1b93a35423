"""A progress bar over the iterations of an epoch, showing the running loss."""

from __future__ import annotations

import sys

from ignite.engine import Engine
from ignite.handlers import ProgressBar

__all__ = ["TrainingProgressBar"]


class TrainingProgressBar:
    """ignite's ``ProgressBar`` with the loss shown, off when stderr is not a terminal (CI logs)."""

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled

    def attach(self, engine: Engine) -> None:
        if self.enabled:
            ProgressBar(persist=False).attach(engine, output_transform=lambda out: {"loss": float(out["loss"])})
