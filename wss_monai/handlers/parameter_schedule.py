"""A geometric per-epoch schedule of one attribute of a loss term (e.g. ADM's γ), saved in checkpoints."""

from __future__ import annotations

import logging
import math

from ignite.engine import Engine, Events

__all__ = ["GeometricSchedule"]


def _positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


class GeometricSchedule:
    """Sets ``target.<attribute>`` after ``e`` completed epochs to ``min(maximum, start · growth^max(0, e − delay))``.

    ``growth = 1`` keeps it constant. ADM (Marin et al., CVPR 2019) weighs the coupling ``γ KL(X ‖ S)``
    between the network and its proposals with ``γ``; growing ``γ`` ties the two closer as training
    goes on. ``state_dict`` / ``load_state_dict`` keep the epoch count, so a resumed run continues
    the schedule.

    Args:
        target: the object whose attribute is set (e.g. a :class:`~wss_monai.losses.ADMLoss`).
        attribute: its name (``"gamma"``).
        start: the value during the first epoch (> 0).
        growth: factor per epoch (> 0).
        maximum: upper bound, or ``None``.
        delay: completed epochs before the growth begins (e.g. ADM's warm-up epochs, so that ``γ`` starts at
            ``start`` when the ADM term does).
        summary_writer: optional TensorBoard writer; the value is logged as ``schedule/<attribute>``.

    Example:
        >>> from types import SimpleNamespace
        >>> term = SimpleNamespace(gamma=0.0)
        >>> schedule = GeometricSchedule(term, "gamma", start=1.0, growth=2.0, maximum=3.0)
        >>> term.gamma, [schedule.value_after(e) for e in range(4)]
        (1.0, [1.0, 2.0, 3.0, 3.0])
        >>> [GeometricSchedule(term, "gamma", start=1.0, growth=2.0, delay=2).value_after(e) for e in range(5)]
        [1.0, 1.0, 1.0, 2.0, 4.0]
    """

    def __init__(
        self,
        target,
        attribute: str,
        start: float,
        growth: float = 1.0,
        maximum: float | None = None,
        summary_writer=None,
        delay: int = 0,
        name: str = "wss_monai.parameter_schedule",
    ) -> None:
        if not hasattr(target, attribute):
            raise ValueError(f"{type(target).__name__} has no attribute {attribute!r} to schedule")
        self.target, self.attribute = target, attribute
        self.start, self.growth = _positive("start", start), _positive("growth", growth)
        self.maximum = None if maximum is None else _positive("maximum", maximum)
        if isinstance(delay, bool) or not isinstance(delay, int) or delay < 0:
            raise ValueError(f"delay must be an integer >= 0 (epochs), got {delay!r}")
        self.delay = delay
        self.summary_writer = summary_writer
        self.logger = logging.getLogger(name)
        self.epochs = 0
        setattr(self.target, self.attribute, self.value_after(0))

    def value_after(self, epochs: int) -> float:
        """The value after ``epochs`` completed epochs."""
        value = self.start * self.growth ** max(0, epochs - self.delay)
        return value if self.maximum is None else min(value, self.maximum)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        self.epochs += 1
        value = self.value_after(self.epochs)
        setattr(self.target, self.attribute, value)
        self.logger.info("epoch %d: %s %.4g", engine.state.epoch, self.attribute, value)
        if self.summary_writer is not None:
            self.summary_writer.add_scalar(f"schedule/{self.attribute}", value, engine.state.epoch)

    def state_dict(self) -> dict:
        return {"attribute": self.attribute, "epochs": self.epochs}

    def load_state_dict(self, state: dict) -> None:
        """Restores the epoch count (the schedule's parameters come from the config) and sets the value."""
        if state.get("attribute", self.attribute) != self.attribute:
            raise ValueError(f"the checkpoint schedules {state['attribute']!r}, this handler {self.attribute!r}")
        self.epochs = int(state["epochs"])
        setattr(self.target, self.attribute, self.value_after(self.epochs))
