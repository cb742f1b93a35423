"""Reproductions of published experiments, each a function that trains with the MONAI engines and writes its metrics."""

from wss_monai.experiments.two_circles import (
    TWO_CIRCLES_METHODS,
    ConstrainedCompositeLoss,
    EpochRecorder,
    build_two_circles_loss,
    run_two_circles,
    summarise_history,
)

__all__ = [
    "TWO_CIRCLES_METHODS",
    "ConstrainedCompositeLoss",
    "EpochRecorder",
    "build_two_circles_loss",
    "run_two_circles",
    "summarise_history",
]
