"""The expansion and constrain losses of SEC, for segmentation from image-level tags.

Kolesnikov and Lampert, "Seed, Expand and Constrain: three principles for weakly-supervised image
segmentation", ECCV 2016. With ``f_{u,c}`` the softmax score of class ``c`` at voxel ``u`` (n voxels),
``T`` the foreground classes present in an image (its tags), ``C'`` all foreground classes and
``c̄`` the background, SEC trains on three terms:

* seeding: partial cross-entropy on localisation cues, the label map of
  :func:`wss_monai.transforms.cam_cues` (:class:`wss_monai.losses.PartialCrossEntropyLoss` on the
  ``cues`` key; not repeated here);
* expansion (:class:`ExpansionLoss`): global weighted rank pooling (GWRP) of each class's scores,
  sorted in decreasing order ``f_{i_1,c} ≥ f_{i_2,c} ≥ …``,

  .. math:: G_c(f; d) = \\frac{\\sum_{j=1}^{n} d^{j-1} f_{i_j,c}}{\\sum_{j=1}^{n} d^{j-1}},

  .. math:: L_{expand} = -\\frac{1}{|T|}\\sum_{c ∈ T} \\log G_c(f; d_+)
            - \\frac{1}{|C' \\setminus T|}\\sum_{c ∈ C' \\setminus T} \\log(1 - G_c(f; d_-))
            - \\log G_{c̄}(f; d_{bg}),

  with ``d_+ = 0.996``, ``d_- = 0`` (max pooling) and ``d_bg = 0.999`` in the paper; the background
  is always present. ``d = 0`` gives max pooling and ``d = 1`` average pooling;
* constrain (:class:`ConstrainLoss`): the KL divergence from the network's output to its dense-CRF
  refinement ``Q = CRF(f, image)`` (:func:`dense_crf_mean_field`, computed without gradient),

  .. math:: L_{constrain} = \\frac{1}{n}\\sum_{u}\\sum_{c} Q_{u,c} \\log\\frac{Q_{u,c}}{f_{u,c}}.

An empty sum (no present or no absent foreground class in an image) counts 0. All terms work on
2D slices ``(B, K, H, W)`` and 3D volumes ``(B, K, H, W, D)``.
"""

from __future__ import annotations

import logging
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
from wss_monai.losses.dense_crf import bilateral_features

__all__ = [
    "ConstrainLoss",
    "ExpansionLoss",
    "TagClassificationLoss",
    "dense_crf_mean_field",
    "global_weighted_rank_pooling",
    "read_tags",
]

logger = logging.getLogger(__name__)

_EPS = 1e-7
"""Floor of the probabilities inside a logarithm (float32 softmax scores reach exactly 0 or 1)."""


