"""Dense CRF loss with a Gaussian kernel over position and intensity, filtered on the permutohedral lattice.

Tang, Perazzi, Djelouah, Ben Ayed, Schroers and Boykov, "On regularized losses for weakly-supervised
CNN segmentation", ECCV 2018 (rloss). The kernel between voxels i and j is

.. math:: W_{ij} = \\exp\\left(-\\frac{\\lVert x_i - x_j \\rVert^2}{2σ_{xy}^2}
          - \\frac{\\lVert I_i - I_j \\rVert^2}{2σ_I^2}\\right)

(positions in units of the smallest voxel side, ``spacing`` making anisotropic volumes right;
any number of image channels). The loss, per voxel of the image,

.. math:: L = \\frac{1}{|Ω|} \\sum_{i, j} W_{ij} (1 - S_i \\cdot S_j)
          = \\frac{1}{|Ω|}\\left(\\mathbf 1^T W \\mathbf 1 - \\sum_k S_k^T W S_k\\right)

is the relaxed dense Potts energy: it differs from Tang's ``−Σ_k S_kᵀ W S_k / |Ω|`` by a constant,
so it has the same gradient ``−2 W S_k / |Ω|``, and it is 0 for a constant segmentation. ``W S``
is computed by :class:`wss_monai.filtering.PermutohedralLattice` (never an N × N matrix), on CPU
or GPU, with autograd through the filtering. As in rloss, ``scale_factor < 1`` computes the loss
on a downsampled copy of the image and the softmax (σ_xy stays in full-resolution voxels and the
value is rescaled to approximate the full-resolution loss).

The lattice approximates the Gaussian (see :mod:`wss_monai.filtering.permutohedral`): where the
points are dense on the scale of the σ's, as the pixels of an image are in position, ``W v`` is
within a few per cent of the exact sum; a point with no neighbour within σ gets 0.6–0.9 of its
exact self-weight, less in higher dimensions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from wss_monai.filtering import PermutohedralLattice
from wss_monai.losses.base import WeakLoss, reduce_per_image
from wss_monai.losses.crf_inputs import (
    check_channel_values,
    check_scale_factor,
    check_sigma,
    check_sigmas,
    check_spacing,
    crf_inputs,
    softmax_probabilities,
)

__all__ = ["DenseCRFLoss", "bilateral_features", "dense_crf_energy"]


def bilateral_features(
    image: torch.Tensor,
    sigma_xy: float,
    sigma_intensity: float | Sequence[float],
    spacing: Sequence[float] | None = None,
    step: Sequence[float] | None = None,
) -> torch.Tensor:
    """Per-voxel features ``(position / σ_xy, intensity / σ_I)``, flattened to ``(B · N, dims + C)``.

    Args:
        image: ``(B, C, *spatial)``.
        sigma_xy: spatial σ in units of the smallest voxel side.
        sigma_intensity: intensity σ, one for all channels or one per channel.
        spacing: voxel size per axis (``None``: isotropic).
        step: distance between neighbouring samples per axis, in voxels of the original grid
            (a downsampled copy has steps > 1); ``None``: 1.
    """
    batch, channels, *spatial = image.shape
    dims = len(spatial)
    relative = [1.0] * dims if spacing is None else [s / min(spacing) for s in spacing]
    step = [1.0] * dims if step is None else list(step)
    axes = [
        torch.arange(n, device=image.device, dtype=torch.float32) * (st * rel / sigma_xy)
        for n, st, rel in zip(spatial, step, relative)
    ]
    grids = torch.meshgrid(*axes, indexing="ij")
    # an axis of size 1 (a single-slice volume) carries no position: leaving it out keeps the lattice's dimension
    position = torch.stack([g for g, n in zip(grids, spatial) if n > 1] or [grids[0]], 0)
    sigmas = torch.as_tensor(sigma_intensity, dtype=torch.float32, device=image.device).reshape(-1)
    if sigmas.numel() not in (1, channels):
        raise ValueError(f"sigma_intensity must hold 1 or {channels} values (one per channel), got {sigmas.numel()}")
    intensity = image.float() / sigmas.view(1, -1, *[1] * len(spatial))
    features = torch.cat([position.expand(batch, *position.shape), intensity], 1)
    return features.flatten(2).transpose(1, 2).reshape(batch * spatial_size(spatial), -1)


def spatial_size(spatial: Sequence[int]) -> int:
    """Number of voxels of a spatial shape."""
    return int(torch.Size(spatial).numel())


class DenseCRFLoss(WeakLoss):
    """Relaxed dense Potts (CRF) loss of Tang et al. 2018, with fast bilateral filtering (see the module).

    Args:
        image_key: batch key of the image ``(B, C, H, W[, D])``; any number of channels.
        sigma_xy: spatial σ, in voxels (units of the smallest voxel side with ``spacing``).
        sigma_intensity: intensity σ in image units (one value, or one per channel).
        spacing: voxel size per spatial axis; ``None``: isotropic.
        scale_factor: computes the loss on a copy resized by this factor (one value or one per
            spatial axis; rloss uses 0.5 in 2D); 1: full resolution.
        reduction: ``"mean"``/``"sum"`` over images, or ``"none"`` (``(B,)``).

    Shapes:
        logits ``(B, K, H, W[, D])``; image ``(B, C, H, W[, D])``; output a scalar or ``(B,)``.

    Example:
        >>> import torch
        >>> image = torch.zeros(1, 1, 4, 4)
        >>> uniform = DenseCRFLoss(sigma_xy=2.0, sigma_intensity=1.0)(torch.zeros(1, 2, 4, 4), {"image": image})
        >>> split = torch.zeros(1, 2, 4, 4)
        >>> split[:, 0, :, :2] = 10.0  # two confident halves: a cut through a constant image costs more
        >>> bool(DenseCRFLoss(sigma_xy=2.0, sigma_intensity=1.0)(split, {"image": image}) < uniform)
        True
    """

    def __init__(
        self,
        image_key: str = "image",
        sigma_xy: float = 50.0,
        sigma_intensity: float | Sequence[float] = 0.5,
        spacing: Sequence[float] | None = None,
        scale_factor: float | Sequence[float] = 1.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction=reduction)
        self.image_key = image_key
        self.sigma_xy = check_sigma("sigma_xy", sigma_xy)
        self.sigma_intensity = check_sigmas("sigma_intensity", sigma_intensity)
        self.spacing = None if spacing is None else [float(s) for s in spacing]
        self.scale_factor = check_scale_factor(scale_factor)

    def forward(self, logits: torch.Tensor, batch: Mapping) -> torch.Tensor:
        image, dims = crf_inputs(self, logits, batch, self.image_key)
        spacing = check_spacing(self.spacing, dims)
        check_channel_values(self, "sigma_intensity", self.sigma_intensity, image, self.image_key, dims)
        energy = dense_crf_energy(
            softmax_probabilities(logits), image, self.sigma_xy, self.sigma_intensity, spacing, self.scale_factor
        )
        return reduce_per_image(energy, self.reduction)


def dense_crf_energy(
    probs: torch.Tensor,
    image: torch.Tensor,
    sigma_xy: float,
    sigma_intensity: float | Sequence[float],
    spacing: Sequence[float] | None = None,
    scale_factor: float | Sequence[float] = 1.0,
) -> torch.Tensor:
    """``Σ_ij W_ij (1 − S_i · S_j) / |Ω|`` per image, differentiable in the probabilities.

    Args:
        probs: ``(B, K, *spatial)`` class probabilities (or any soft segmentation).
        image: ``(B, C, *spatial)``.
        sigma_xy, sigma_intensity, spacing, scale_factor: as in :class:`DenseCRFLoss`.

    Returns:
        ``(B,)``.
    """
    dims = probs.ndim - 2
    full_size = probs.shape[2:].numel()
    factors = list(scale_factor) if isinstance(scale_factor, Sequence) else [scale_factor]
    factors = factors * dims if len(factors) == 1 else factors
    if any(f != 1 for f in factors):
        size = [max(1, round(n * f)) for n, f in zip(probs.shape[2:], factors)]
        mode = "bilinear" if dims == 2 else "trilinear"
        steps = [n / m for n, m in zip(probs.shape[2:], size)]
        probs = F.interpolate(probs, size=size, mode=mode, align_corners=False)
        image = F.interpolate(image, size=size, mode=mode, align_corners=False)
    else:
        steps = None
    batch_size, classes = probs.shape[:2]
    size = probs.shape[2:].numel()
    features = bilateral_features(image, sigma_xy, sigma_intensity, spacing, steps)
    groups = torch.arange(batch_size, device=probs.device).repeat_interleave(size)
    lattice = PermutohedralLattice(features, groups)
    values = probs.flatten(2).transpose(1, 2).reshape(-1, classes)
    energy = _DensePottsEnergy.apply(values, lattice, groups, batch_size)
    # each of the `size` samples stands for full_size / size voxels: rescaled to the full-resolution loss
    return energy * (full_size / size) / size


class _DensePottsEnergy(torch.autograd.Function):
    """``E_b = Σ_{i, j ∈ b} W_ij (1 − S_i · S_j)`` per group, with the gradient ``−2 (W S) ∂E_b`` of Tang et al.

    ``W`` is the lattice's symmetric filter, so the gradient needs no second filtering: ``W S`` from the
    forward pass is kept (rloss computes its gradient the same way).
    """

    @staticmethod
    def forward(ctx, values, lattice, groups, num_groups):
        ones = values.new_ones(values.shape[0], 1)
        filtered = lattice.filter(torch.cat([values, ones], 1))  # the ones column gives 1ᵀ W 1
        per_point = filtered[:, -1] - (values * filtered[:, :-1]).sum(1)
        ctx.save_for_backward(filtered[:, :-1], groups)
        return values.new_zeros(num_groups).index_add(0, groups, per_point)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_energy):
        filtered, groups = ctx.saved_tensors
        return -2.0 * filtered * grad_energy[groups][:, None], None, None, None
