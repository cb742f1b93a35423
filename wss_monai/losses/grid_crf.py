"""Grid Potts CRF: contrast-sensitive edge weights, relaxed losses for gradient descent, exact discrete energy.

Tang et al., "On regularized losses for weakly-supervised CNN segmentation", ECCV 2018; Marin et
al., "Beyond gradient descent for regularized segmentation losses", CVPR 2019. The weights are
those of Boykov and Jolly (ICCV 2001):

.. math:: w_{pq} = \\exp\\left(-\\frac{\\lVert I_p - I_q \\rVert^2}{2σ^2}\\right) / \\mathrm{dist}(p, q),
          \\qquad σ^2 = \\mathrm{mean}_{(p, q)} \\lVert I_p - I_q \\rVert^2

over the pairs of a 4/8-connected 2D or 6/18/26-connected 3D grid; ``‖·‖`` runs over the image
channels and ``dist`` is measured in units of the smallest voxel side, so that anisotropic
volumes (ACDC: 1.5 × 1.5 × 10 mm) weigh their through-plane pairs less. σ² is computed per image.
On a constant image (σ² = 0) every contrast factor is 1.

The energy of a segmentation, per voxel of the image: ``E = Σ_{pq} w_pq [y_p ≠ y_q] / |Ω|``.
Its relaxations of a softmax ``S`` equal it on one-hot inputs:

- bilinear (default): ``Σ w_pq (1 − S_p · S_q)`` (= ``Σ_k S_k(p)(1 − S_k(q))`` symmetrised);
- quadratic: ``Σ w_pq ½ ‖S_p − S_q‖²``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from wss_monai.losses.base import WeakLoss, reduce_per_image
from wss_monai.losses.crf_inputs import check_sigma, check_spacing, crf_inputs, softmax_probabilities
from wss_monai.losses.pairwise import (
    GRID_NEIGHBOURHOODS,
    RELAXATIONS,
    grid_offsets,
    offset_lengths,
    pair_views,
    pairwise_potts_energy,
)

__all__ = ["RELAXATIONS", "GridPottsLoss", "PottsEnergy", "potts_edge_weights", "potts_energy"]

DEFAULT_NEIGHBOURHOOD = {2: 8, 3: 6}
"""8-connected slices; 6-connected volumes, whose through-plane pairs are few and cheap (Boykov and Jolly 2001)."""


def _check_neighbourhood(neighbourhood: int | None) -> None:
    allowed = sorted({n for sizes in GRID_NEIGHBOURHOODS.values() for n in sizes})
    if neighbourhood is not None and neighbourhood not in allowed:
        raise ValueError(f"neighbourhood must be None or one of {allowed}, got {neighbourhood!r}")


def potts_edge_weights(
    image: torch.Tensor,
    neighbourhood: int | None = None,
    spacing: Sequence[float] | None = None,
    sigma: float | None = None,
) -> list[tuple[tuple[int, ...], torch.Tensor]]:
    """Contrast-sensitive Potts weights of every grid edge, one tensor per neighbour offset.

    Args:
        image: ``(B, C, H, W[, D])``, any number of channels.
        neighbourhood: 4 or 8 in 2D, 6, 18 or 26 in 3D; ``None``: 8 in 2D, 6 in 3D.
        spacing: voxel size per spatial axis (e.g. mm); ``None``: isotropic.
        sigma: fixed σ in image units; ``None``: σ² = the image's mean squared neighbour difference.

    Returns:
        ``[(offset, w), ...]`` with ``w`` of shape ``(B, 1, *overlap)`` (see :func:`pair_views`).

    Example:
        >>> import torch
        >>> image = torch.tensor([[[[0.0, 0.0, 1.0]]]])  # one row: σ² = (0 + 1) / 2
        >>> [(o, w.flatten().tolist()) for o, w in potts_edge_weights(image, 4)]
        [((0, 1), [1.0, 0.3678794503211975]), ((1, 0), [])]
    """
    _check_neighbourhood(neighbourhood)
    if image.ndim not in (4, 5):
        raise ValueError(f"image must have shape (B, C, H, W[, D]), got {tuple(image.shape)}")
    dims = image.ndim - 2
    offsets = grid_offsets(dims, neighbourhood or DEFAULT_NEIGHBOURHOOD[dims])
    lengths = offset_lengths(offsets, check_spacing(spacing, dims))
    with torch.no_grad():
        image = image.float()
        squared = [(a - b).pow(2).sum(1, keepdim=True) for a, b in (pair_views(image, o) for o in offsets)]
        if sigma is None:
            total = sum(s.flatten(1).sum(1) for s in squared)
            count = sum(s[0].numel() for s in squared)
            two_sigma2 = 2.0 * total / max(count, 1)  # (B,)
        else:
            sigma = check_sigma("sigma", sigma)
            two_sigma2 = torch.full((image.shape[0],), 2.0 * sigma**2, device=image.device)
        scale = two_sigma2.clamp_min(torch.finfo(torch.float32).tiny).view(-1, *[1] * (dims + 1))
        return [(o, torch.exp(-s / scale) / length) for o, s, length in zip(offsets, squared, lengths)]


def potts_energy(
    segmentation: torch.Tensor,
    image: torch.Tensor,
    neighbourhood: int | None = None,
    spacing: Sequence[float] | None = None,
    sigma: float | None = None,
) -> torch.Tensor:
    """Exact Potts energy ``Σ_pq w_pq [y_p ≠ y_q] / |Ω|`` of a discrete segmentation, per image.

    Args:
        segmentation: class indices ``(B, 1, H, W[, D])`` or ``(B, H, W[, D])`` (e.g. an argmax).
        image: ``(B, C, H, W[, D])``.
        neighbourhood, spacing, sigma: as in :func:`potts_edge_weights`.

    Returns:
        ``(B,)`` float energies.

    Example:
        >>> import torch
        >>> image = torch.zeros(1, 1, 2, 2)                     # constant: every weight is 1
        >>> labels = torch.tensor([[[[0, 1], [0, 1]]]])          # 2 cut edges out of 4 (4-grid)
        >>> potts_energy(labels, image, neighbourhood=4).item()  # 2 / 4 voxels
        0.5
    """
    if segmentation.ndim == image.ndim - 1:
        segmentation = segmentation[:, None]
    expected = (image.shape[0], 1, *image.shape[2:])
    if tuple(segmentation.shape) != expected:
        raise ValueError(
            f"segmentation of shape {tuple(segmentation.shape)} does not match image {tuple(image.shape)}: "
            "expected (B, 1, *spatial) class indices"
        )
    energy = image.new_zeros(image.shape[0], dtype=torch.float32)
    for offset, weight in potts_edge_weights(image, neighbourhood, spacing, sigma):
        a, b = pair_views(segmentation, offset)
        energy = energy + (weight * (a != b)).flatten(1).sum(1)
    return energy / image.shape[2:].numel()


class GridPottsLoss(WeakLoss):
    """Relaxed grid Potts CRF loss on the softmax, with contrast-sensitive weights (see the module).

    .. math:: L = \\frac{1}{|Ω|} \\sum_{(p, q)} w_{pq}\\, (1 - S_p \\cdot S_q)   \\quad\\text{(bilinear)}

    Args:
        image_key: batch key of the image ``(B, C, H, W[, D])`` the weights are computed from.
        neighbourhood: 4 or 8 (2D), 6, 18 or 26 (3D); ``None``: 8 in 2D, 6 in 3D.
        spacing: voxel size per spatial axis; ``None``: isotropic.
        sigma: fixed contrast σ in image units; ``None``: from each image (Boykov–Jolly).
        relaxation: ``"bilinear"`` or ``"quadratic"``.
        reduction: ``"mean"``/``"sum"`` over images, or ``"none"`` (``(B,)``).

    Shapes:
        logits ``(B, K, H, W[, D])``; image ``(B, C, H, W[, D])``; output a scalar or ``(B,)``.

    Example:
        >>> import torch
        >>> logits = torch.tensor([[[[9.0, -9.0]]], [[[-9.0, 9.0]]]]).permute(1, 0, 2, 3)  # (1, 2, 1, 2), one-hot
        >>> batch = {"image": torch.zeros(1, 1, 1, 2)}
        >>> round(GridPottsLoss(neighbourhood=4)(logits, batch).item(), 3)  # one cut edge, weight 1, 2 voxels
        0.5
    """

    def __init__(
        self,
        image_key: str = "image",
        neighbourhood: int | None = None,
        spacing: Sequence[float] | None = None,
        sigma: float | None = None,
        relaxation: str = "bilinear",
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction=reduction)
        _check_neighbourhood(neighbourhood)
        if relaxation not in RELAXATIONS:
            raise ValueError(f"relaxation must be one of {RELAXATIONS}, got {relaxation!r}")
        self.sigma = None if sigma is None else check_sigma("sigma", sigma)
        self.image_key, self.neighbourhood, self.relaxation = image_key, neighbourhood, relaxation
        self.spacing = None if spacing is None else [float(s) for s in spacing]

    def forward(self, logits: torch.Tensor, batch: Mapping) -> torch.Tensor:
        image, _ = crf_inputs(self, logits, batch, self.image_key)
        probs = softmax_probabilities(logits)
        edges = potts_edge_weights(image, self.neighbourhood, self.spacing, self.sigma)
        energy = pairwise_potts_energy(probs, edges, self.relaxation)
        return reduce_per_image(energy / probs.shape[2:].numel(), self.reduction)


class PottsEnergy(WeakLoss):
    """The exact Potts energy of the argmax of the logits (:func:`potts_energy`), for logging.

    It has no gradient: give it weight 0 in a :class:`wss_monai.losses.CompositeLoss` and the
    energy that training reaches is logged with the other terms.

    Example:
        >>> import torch
        >>> logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 2.0]]]])  # argmax [0, 1]
        >>> PottsEnergy(neighbourhood=4)(logits, {"image": torch.zeros(1, 1, 1, 2)}).item()
        0.5
    """

    def __init__(
        self,
        image_key: str = "image",
        neighbourhood: int | None = None,
        spacing: Sequence[float] | None = None,
        sigma: float | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction=reduction)
        _check_neighbourhood(neighbourhood)
        self.sigma = None if sigma is None else check_sigma("sigma", sigma)
        self.image_key, self.neighbourhood = image_key, neighbourhood
        self.spacing = None if spacing is None else [float(s) for s in spacing]

    def forward(self, logits: torch.Tensor, batch: Mapping) -> torch.Tensor:
        image, _ = crf_inputs(self, logits, batch, self.image_key)
        with torch.no_grad():
            labels = logits.argmax(1, keepdim=True)
            energy = potts_energy(labels, image, self.neighbourhood, self.spacing, self.sigma)
        return reduce_per_image(energy, self.reduction)