def _check_decay(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def global_weighted_rank_pooling(scores: torch.Tensor, decay: float | torch.Tensor) -> torch.Tensor:
    """GWRP ``G_c = Σ_j d^{j-1} f_{i_j,c} / Σ_j d^{j-1}`` over the scores sorted in decreasing order.

    Args:
        scores: ``(B, K, *spatial)`` (or ``(B, K, N)``), pooled over everything after the class axis.
        decay: ``d`` in [0, 1]; one number, or a tensor broadcastable to ``(B, K)`` (a decay per image
            and class). ``d = 0`` is max pooling (``0^0 = 1``), ``d = 1`` average pooling.

    Returns:
        ``(B, K)``, differentiable in ``scores`` (through the sort).

    Example:
        >>> import torch
        >>> s = torch.tensor([[[0.1, 0.9, 0.5]]])
        >>> [round(global_weighted_rank_pooling(s, d).item(), 4) for d in (0.0, 1.0)]  # max, mean
        [0.9, 0.5]
        >>> round(global_weighted_rank_pooling(s, 0.5).item(), 4)  # (0.9 + 0.5 · 0.5 + 0.25 · 0.1) / 1.75
        0.6714
    """
    if scores.ndim < 3:
        raise ValueError(f"scores must have shape (B, K, *spatial), got {tuple(scores.shape)}")
    flat = scores.flatten(2)
    decay = torch.as_tensor(decay, dtype=flat.dtype, device=flat.device)
    if decay.numel() == 0 or (decay < 0).any() or (decay > 1).any():
        raise ValueError(f"decay must be in [0, 1], got {decay.tolist()}")
    decay = decay.expand(flat.shape[:2]) if decay.ndim < 2 else decay
    ranked = torch.sort(flat, dim=2, descending=True).values  # (B, K, N)
    ranks = torch.arange(flat.shape[2], device=flat.device, dtype=flat.dtype)
    weights = torch.pow(decay[..., None], ranks)  # (B, K, N); d^0 = 1 also for d = 0
    return (weights * ranked).sum(2) / weights.sum(2)


def read_tags(loss: WeakLoss, batch: Mapping, key: str, logits: torch.Tensor) -> torch.Tensor:
    """The tags ``batch[key]`` as a bool ``(B, K)`` tensor, checked against the logits.

    Raises:
        ValueError: tags not of shape ``(B, K)`` (a trailing singleton axis is dropped) or not 0 / 1.
    """
    tags = loss.read(batch, key).to(logits.device)
    if tags.ndim == 3 and tags.shape[-1] == 1:
        tags = tags[..., 0]
    if tags.shape != logits.shape[:2]:
        raise ValueError(
            f"{type(loss).__name__}: tags {key!r} of shape {tuple(tags.shape)} do not match the logits "
            f"{tuple(logits.shape)}; expected (B, K) = {tuple(logits.shape[:2])} (one 0/1 flag per class)"
        )
    if not ((tags == 0) | (tags == 1)).all():
        raise ValueError(
            f"{type(loss).__name__}: tags {key!r} must be 0 or 1, got values {torch.unique(tags).tolist()}"
        )
    return tags.bool()


class TagClassificationLoss(WeakLoss):
    """Multi-label binary cross-entropy of a CAM classifier on the tags: the first stage of SEC.

    The network's output ``(B, K, *spatial)`` is read as class activation maps
    (:class:`wss_monai.networks.CAMClassifier`); the tag logit of class k is their spatial mean
    (global average pooling, Zhou et al., CVPR 2016), and the loss is
    ``mean_k BCE(sigmoid(mean_p M_k(p)), t_k)`` per image.

    Args:
        tags_key: batch key of the tags ``(B, K)``.
        reduction: ``"mean"``/``"sum"`` over images, or ``"none"`` (``(B,)``).

    Example:
        >>> import torch
        >>> maps = torch.zeros(1, 2, 4, 4)  # logits 0: probability 1/2 for each tag
        >>> round(TagClassificationLoss()(maps, {"tags": torch.tensor([[1.0, 0.0]])}).item(), 4)
        0.6931
    """

    def __init__(self, tags_key: str = "tags", reduction: str = "mean") -> None:
        super().__init__(reduction=reduction)
        self.tags_key = tags_key

    def forward(self, logits: torch.Tensor, batch: Mapping) -> torch.Tensor:
        self.check_logits(logits)
        tags = read_tags(self, batch, self.tags_key, logits)
        scores = (logits if logits.dtype == torch.float64 else logits.float()).flatten(2).mean(2)
        bce = F.binary_cross_entropy_with_logits(scores, tags.to(scores.dtype), reduction="none").mean(1)
        return reduce_per_image(bce, self.reduction)


class ExpansionLoss(WeakLoss):
    """SEC's expansion loss (Kolesnikov and Lampert, ECCV 2016): GWRP of the softmax against the tags.

    Per image, with the decays of the module docstring:
    ``-mean_{c∈T} log G_c(d_+) - mean_{c∉T, c≠bg} log(1 - G_c(d_-)) - log G_bg(d_bg)``. The
    background class (``background_index``) is always treated as present, whatever its tag.
    Ablations: ``present_decay = absent_decay = background_decay = 0`` is global max pooling
    (GMP), ``= 1`` global average pooling (GAP).

    Args:
        tags_key: batch key of the tags ``(B, K)``: 1 if class k is in the image, else 0.
        present_decay: ``d_+`` for present foreground classes (0.996 in the paper).
        absent_decay: ``d_-`` for absent foreground classes (0: max pooling).
        background_decay: ``d_bg`` for the background (0.999).
        background_index: the background class.
        reduction: ``"mean"``/``"sum"`` over images, or ``"none"`` (``(B,)``).

    Shapes:
        logits ``(B, K, H, W[, D])``; tags ``(B, K)``; output a scalar or ``(B,)``.

    Example:
        >>> import torch
        >>> logits = torch.zeros(1, 2, 4, 4)  # uniform: every G_c = 0.5
        >>> loss = ExpansionLoss()(logits, {"tags": torch.tensor([[1.0, 1.0]])})
        >>> round(loss.item(), 4)  # -log 0.5 (foreground present) - log 0.5 (background)
        1.3863
    """

    def __init__(
        self,
        tags_key: str = "tags",
        present_decay: float = 0.996,
        absent_decay: float = 0.0,
        background_decay: float = 0.999,
        background_index: int = 0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction=reduction)
        self.tags_key = tags_key
        self.present_decay = _check_decay("present_decay", present_decay)
        self.absent_decay = _check_decay("absent_decay", absent_decay)
        self.background_decay = _check_decay("background_decay", background_decay)
        if isinstance(background_index, bool) or not isinstance(background_index, int) or background_index < 0:
            raise ValueError(f"background_index must be an integer >= 0, got {background_index!r}")
        self.background_index = background_index

    def forward(self, logits: torch.Tensor, batch: Mapping) -> torch.Tensor:
        self.check_logits(logits)
        classes = logits.shape[1]
        if self.background_index >= classes:
            raise ValueError(f"background_index {self.background_index} is out of range for {classes} classes")
        present = read_tags(self, batch, self.tags_key, logits)
        probs = softmax_probabilities(logits)
        background = torch.zeros(classes, dtype=torch.bool, device=logits.device)
        background[self.background_index] = True
        present = present & ~background  # foreground classes in T
        absent = ~present & ~background
        decay = torch.where(present, self.present_decay, self.absent_decay)
        decay = torch.where(background, self.background_decay, decay).to(probs.dtype)
        pooled = global_weighted_rank_pooling(probs, decay)  # (B, K)
        present_term = -(torch.log(pooled.clamp_min(_EPS)) * present).sum(1) / present.sum(1).clamp_min(1)
        absent_term = -(torch.log((1 - pooled).clamp_min(_EPS)) * absent).sum(1) / absent.sum(1).clamp_min(1)
        background_term = -torch.log(pooled[:, self.background_index].clamp_min(_EPS))
        return reduce_per_image(present_term + absent_term + background_term, self.reduction)


def dense_crf_mean_field(
    probs: torch.Tensor,
    image: torch.Tensor,
    iterations: int = 10,
    bilateral_weight: float = 10.0,
    bilateral_sigma_xy: float = 32.0,
    bilateral_sigma_intensity: float | Sequence[float] = 0.3,
    spatial_weight: float = 3.0,
    spatial_sigma_xy: float = 1.0,
    spacing: Sequence[float] | None = None,
    step: Sequence[float] | None = None,
) -> torch.Tensor:
    """Mean-field inference of a fully connected CRF with Potts compatibility (Krähenbühl and Koltun, NIPS 2011).

    Unary ``ψ_u(c) = -log f_{u,c}``; pairwise ``[c_u ≠ c_v] k(u, v)`` with
    ``k = w_1 exp(-|p_u - p_v|²/2σ_α² - |I_u - I_v|²/2σ_β²) + w_2 exp(-|p_u - p_v|²/2σ_γ²)``
    (bilateral appearance kernel and spatial smoothness kernel). Starting from ``Q = f``, each
    iteration sets

    .. math:: Q_u(c) ∝ f_{u,c} \\exp\\Big(\\sum_m w_m \\sum_{v ≠ u} k_m(u, v)\\, Q_v(c)\\Big),

    the Potts update (the ``Σ_{c'≠c} Q_v(c')`` form differs from it by a constant per voxel). The
    Gaussian sums come from :class:`wss_monai.filtering.PermutohedralLattice` (approximate: within a
    few per cent where voxels are dense on the σ scale), the exact self-weight 1 being subtracted.
    Positions are in units of the smallest voxel side (``spacing``), as in
    :func:`wss_monai.losses.bilateral_features`.

    Args:
        probs: ``(B, K, *spatial)`` probabilities (the network's softmax).
        image: ``(B, C, *spatial)`` intensities, any number of channels.
        iterations: mean-field iterations (10, as in SEC's CRF).
        bilateral_weight, bilateral_sigma_xy, bilateral_sigma_intensity: ``w_1, σ_α, σ_β``.
        spatial_weight, spatial_sigma_xy: ``w_2, σ_γ``; ``spatial_weight = 0`` leaves the kernel out.
        spacing: voxel size per spatial axis (``None``: isotropic).
        step: distance between neighbouring samples per axis in voxels of the original grid (a
            downsampled copy has steps > 1, so that the σ's stay in original voxels); ``None``: 1.

    Returns:
        ``Q`` ``(B, K, *spatial)`` in the dtype of ``probs``, without gradient.

    Example:
        >>> import torch
        >>> probs = torch.full((1, 2, 6, 6), 0.5)
        >>> probs[0, 0, 2, 2], probs[0, 1, 2, 2] = 0.4, 0.6   # one voxel disagrees with its neighbours
        >>> probs[:, :, :, :3] = torch.tensor([0.9, 0.1])[:, None, None]
        >>> q = dense_crf_mean_field(probs, torch.zeros(1, 1, 6, 6), bilateral_sigma_xy=3.0)
        >>> bool(q[0, 0, 2, 2] > 0.9)  # smoothed towards the confident neighbours
        True
    """
    if probs.ndim < 4 or image.shape[0] != probs.shape[0] or image.shape[2:] != probs.shape[2:]:
        raise ValueError(
            f"probs (B, K, *spatial) and image (B, C, *spatial) must agree, got {tuple(probs.shape)} and "
            f"{tuple(image.shape)}"
        )
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise ValueError(f"iterations must be an integer >= 0, got {iterations!r}")
    batch_size, classes, *spatial = probs.shape
    with torch.no_grad():
        size = probs.shape[2:].numel()
        groups = torch.arange(batch_size, device=probs.device).repeat_interleave(size)
        kernels = []
        if bilateral_weight > 0:
            features = bilateral_features(image, bilateral_sigma_xy, bilateral_sigma_intensity, spacing, step)
            kernels.append((bilateral_weight, PermutohedralLattice(features, groups)))
        if spatial_weight > 0:
            # position only: the same features with no intensity channel
            features = bilateral_features(image[:, :0], spatial_sigma_xy, 1.0, spacing, step)
            kernels.append((spatial_weight, PermutohedralLattice(features, groups)))
        work = probs.detach().float()
        log_unary = torch.log(work.clamp_min(_EPS)).flatten(2).transpose(1, 2).reshape(-1, classes)
        q = work.flatten(2).transpose(1, 2).reshape(-1, classes)
        for _ in range(iterations):
            message = sum(weight * (lattice.filter(q) - q) for weight, lattice in kernels)
            q = torch.softmax(log_unary + message, dim=1) if kernels else q
        q = q.reshape(batch_size, size, classes).transpose(1, 2).reshape(batch_size, classes, *spatial)
    return q.to(probs.dtype)


class ConstrainLoss(WeakLoss):
    """SEC's constrain loss (Kolesnikov and Lampert, ECCV 2016): ``KL(Q ‖ f)`` with ``Q`` the dense-CRF refinement.

    ``L = (1/n) Σ_u Σ_c Q_{u,c} log(Q_{u,c} / f_{u,c})`` per image, ``Q`` from
    :func:`dense_crf_mean_field` of the network's own softmax ``f`` and the image, treated as a
    constant (no gradient through the CRF), so ``∂L/∂logits_u = (f_u - Q_u) / n``. With
    ``scale_factor < 1`` the CRF and the loss run on a downsampled copy of the softmax and the image
    (SEC applies the CRF at the network's output resolution, 1/8 of the input); σ_xy stay in
    full-resolution voxels.

    Args:
        image_key: batch key of the image ``(B, C, H, W[, D])``.
        iterations, bilateral_weight, bilateral_sigma_xy, bilateral_sigma_intensity, spatial_weight,
            spatial_sigma_xy, spacing: see :func:`dense_crf_mean_field`.
        scale_factor: in (0, 1]; one value or one per spatial axis.
        reduction: ``"mean"``/``"sum"`` over images, or ``"none"`` (``(B,)``).

    Example:
        >>> import torch
        >>> logits = torch.zeros(1, 2, 4, 4)
        >>> loss = ConstrainLoss(bilateral_sigma_xy=2.0)(logits, {"image": torch.zeros(1, 1, 4, 4)})
        >>> abs(loss.item()) < 1e-6  # a uniform output is its own refinement
        True
    """

    def __init__(
        self,
        image_key: str = "image",
        iterations: int = 10,
        bilateral_weight: float = 10.0,
        bilateral_sigma_xy: float = 32.0,
        bilateral_sigma_intensity: float | Sequence[float] = 0.3,
        spatial_weight: float = 3.0,
        spatial_sigma_xy: float = 1.0,
        spacing: Sequence[float] | None = None,
        scale_factor: float | Sequence[float] = 1.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction=reduction)
        self.image_key = image_key
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
            raise ValueError(f"iterations must be an integer >= 1, got {iterations!r}")
        self.iterations = iterations
        for name, weight in (("bilateral_weight", bilateral_weight), ("spatial_weight", spatial_weight)):
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight < float("inf"):
                raise ValueError(f"{name} must be a finite number >= 0, got {weight!r}")
        if bilateral_weight == 0 and spatial_weight == 0:
            raise ValueError("bilateral_weight and spatial_weight are both 0: the CRF would have no pairwise term")
        self.bilateral_weight, self.spatial_weight = float(bilateral_weight), float(spatial_weight)
        self.bilateral_sigma_xy = check_sigma("bilateral_sigma_xy", bilateral_sigma_xy)
        self.spatial_sigma_xy = check_sigma("spatial_sigma_xy", spatial_sigma_xy)
        self.bilateral_sigma_intensity = check_sigmas("bilateral_sigma_intensity", bilateral_sigma_intensity)
        self.spacing = None if spacing is None else [float(s) for s in spacing]
        self.scale_factor = check_scale_factor(scale_factor)

    def forward(self, logits: torch.Tensor, batch: Mapping) -> torch.Tensor:
        image, dims = crf_inputs(self, logits, batch, self.image_key)
        spacing = check_spacing(self.spacing, dims)
        check_channel_values(
            self, "bilateral_sigma_intensity", self.bilateral_sigma_intensity, image, self.image_key, dims
        )
        log_probs = torch.log_softmax(logits if logits.dtype == torch.float64 else logits.float(), dim=1)
        factors = self.scale_factor * dims if len(self.scale_factor) == 1 else self.scale_factor
        steps = None
        if any(f != 1 for f in factors):
            size = [max(1, round(n * f)) for n, f in zip(logits.shape[2:], factors)]
            mode = "bilinear" if dims == 2 else "trilinear"
            # the log-softmax of downsampled logits: a proper distribution at every coarse voxel
            coarse = F.interpolate(logits.to(log_probs.dtype), size=size, mode=mode, align_corners=False)
            log_probs = torch.log_softmax(coarse, dim=1)
            image = F.interpolate(image, size=size, mode=mode, align_corners=False)
            steps = [n / m for n, m in zip(logits.shape[2:], size)]
        q = dense_crf_mean_field(
            log_probs.exp(),
            image,
            self.iterations,
            self.bilateral_weight,
            self.bilateral_sigma_xy,
            self.bilateral_sigma_intensity,
            self.spatial_weight,
            self.spatial_sigma_xy,
            spacing,
            steps,
        )
        kl = (q * (torch.log(q.clamp_min(_EPS)) - log_probs)).sum(1)  # (B, *spatial)
        return reduce_per_image(kl.flatten(1).mean(1), self.reduction)
