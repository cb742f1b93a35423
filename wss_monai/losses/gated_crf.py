"""Local-window (gated) CRF loss: the dense CRF kernel restricted to a window around each voxel.

Obukhov, Georgoulis, Dai and Van Gool, "Gated CRF loss for weakly supervised semantic image
segmentation", arXiv:1906.04651, 2019; used on ACDC scribbles by WSL4MIS (Luo et al., MICCAI 2022).

.. math:: L = \\frac{1}{|Ω|} \\sum_i \\sum_{j ∈ N_r(i), j ≠ i} K_{ij} (1 - S_i \\cdot S_j), \\qquad
          K_{ij} = w \\exp\\left(-\\frac{\\lVert x_i - x_j \\rVert^2}{2σ_{xy}^2}
          - \\frac{\\lVert I_i - I_j \\rVert^2}{2σ_I^2}\\right)

over ordered pairs in a ``(2 r + 1)`` window per axis (``r`` may differ per axis, e.g. 5 × 5 × 1
on thick-slice MRI). ``1 − S_i · S_j`` is the Potts compatibility summed over classes, as in the
authors' code. It is computed by shifting the softmax once per offset of half the window and
adding (each unordered pair once, counted twice), so memory stays O(K × voxels) instead of the
``(2 r + 1)^dims``-fold copy that ``F.unfold`` makes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from wss_monai.losses.base import WeakLoss, reduce_per_image
from wss_monai.losses.crf_inputs import (
    check_channel_values,
    check_sigma,
    check_sigmas,
    check_spacing,
    crf_inputs,
    softmax_probabilities,
)
from wss_monai.losses.pairwise import offset_lengths, pair_views, pairwise_potts_energy, window_offsets

__all__ = ["GatedCRFLoss"]


class GatedCRFLoss(WeakLoss):
    """Gated CRF loss with one Gaussian kernel over position and intensity (see the module).

    Args:
        image_key: batch key of the image ``(B, C, H, W[, D])``; any number of channels.
        sigma_xy: spatial σ, in voxels (units of the smallest voxel side with ``spacing``).
        sigma_intensity: intensity σ in image units (one value, or one per channel).
        radius: window radius, one value or one per spatial axis (5: an 11 × 11 window in 2D).
        spacing: voxel size per spatial axis; ``None``: isotropic.
        kernel_weight: ``w``, the weight of the kernel.
        reduction: ``"mean"``/``"sum"`` over images, or ``"none"`` (``(B,)``).

    Shapes:
        logits ``(B, K, H, W[, D])``; image ``(B, C, H, W[, D])``; output a scalar or ``(B,)``.

    Example:
        >>> import torch
        >>> loss = GatedCRFLoss(sigma_xy=1e6, sigma_intensity=1e6, radius=1)  # every kernel value ≈ 1
        >>> logits = torch.zeros(1, 2, 1, 2)                                   # S = (0.5, 0.5) everywhere
        >>> round(loss(logits, {"image": torch.zeros(1, 1, 1, 2)}).item(), 4)  # 2 ordered pairs × 0.5 / 2
        0.5
    """

    def __init__(
        self,
        image_key: str = "image",
        sigma_xy: float = 6.0,
        sigma_intensity: float | Sequence[float] = 0.5,
        radius: int | Sequence[int] = 5,
        spacing: Sequence[float] | None = None,
        kernel_weight: float = 1.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction=reduction)
        self.image_key = image_key
        self.sigma_xy = check_sigma("sigma_xy", sigma_xy)
        self.sigma_intensity = check_sigmas("sigma_intensity", sigma_intensity)
        radii = list(radius) if isinstance(radius, Sequence) else [radius]
        if not radii or any(isinstance(r, bool) or not isinstance(r, int) or r < 0 for r in radii) or not any(radii):
            raise ValueError(f"radius must be an int >= 0 or one per axis, not all 0, got {radius!r}")
        self.radius = radii
        self.spacing = None if spacing is None else [float(s) for s in spacing]
        self.kernel_weight = check_sigma("kernel_weight", kernel_weight)

    def forward(self, logits: torch.Tensor, batch: Mapping) -> torch.Tensor:
        image, dims = crf_inputs(self, logits, batch, self.image_key)
        spacing = check_spacing(self.spacing, dims)
        if len(self.radius) not in (1, dims):
            raise ValueError(f"radius must hold 1 or {dims} values for {dims}D images, got {self.radius}")
        check_channel_values(self, "sigma_intensity", self.sigma_intensity, image, self.image_key, dims)
        radius = self.radius * dims if len(self.radius) == 1 else self.radius
        offsets = window_offsets(radius)
        lengths = offset_lengths(offsets, spacing)
        sigmas = torch.as_tensor(self.sigma_intensity, device=image.device).view(1, -1, *[1] * dims)
        spatial = [self.kernel_weight * math.exp(-0.5 * (length / self.sigma_xy) ** 2) for length in lengths]
        features = image / sigmas
        edges = ((o, _window_kernel(features, o, w)) for o, w in zip(offsets, spatial))  # computed one at a time
        energy = 2.0 * pairwise_potts_energy(softmax_probabilities(logits), edges)  # ordered pairs: each twice
        return reduce_per_image(energy / logits.shape[2:].numel(), self.reduction)


def _window_kernel(features: torch.Tensor, offset, spatial_weight: float) -> torch.Tensor:
    """``w exp(−‖x_i − x_j‖² / 2σ_xy²) exp(−‖f_i − f_j‖² / 2)`` of the pairs at ``offset`` (no gradient)."""
    with torch.no_grad():
        fa, fb = pair_views(features, offset)
        return torch.exp(-0.5 * (fa - fb).pow(2).sum(1, keepdim=True)).mul_(spatial_weight)
