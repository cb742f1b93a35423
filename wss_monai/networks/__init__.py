"""Networks beyond MONAI's: the size regressor of curriculum semi-supervision and its two-stage helpers (its
training is :mod:`wss_monai.experiments.size_regression`); the CAM tag classifier of SEC."""

from wss_monai.networks.cam import CAMClassifier, class_activation_maps
from wss_monai.networks.curriculum import (
    load_network_copy,
    load_size_regressor,
    save_size_regressor,
    slices_and_sizes,
)
from wss_monai.networks.size_regressor import SizeRegressor, dihedral_augment, predict_sizes

__all__ = [
    "CAMClassifier",
    "class_activation_maps",
    "SizeRegressor",
    "dihedral_augment",
    "load_network_copy",
    "load_size_regressor",
    "predict_sizes",
    "save_size_regressor",
    "slices_and_sizes",
]
