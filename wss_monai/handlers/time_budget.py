"""Fits a training run into a wall-clock budget: fewer epochs, with the LR schedule shortened to match.

A cluster job or a borrowed GPU gives a run so many minutes. Killing the run there leaves its cosine
schedule halfway, the learning rate high and the last checkpoint mid-schedule. :class:`TimeBudget`
measures the epochs as they run (validation epochs included) and, once the configured ``max_epochs``
would not fit, lowers the trainer's ``max_epochs`` to the number that does and shortens the LR
scheduler to it (``T_max`` or ``total_iters``, the learning rate set from the scheduler's closed
form). The run then ends inside its budget with a whole schedule, its last validation and its
checkpoints. ``max_epochs`` only ever goes down. Schedules counted in epochs that a recipe sets up
(log-barrier ``t``, weight ramps) keep their epochs.

The budget counts from the trainer's start (``Events.STARTED``): loading and caching the data
before it, and inference after it, are not in it. A resumed run gets the whole budget again.

Example:
    >>> import torch
    >>> from ignite.engine import Engine
    >>> clock = iter(range(0, 1000, 10))  # every epoch takes 10 s
    >>> trainer = Engine(lambda engine, batch: None)
    >>> model = torch.nn.Linear(1, 1)
    >>> optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    >>> schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=100)
    >>> TimeBudget(seconds=45, lr_scheduler=schedule, clock=lambda: next(clock)).attach(trainer)
    >>> trainer.run([0], max_epochs=100).epoch, schedule.T_max
    (4, 4)
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

from ignite.engine import Engine, Events

from wss_monai.utils.config import SCHEDULE_LENGTHS, extend_lr_schedule

__all__ = ["TimeBudget"]

logger = logging.getLogger(__name__)


class TimeBudget:
    """Lowers ``max_epochs`` (and the LR schedule's length) so that training ends within ``seconds``.

    The time per epoch is estimated from the epochs after the first (the first carries one-off
    costs: memory allocation, kernel selection, worker start-up), and the epochs still to come are
    the whole ones that fit in what is left of the budget. ``max_epochs`` is first lowered once
    ``settle`` of the budget has passed, so that a few slow epochs at the start (other runs starting
    on the same GPU) do not cut the run for good; before that the run stops only if the budget is
    spent. A run whose epochs all take as long as its first may end up to one epoch past its budget.

    Args:
        seconds: the wall-clock budget of the training loop (> 0).
        lr_scheduler: an epoch-level ``torch.optim.lr_scheduler`` whose length (``T_max``,
            ``total_iters``) follows ``max_epochs``; shortened with it. None: no schedule to shorten.
        min_epochs: the run trains at least this many epochs, whatever the budget (>= 1).
        settle: the share of the budget that passes before the first estimate counts (0 to 1).
        clock: seconds now (``time.perf_counter``); a test passes its own.

    Raises:
        ValueError: ``seconds`` is not a positive finite number, ``min_epochs`` < 1 or ``settle`` outside [0, 1).
    """

    def __init__(
        self,
        seconds: float,
        lr_scheduler: Any = None,
        min_epochs: int = 1,
        settle: float = 0.1,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds < math.inf:
            raise ValueError(f"seconds must be a positive number (the training budget), got {seconds!r}")
        if isinstance(min_epochs, bool) or not isinstance(min_epochs, int) or min_epochs < 1:
            raise ValueError(f"min_epochs must be an integer >= 1, got {min_epochs!r}")
        if isinstance(settle, bool) or not isinstance(settle, (int, float)) or not 0 <= settle < 1:
            raise ValueError(f"settle must be a share of the budget in [0, 1), got {settle!r}")
        self.seconds = float(seconds)
        self.settle = float(settle)
        self.lr_scheduler = lr_scheduler
        self.min_epochs = min_epochs
        self.clock = clock
        self._started = self._first_epoch_done = 0.0
        self._first_epoch = 0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._start)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def _start(self, engine: Engine) -> None:
        self._started = self.clock()
        self._first_epoch = engine.state.epoch + 1  # a resumed run starts after its saved epoch

    def seconds_per_epoch(self, epoch: int, now: float) -> float | None:
        """The estimated time of one epoch once ``epoch`` has just completed at time ``now`` (None after the first)."""
        if epoch == self._first_epoch:
            self._first_epoch_done = now
            return None
        return (now - self._first_epoch_done) / (epoch - self._first_epoch)

    def __call__(self, engine: Engine) -> None:
        now, epoch = self.clock(), engine.state.epoch
        per_epoch = self.seconds_per_epoch(epoch, now)
        left = self.seconds - (now - self._started)
        if left <= 0:
            fitting = epoch
        elif per_epoch is None or now - self._started < self.settle * self.seconds:
            return
        else:
            fitting = epoch + (math.floor(left / per_epoch) if per_epoch > 0 else engine.state.max_epochs)
        fitting = max(fitting, self.min_epochs)
        if fitting >= engine.state.max_epochs:
            return
        logger.warning(
            "time budget %.0f s: epochs take %s and %.0f s are left, so training ends after epoch %d instead "
            "of %d (the LR schedule is shortened to match)",
            self.seconds,
            "?" if per_epoch is None else f"{per_epoch:.1f} s",
            max(left, 0.0),
            fitting,
            engine.state.max_epochs,
        )
        engine.state.max_epochs = fitting
        if self.lr_scheduler is not None:
            lengths = {k: fitting for k in SCHEDULE_LENGTHS if hasattr(self.lr_scheduler, k)}
            if not lengths:
                raise ValueError(
                    f"{type(self.lr_scheduler).__name__} has none of {SCHEDULE_LENGTHS}: its length cannot follow "
                    "max_epochs (pass lr_scheduler=None to keep it)"
                )
            extend_lr_schedule(self.lr_scheduler, lengths)
