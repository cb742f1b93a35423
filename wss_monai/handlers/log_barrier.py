"""The log-barrier schedule: t ← μ t after every epoch, saved in checkpoints."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

from ignite.engine import Engine, Events
from torch import nn

__all__ = ["LogBarrierScheduler"]


class LogBarrierScheduler:
    """Multiplies the ``t`` of every log-barrier loss term by ``mu`` at the end of each epoch.

    Kervadec et al. (2019, 2022) start at t = 5 and use μ = 1.1: after 200 epochs t ≈ 1e9, where
    the losses stay finite. ``t_max`` optionally caps it. The handler has ``state_dict`` and
    ``load_state_dict``, so passing it in a ``CheckpointSaver``'s ``save_dict`` resumes the
    schedule where it stopped.

    Args:
        losses: the loss terms carrying a ``t`` attribute (e.g. ``InequalityConstraintLoss(mode="log_barrier")``);
            terms in another mode are left alone.
        t0: initial t, written to every term on attach.
        mu: multiplicative step (> 1).
        t_max: optional cap.
        summary_writer: optional TensorBoard ``SummaryWriter``; t is written as ``log_barrier/t``.
    """

    def __init__(
        self,
        losses: nn.Module | Sequence[nn.Module],
        t0: float = 5.0,
        mu: float = 1.1,
        t_max: float | None = None,
        summary_writer=None,
        name: str = "wss_monai.log_barrier",
    ) -> None:
        if not t0 > 0 or not math.isfinite(t0):
            raise ValueError(f"t0 must be a finite positive number, got {t0}")
        if not mu >= 1:
            raise ValueError(f"mu must be at least 1, got {mu}")
        if t_max is not None and t_max < t0:
            raise ValueError(f"t_max ({t_max}) must not be below t0 ({t0})")
        modules = [losses] if isinstance(losses, nn.Module) else list(losses)
        self.terms = [m for root in modules for m in root.modules() if getattr(m, "mode", None) == "log_barrier"]
        if not self.terms:
            raise ValueError("no log-barrier loss term (a module with mode='log_barrier' and a 't') was given")
        self.t, self.mu, self.t_max = float(t0), float(mu), t_max
        self.summary_writer = summary_writer
        self.logger = logging.getLogger(name)
        self._apply()

    def _apply(self) -> None:
        for term in self.terms:
            term.t = self.t

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        self.t = self.t * self.mu if self.t_max is None else min(self.t * self.mu, self.t_max)
        self._apply()
        self.logger.info("epoch %d: log-barrier t = %.4g", engine.state.epoch, self.t)
        if self.summary_writer is not None:
            self.summary_writer.add_scalar("log_barrier/t", self.t, engine.state.epoch)

    def state_dict(self) -> dict:
        return {"t": self.t, "mu": self.mu}

    def load_state_dict(self, state: dict) -> None:
        self.t, self.mu = float(state["t"]), float(state["mu"])
        self._apply()
