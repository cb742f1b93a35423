"""Reproductions of published experiments, each a function that trains with the MONAI engines and writes its metrics."""

from wss_monai.experiments.size_regression import (
    AugmentedSlices,
    DihedralAugmentPrepare,
    PermutationSampler,
    ScaledMSELoss,
    build_size_regressor_trainer,
    run_size_regressor_stage,
    train_size_regressor,
)
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
    "AugmentedSlices",
    "DihedralAugmentPrepare",
    "PermutationSampler",
    "ScaledMSELoss",
    "build_size_regressor_trainer",
    "run_size_regressor_stage",
    "train_size_regressor",
    "ConstrainedCompositeLoss",
    "EpochRecorder",
    "build_two_circles_loss",
    "run_two_circles",
    "summarise_history",
]
