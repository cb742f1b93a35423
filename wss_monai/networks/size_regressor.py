"""Size regressor of curriculum semi-supervised segmentation: predict the target size from the image.

Kervadec et al., "Curriculum semi-supervised segmentation", MICCAI 2019: a regression network
``R`` is trained on the slices of the ``n`` fully annotated patients to predict the size (pixel
count) of the target class from the image, with a squared error and a training set augmented ×10
by random flips and rotations. Its predictions then give size bounds ``[(1 - γ) R(x), (1 + γ) R(x)]``
(γ = 0.1) on the unlabelled slices, enforced by the size penalty
(:class:`wss_monai.transforms.predicted_bounds.PredictedSizeBoundsd`). Published ACDC LV Dice for
n = 5 / 10 / 20 labelled patients: full supervision alone 24.8 / 44.4 / 71.7, curriculum 53.1 /
58.5 / 72.7, oracle bounds 74.3 / 75.7 / 79.0.

The network here is a small CNN of MONAI ``Convolution`` blocks (stride 2), global average pooling
and a linear layer, with a softplus output times a per-class ``scale`` (the mean training size),
so that outputs start near the mean size and are never negative. The paper's regressor was a
modified ENet encoder; any module mapping ``(B, C, H, W)`` to ``(B, K)`` can replace this one.

Example:
    >>> import torch
    >>> net = SizeRegressor(num_outputs=2, channels=(4, 8))
    >>> net(torch.zeros(3, 1, 32, 32)).shape
    torch.Size([3, 2])
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.networks.blocks import Convolution
from torch import nn

__all__ = ["SizeRegressor", "dihedral_augment", "predict_sizes"]

_SOFTPLUS_ONE = math.log(math.e - 1)
"""``softplus⁻¹(1)``: the head's initial bias, so an untrained network predicts ``scale``."""


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class SizeRegressor(nn.Module):
    """CNN mapping an image ``(B, C, H, W)`` to class sizes ``(B, K) ≥ 0`` in pixels.

    ``R(x) = scale · softplus(W · avgpool(f(x)) + b)``, with ``f`` a stack of MONAI ``Convolution``
    blocks (3 × 3, stride 2, norm + activation). ``scale`` ``(K,)`` is a buffer (saved with the
    weights) set by :func:`wss_monai.experiments.train_size_regressor` to the mean training size of
    each class, so that the regression works on sizes of order 1.

    Args:
        in_channels: image channels C.
        num_outputs: number of predicted sizes K (one per target class).
        channels: output channels of each convolution block (its length is the number of blocks).
        strides: stride of each block (an int for all).
        spatial_dims: 2 (slices) or 3.
        act: MONAI activation of the blocks.
        norm: MONAI normalisation of the blocks. Batch norm (default) keeps the absolute feature
            level that the size depends on; instance norm would remove it.
        dropout: dropout before the linear head.
        scale: initial ``scale`` (a number or K numbers).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_outputs: int = 1,
        channels: Sequence[int] = (16, 32, 64, 128),
        strides: int | Sequence[int] = 2,
        spatial_dims: int = 2,
        act: str | tuple = "RELU",
        norm: str | tuple | None = "BATCH",
        dropout: float | None = None,
        scale: float | Sequence[float] = 1.0,
    ) -> None:
        super().__init__()
        in_channels = _check_int("in_channels", in_channels, 1)
        num_outputs = _check_int("num_outputs", num_outputs, 1)
        if spatial_dims not in (2, 3) or isinstance(spatial_dims, bool):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
        channels = list(channels)
        if not channels:
            raise ValueError("channels must name at least one block, got an empty sequence")
        for c in channels:
            _check_int("channels", c, 1)
        strides = [strides] * len(channels) if isinstance(strides, numbers.Integral) else list(strides)
        if len(strides) != len(channels):
            raise ValueError(f"strides must have one value per block ({len(channels)}), got {strides}")
        for s in strides:
            _check_int("strides", s, 1)
        if dropout is not None and not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        blocks = []
        previous = in_channels
        for c, s in zip(channels, strides):
            blocks.append(Convolution(spatial_dims, previous, c, strides=s, kernel_size=3, act=act, norm=norm))
            previous = c
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1) if spatial_dims == 2 else nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.head = nn.Linear(previous, num_outputs)
        nn.init.constant_(self.head.bias, _SOFTPLUS_ONE)
        self.register_buffer("scale", self._scale_tensor(scale, num_outputs))
        self.in_channels, self.num_outputs, self.spatial_dims = in_channels, num_outputs, int(spatial_dims)

    @staticmethod
    def _scale_tensor(scale: Any, num_outputs: int) -> torch.Tensor:
        values = torch.as_tensor(scale, dtype=torch.float32).reshape(-1)
        if values.numel() == 1:
            values = values.expand(num_outputs).clone()
        if values.numel() != num_outputs or not torch.isfinite(values).all() or (values <= 0).any():
            raise ValueError(f"scale must be one or {num_outputs} finite positive numbers, got {scale!r}")
        return values

    def set_scale(self, scale: float | Sequence[float] | torch.Tensor) -> None:
        """Sets the output ``scale`` (one or K positive numbers)."""
        self.scale.copy_(self._scale_tensor(scale, self.num_outputs).to(self.scale.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: ``(B, C, H, W[, D])``. Returns: sizes ``(B, K)``, non-negative."""
        if x.ndim != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"input must have shape (B, {self.in_channels}, *spatial) with {self.spatial_dims} spatial dims, "
                f"got {tuple(x.shape)}"
            )
        features = self.dropout(self.pool(self.features(x)).flatten(1))
        return nn.functional.softplus(self.head(features)) * self.scale


