"""Per-epoch share of satisfied constraints and their stability, to the log, TensorBoard and CSV."""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

import torch
from ignite.engine import Engine, Events
from torch import nn

from wss_monai.handlers.lagrangian import hook_constraint_values
from wss_monai.utils.atomic import atomic_path
from wss_monai.utils.distributed import all_gather_object, is_distributed, is_main_process

__all__ = ["ConstraintMonitor"]


class ConstraintMonitor:
    """Tracks which constraints of a loss term hold (``z ≤ 0``) over each training epoch.

    The term must have ``constraint_values(logits, batch) -> (z, ids)`` with integer ids of ``z``'s
    shape that identify each constraint across epochs
    (:class:`wss_monai.losses.inequality.InequalityConstraintLoss`). A hook records them on every
    training forward (the values that forward computed, detached; see
    :func:`wss_monai.handlers.lagrangian.hook_constraint_values`), or call :meth:`record` directly.
    The recorded values and the history live here, not in the loss term.
    A constraint evaluated several times in an epoch counts with its last value.

    At ``EPOCH_COMPLETED``:

    - ``satisfied``: the share of the constraints seen in the epoch that hold;
    - ``stability``: of the constraints that held at the previous epoch and were seen again, the
      share that still hold (NaN at the first epoch, or when none held).

    Both go to the log, to TensorBoard (``constraints/satisfied``, ``constraints/stability``), to
    ``engine.state.metrics`` under the same names, to ``self.history`` and to
    ``<output_dir>/constraints.csv`` (``epoch,satisfied,stability``, rewritten every epoch).

    In a distributed run (``torchrun``) the values recorded by every process are gathered (in rank
    order) before the epoch is closed, so all processes hold the same history; rank 0 alone writes
    the CSV file.

    Args:
        loss_module: the constraint loss term to watch.
        output_dir: folder of ``constraints.csv``; ``None`` writes nothing to disk.
        summary_writer: optional TensorBoard ``SummaryWriter``.
    """

    def __init__(
        self,
        loss_module: nn.Module,
        output_dir: str | None = None,
        summary_writer=None,
        name: str = "wss_monai.constraint_monitor",
    ) -> None:
        if not callable(getattr(loss_module, "constraint_values", None)):
            raise TypeError(f"{type(loss_module).__name__} has no constraint_values(logits, batch) method")
        self.loss_module = loss_module
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.summary_writer = summary_writer
        self.logger = logging.getLogger(name)
        self.history: list[dict] = []
        self._ids: list[torch.Tensor] = []
        self._z: list[torch.Tensor] = []
        self._previous: torch.Tensor | None = None  # sorted ids satisfied at the previous epoch
        self._handle = None

    def attach(self, engine: Engine) -> None:
        if self._handle is None:
            self._handle = hook_constraint_values(self.loss_module, self.record)
        engine.add_event_handler(Events.EPOCH_STARTED, self.reset)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def reset(self, engine: Engine | None = None) -> None:
        self._ids.clear()
        self._z.clear()

    def record(self, z: torch.Tensor, ids: torch.Tensor) -> None:
        """Adds the constraint values ``z`` with their ids (same shape) to the current epoch."""
        if z.shape != ids.shape:
            raise ValueError(f"z and ids must have the same shape, got {tuple(z.shape)} and {tuple(ids.shape)}")
        self._z.append(z.detach().reshape(-1).float().cpu())
        self._ids.append(torch.as_tensor(ids).reshape(-1).long().cpu())

    def end_epoch(self, epoch: int) -> dict:
        """Closes the epoch: its row ``{"epoch", "satisfied", "stability"}``, also appended to ``history``."""
        ids = torch.cat(self._ids) if self._ids else torch.zeros(0, dtype=torch.long)
        z = torch.cat(self._z) if self._z else torch.zeros(0)
        if is_distributed():
            parts = all_gather_object((ids, z))
            ids, z = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        unique, inverse = torch.unique(ids, return_inverse=True)
        last = torch.full((unique.numel(),), -1, dtype=torch.long)
        last = last.scatter_reduce(0, inverse, torch.arange(ids.numel()), "amax")
        holds = z[last] <= 0
        satisfied_ids = unique[holds]  # sorted
        satisfied = float(holds.float().mean()) if unique.numel() else math.nan
        stability = math.nan
        if self._previous is not None:
            seen_again = self._previous[torch.isin(self._previous, unique)]
            if seen_again.numel():
                stability = float(torch.isin(seen_again, satisfied_ids).float().mean())
        self._previous = satisfied_ids
        row = {"epoch": int(epoch), "satisfied": satisfied, "stability": stability}
        self.history.append(row)
        self.reset()
        return row

    def __call__(self, engine: Engine) -> None:
        row = self.end_epoch(engine.state.epoch)
        self.logger.info(
            "epoch %d: %.1f%% of constraints satisfied, stability %.1f%%",
            row["epoch"], 100 * row["satisfied"], 100 * row["stability"],
        )  # fmt: skip
        for name in ("satisfied", "stability"):
            engine.state.metrics[f"constraints/{name}"] = row[name]
            if self.summary_writer is not None and not math.isnan(row[name]):
                self.summary_writer.add_scalar(f"constraints/{name}", row[name], row["epoch"])
        self.write_csv()

    def write_csv(self) -> Path | None:
        """Writes ``constraints.csv`` from the history; its path, or ``None`` without ``output_dir`` or off rank 0."""
        if self.output_dir is None or not is_main_process():
            return None
        self.output_dir.mkdir(parents=True, exist_ok=True)
        path = self.output_dir / "constraints.csv"
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["epoch", "satisfied", "stability"])
            writer.writeheader()
            writer.writerows(self.history)
        return path

    def state_dict(self) -> dict:
        return {"history": list(self.history), "previous": self._previous}

    def load_state_dict(self, state: dict) -> None:
        self.history = list(state["history"])
        self._previous = state["previous"]
        self.reset()
