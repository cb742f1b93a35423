"""The weight schedule of the boundary loss: α grows after every epoch, saved in checkpoints."""

from __future__ import annotations

import logging
import math

from ignite.engine import Engine, Events

__all__ = ["BoundaryWeightSchedule", "BOUNDARY_SCHEDULE_MODES"]

BOUNDARY_SCHEDULE_MODES = ("rebalance", "increase", "constant")


def _check_alpha(name: str, value, low_open: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (low_open and value == 0):
        raise ValueError(f"{name} must be a finite number {'>' if low_open else '>='} 0, got {value!r}")
    return float(value)


class BoundaryWeightSchedule:
    """Sets the regional and boundary weights of a :class:`~wss_monai.losses.composite.CompositeLoss` each epoch.

    Kervadec et al. (MIDL 2019, MedIA 2021) always pair the boundary loss L_B with a regional loss
    L_R (alone, L_B collapses to empty predictions) and give L_B a weight α that starts small and
    grows, with α_e = min(alpha0 + e · step, alpha_max) after e completed epochs:

    - ``"rebalance"``: L = (1 − α) L_R + α L_B (the paper's default; α0 = 0.01, step 0.01);
    - ``"increase"``: L = L_R + α L_B;
    - ``"constant"``: L = L_R + alpha0 L_B for the whole run (``step`` and ``alpha_max`` unused).

    The weights are written into ``loss.weights`` on construction (epoch 0) and after every
    ``EPOCH_COMPLETED``, so every epoch trains with the weights of its start. This follows the
    paper: the published code instead subtracts ``step`` from the regional weight with a floor at
    0.1 while the boundary weight keeps growing (and starts the regional weight at 1), so its two
    weights do not sum to 1; here they do in ``"rebalance"``, and ``alpha_max <= 1`` is required.

    The handler has ``state_dict`` and ``load_state_dict``: passing it in a ``CheckpointSaver``'s
    ``save_dict`` resumes the schedule where it stopped (epoch count, mode, alpha0, step and
    alpha_max are restored; a checkpoint of another mode raises ``ValueError``).

    Args:
        loss: the composite loss whose ``weights`` are set.
        regional: name of the regional term in ``loss``.
        boundary: name of the boundary term in ``loss``.
        mode: ``"rebalance"``, ``"increase"`` or ``"constant"``.
        alpha0: initial α (>= 0).
        step: increase of α per epoch (>= 0).
        alpha_max: cap on α (>= alpha0; at most 1 in ``"rebalance"``).
        summary_writer: optional TensorBoard ``SummaryWriter``; α is written as ``boundary/alpha``.

    Example:
        >>> from monai.losses import DiceLoss
        >>> from wss_monai.losses.boundary import BoundaryLoss
        >>> from wss_monai.losses.composite import CompositeLoss, TargetLoss
        >>> regional = TargetLoss(DiceLoss(to_onehot_y=True, softmax=True), target_key="label")
        >>> loss = CompositeLoss({"regional": regional, "boundary": BoundaryLoss()})
        >>> schedule = BoundaryWeightSchedule(loss, mode="rebalance")
        >>> loss.weights
        {'regional': 0.99, 'boundary': 0.01}
        >>> schedule.attach(trainer)  # doctest: +SKIP
    """

    def __init__(
        self,
        loss,
        regional: str = "regional",
        boundary: str = "boundary",
        mode: str = "rebalance",
        alpha0: float = 0.01,
        step: float = 0.01,
        alpha_max: float = 1.0,
        summary_writer=None,
        name: str = "wss_monai.boundary_schedule",
    ) -> None:
        weights = getattr(loss, "weights", None)
        if not isinstance(weights, dict):
            raise TypeError(f"loss must be a CompositeLoss (with a 'weights' dict), got {type(loss).__name__}")
        missing = [n for n in (regional, boundary) if n not in weights]
        if missing:
            raise ValueError(f"loss has no term named {missing}; its terms are {sorted(weights)}")
        if regional == boundary:
            raise ValueError(f"regional and boundary must name two different terms, got {regional!r} twice")
        if mode not in BOUNDARY_SCHEDULE_MODES:
            raise ValueError(f"mode must be one of {BOUNDARY_SCHEDULE_MODES}, got {mode!r}")
        self.alpha0 = _check_alpha("alpha0", alpha0)
        self.step = _check_alpha("step", step)
        self.alpha_max = _check_alpha("alpha_max", alpha_max)
        if mode != "constant" and self.alpha_max < self.alpha0:
            raise ValueError(f"alpha_max ({alpha_max}) must not be below alpha0 ({alpha0})")
        if mode == "rebalance" and max(self.alpha0, self.alpha_max) > 1:
            raise ValueError(
                f"rebalance weighs the regional term by 1 - alpha: alpha0 and alpha_max must be <= 1, "
                f"got alpha0={alpha0}, alpha_max={alpha_max}"
            )
        self.loss, self.regional, self.boundary, self.mode = loss, regional, boundary, mode
        self.summary_writer = summary_writer
        self.logger = logging.getLogger(name)
        self.epochs = 0
        self._apply()

    @property
    def alpha(self) -> float:
        """α after ``self.epochs`` completed epochs (computed from the count, so no rounding drift)."""
        if self.mode == "constant":
            return self.alpha0
        return min(self.alpha0 + self.epochs * self.step, self.alpha_max)

    def weights(self) -> tuple[float, float]:
        """The current (regional, boundary) weights."""
        alpha = self.alpha
        return (1.0 - alpha if self.mode == "rebalance" else 1.0), alpha

    def _apply(self) -> None:
        self.loss.weights[self.regional], self.loss.weights[self.boundary] = self.weights()

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        self.epochs += 1
        self._apply()
        w_r, w_b = self.weights()
        self.logger.info(
            "epoch %d: boundary weight %.4g, regional weight %.4g (%s)", engine.state.epoch, w_b, w_r, self.mode
        )
        if self.summary_writer is not None:
            self.summary_writer.add_scalar("boundary/alpha", w_b, engine.state.epoch)

    def state_dict(self) -> dict:
        return {
            "mode": self.mode,
            "alpha0": self.alpha0,
            "step": self.step,
            "alpha_max": self.alpha_max,
            "epochs": self.epochs,
            "alpha": self.alpha,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore the epoch count and the schedule's parameters, then write the weights into the loss."""
        if state.get("mode", self.mode) != self.mode:
            raise ValueError(f"the checkpoint holds a {state['mode']!r} schedule, this handler is {self.mode!r}")
        self.alpha0 = float(state.get("alpha0", self.alpha0))
        self.step = float(state.get("step", self.step))
        self.alpha_max = float(state.get("alpha_max", self.alpha_max))
        self.epochs = int(state["epochs"])
        self._apply()
