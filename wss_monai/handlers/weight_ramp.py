"""A warm-up and linear ramp of one loss term's weight, per epoch, saved in checkpoints."""

from __future__ import annotations

import logging
import math

from ignite.engine import Engine, Events

__all__ = ["LossWeightRamp"]


def _check(name: str, value, integer: bool = False) -> float | int:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    if not ok or (integer and int(value) != value):
        kind = "an integer" if integer else "a finite number"
        raise ValueError(f"{name} must be {kind} >= 0, got {value!r}")
    return int(value) if integer else float(value)


class LossWeightRamp:
    """Sets the weight of one term of a :class:`~wss_monai.losses.CompositeLoss` from the epoch count.

    After ``e`` completed epochs the weight is

    .. math:: w_e = w · \\mathrm{clip}\\left(\\frac{e - \\text{warmup} + 1}{\\text{ramp} + 1}, 0, 1\\right)

    i.e. 0 for the first ``warmup`` epochs, then rising linearly to ``w`` over ``ramp`` more
    epochs (``warmup = ramp = 0``: ``w`` from the start), and ``after_stop`` (0 unless given) from
    ``stop`` completed epochs on when ``stop`` is given. Regularised losses such as the CRF losses
    are often switched on once partial cross-entropy has found the structures (Tang et al. 2018
    start from a network trained on the seeds alone); ``stop`` ends a warm-up term that hands over
    to another one (the box recipe's masked cross-entropy before the box constraints).

    ``state_dict`` / ``load_state_dict`` keep the epoch count, so a resumed run continues the ramp.

    Args:
        loss: the composite loss whose ``weights[term]`` is set.
        term: name of the term.
        weight: final weight ``w`` (>= 0).
        warmup: epochs at weight 0.
        ramp: epochs of linear increase after the warm-up.
        stop: completed epochs after which the weight is ``after_stop`` for good (``None``: never);
            more than ``warmup``.
        after_stop: the weight from ``stop`` on (>= 0): 0 hands the term over for good, a small weight
            keeps it beside the terms that take over.
        summary_writer: optional TensorBoard writer; the weight is logged as ``weights/<term>``.

    Example:
        >>> from wss_monai.losses import CompositeLoss, GridPottsLoss, PartialCrossEntropyLoss
        >>> loss = CompositeLoss({"pce": PartialCrossEntropyLoss(), "crf": GridPottsLoss()})
        >>> ramp = LossWeightRamp(loss, "crf", weight=2.0, warmup=1, ramp=1)
        >>> [ramp.weight_after(e) for e in range(4)]
        [0.0, 1.0, 2.0, 2.0]
        >>> loss.weights["crf"]
        0.0
        >>> [LossWeightRamp(loss, "pce", weight=1.0, stop=2).weight_after(e) for e in range(4)]
        [1.0, 1.0, 0.0, 0.0]
        >>> [LossWeightRamp(loss, "pce", weight=1.0, stop=2, after_stop=0.1).weight_after(e) for e in range(4)]
        [1.0, 1.0, 0.1, 0.1]
    """

    def __init__(
        self,
        loss,
        term: str,
        weight: float,
        warmup: int = 0,
        ramp: int = 0,
        stop: int | None = None,
        summary_writer=None,
        after_stop: float = 0.0,
        name: str = "wss_monai.weight_ramp",
    ) -> None:
        weights = getattr(loss, "weights", None)
        if not isinstance(weights, dict):
            raise TypeError(f"loss must be a CompositeLoss (with a 'weights' dict), got {type(loss).__name__}")
        if term not in weights:
            raise ValueError(f"loss has no term named {term!r}; its terms are {sorted(weights)}")
        self.loss, self.term = loss, term
        self.weight = _check("weight", weight)
        self.warmup = _check("warmup", warmup, integer=True)
        self.ramp = _check("ramp", ramp, integer=True)
        self.stop = None if stop is None else _check("stop", stop, integer=True)
        self.after_stop = _check("after_stop", after_stop)
        if self.stop is not None and self.stop <= self.warmup:
            raise ValueError(f"stop ({stop}) must be more than warmup ({warmup}): the term would never be used")
        self.summary_writer = summary_writer
        self.logger = logging.getLogger(name)
        self.epochs = 0
        self.loss.weights[self.term] = self.weight_after(0)

    def weight_after(self, epochs: int) -> float:
        """The weight after ``epochs`` completed epochs."""
        if self.stop is not None and epochs >= self.stop:
            return self.after_stop
        fraction = (epochs - self.warmup + 1) / (self.ramp + 1)
        return self.weight * min(max(fraction, 0.0), 1.0)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        self.epochs += 1
        value = self.weight_after(self.epochs)
        self.loss.weights[self.term] = value
        self.logger.info("epoch %d: weight of %r %.4g", engine.state.epoch, self.term, value)
        if self.summary_writer is not None:
            self.summary_writer.add_scalar(f"weights/{self.term}", value, engine.state.epoch)

    def state_dict(self) -> dict:
        return {
            "term": self.term,
            "weight": self.weight,
            "warmup": self.warmup,
            "ramp": self.ramp,
            "stop": self.stop,
            "after_stop": self.after_stop,
            "epochs": self.epochs,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restores the epoch count (the schedule's parameters come from the config) and sets the weight."""
        if state.get("term", self.term) != self.term:
            raise ValueError(f"the checkpoint ramps the term {state['term']!r}, this handler ramps {self.term!r}")
        self.epochs = int(state["epochs"])
        self.loss.weights[self.term] = self.weight_after(self.epochs)
