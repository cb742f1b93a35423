"""Networks beyond MONAI's: the size regressor of curriculum semi-supervision."""

from wss_monai.networks.size_regressor import SizeRegressor, dihedral_augment, predict_sizes, train_size_regressor

__all__ = ["SizeRegressor", "dihedral_augment", "predict_sizes", "train_size_regressor"]
