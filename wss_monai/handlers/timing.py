"""Seconds per training iteration (forward, loss, backward, step), without data loading or validation."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
from ignite.engine import Engine, Events

from wss_monai.utils.atomic import write_text_atomic
from wss_monai.utils.distributed import is_main_process

__all__ = ["IterationTimer"]


class IterationTimer:
    """Times every iteration from ``ITERATION_STARTED`` to ``ITERATION_COMPLETED``.

    The first ``warmup`` iterations are left out of the summary. At the end of the run, logs the
    median and mean and writes them to ``<output_dir>/timing.json`` when ``output_dir`` is given (rank 0's
    timings in a distributed run, written by rank 0 alone).
    """

    def __init__(self, output_dir: str | None = None, warmup: int = 5, name: str = "wss_monai.timing") -> None:
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.warmup = int(warmup)
        self.logger = logging.getLogger(name)
        self.durations: list[float] = []
        self._start = 0.0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_STARTED, self._begin)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._end)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _begin(self, engine: Engine) -> None:
        self._start = time.perf_counter()

    def _end(self, engine: Engine) -> None:
        self.durations.append(time.perf_counter() - self._start)

    def summary(self) -> dict:
        kept = np.array(self.durations[self.warmup :] or self.durations, dtype=float)
        if not kept.size:
            return {"iterations": 0}
        return {
            "iterations": len(self.durations),
            "seconds_per_iteration_median": float(np.median(kept)),
            "seconds_per_iteration_mean": float(kept.mean()),
        }

    def _write(self, engine: Engine) -> None:
        summary = self.summary()
        if not summary["iterations"]:
            return
        self.logger.info(
            "%d iterations, %.4f s per iteration (median)",
            summary["iterations"],
            summary["seconds_per_iteration_median"],
        )
        if self.output_dir is not None and is_main_process():
            self.output_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(json.dumps(summary, indent=2), self.output_dir / "timing.json")