@torch.no_grad()
def predict_sizes(regressor: nn.Module, images: torch.Tensor | np.ndarray, batch_size: int = 64) -> torch.Tensor:
    """Sizes ``(N, K)`` predicted for images ``(N, C, H, W)``, in eval mode and without gradients.

    The regressor's training flag is restored afterwards. Outputs ``(N,)`` are read as K = 1;
    negative outputs (from a regressor without softplus) are clipped to 0.
    """
    batch_size = _check_int("batch_size", batch_size, 1)
    try:
        parameter = next(regressor.parameters())
        device, dtype = parameter.device, parameter.dtype
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32
    images = torch.as_tensor(np.asarray(images) if isinstance(images, np.ndarray) else images)
    was_training = regressor.training
    regressor.eval()
    try:
        outputs = [
            regressor(images[i : i + batch_size].to(device=device, dtype=dtype))
            for i in range(0, images.shape[0], batch_size)
        ]
    finally:
        regressor.train(was_training)
    sizes = torch.cat(outputs) if outputs else torch.zeros(0, 1)
    if sizes.ndim == 1:
        sizes = sizes[:, None]
    if sizes.ndim != 2 or sizes.shape[0] != images.shape[0]:
        raise ValueError(f"the regressor must return (N, K) sizes for N = {images.shape[0]}, got {tuple(sizes.shape)}")
    return sizes.clamp_min(0)


def dihedral_augment(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random flip / 90° rotation of each 2D image ``(B, C, H, W)``, drawn independently per image.

    Each image is flipped along H and along W with probability 1/2 each and, when square, transposed
    with probability 1/2: one of the 8 symmetries of the square (4 flips when ``H ≠ W``). These keep
    the pixel count of every structure exactly, so the sizes stay valid targets.
    """
    if images.ndim != 4:
        raise ValueError(f"images must have shape (B, C, H, W), got {tuple(images.shape)}")
    draws = torch.rand(3, images.shape[0], generator=generator, device="cpu").lt(0.5)
    draws = draws.to(images.device).reshape(3, -1, 1, 1, 1)
    out = torch.where(draws[0], images.flip(-2), images)
    out = torch.where(draws[1], out.flip(-1), out)
    if images.shape[-1] == images.shape[-2]:
        out = torch.where(draws[2], out.transpose(-1, -2), out)
    return out
