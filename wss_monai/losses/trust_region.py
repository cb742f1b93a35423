"""Robust trust region, stage B: a robust cross-entropy to cached discrete proposals (Marin and Boykov, ICCV 2021).

Marin and Boykov, "Robust trust region for weakly supervised segmentation", ICCV 2021. Stage A
(:class:`wss_monai.handlers.TrustRegionProposals`) computes, every ``M`` epochs and per training
slice (or volume), ``s = argmin pCE(s) + λ R(s) + λ_KL KL(s ‖ S)`` by α-expansion. Stage B trains the
network towards ``s`` with a loss that does not trust ``s`` fully: for ``K`` classes and
``ε ∈ [0, (K−1)/K)``, ``a = ε / (K−1)`` and ``b = 1 − K a``,

.. math:: L = \\frac{1}{|Ω|}\\Big(\\sum_{p ∉ Ω_L} −\\log\\big(a + b\\, S_p(s_p)\\big)
          + \\sum_{p ∈ Ω_L} −\\log S_p(y_p)\\Big)

i.e. the cross-entropy to the label distribution ``(1−ε)`` on ``s_p`` and ``ε/(K−1)`` on each other
class, collapsed to its mixture form. ``ε = 0`` is the plain cross-entropy to ``s``; the published
``ε`` sit just below ``(K−1)/K`` (``b/a`` from 0.005 to 0.19), where a confident network pays little
for disagreeing with the proposal. ``|Ω|`` counts the voxels with a seed or a proposal (depth
padding has neither).

Before the first stage A an image has no proposal (all :data:`UNLABELLED`): its loss is then the
partial cross-entropy on its seeds, normalised by their number (and a batch without any proposal
gets exactly :class:`~wss_monai.losses.PartialCrossEntropyLoss`, seeds pooled over the batch).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from wss_monai.constants import UNLABELLED
from wss_monai.losses.adm import seed_map
from wss_monai.losses.base import WeakLoss, reduce_per_image

__all__ = ["RobustTrustRegionLoss", "robust_trust_region_loss"]


def robust_trust_region_loss(
    log_probs: torch.Tensor, seeds: torch.Tensor, proposals: torch.Tensor, epsilon: float
) -> torch.Tensor:
    """Stage-B loss per image ``(B,)`` from ``log S`` ``(B, K, *spatial)``, seeds and proposals ``(B, *spatial)``.

    Images whose proposal map is all :data:`UNLABELLED` get the partial cross-entropy of their seeds
    (0 without seeds).

    Example:
        >>> import torch
        >>> log_probs = torch.log(torch.tensor([[[[0.5, 0.9]], [[0.5, 0.1]]]]))  # (1, 2, 1, 2)
        >>> seeds, proposals = torch.tensor([[[0, -1]]]), torch.tensor([[[0, 1]]])
        >>> round(robust_trust_region_loss(log_probs, seeds, proposals, 0.0).item(), 4)  # (log 2 + log 10) / 2
        1.4979
    """
    num_classes = log_probs.shape[1]
    maximum = (num_classes - 1) / num_classes
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not 0 <= epsilon < maximum:
        raise ValueError(
            f"epsilon must lie in [0, (K-1)/K) = [0, {maximum:.4g}) for K = {num_classes}, got {epsilon!r}"
        )
    a = epsilon / (num_classes - 1)
    b = 1.0 - num_classes * a
    seeded = seeds != UNLABELLED
    proposed = (proposals != UNLABELLED) & ~seeded
    log_seed = log_probs.gather(1, seeds.clamp_min(0)[:, None])[:, 0]
    log_proposal = log_probs.gather(1, proposals.clamp_min(0)[:, None])[:, 0]
    if a > 0:
        robust = -torch.logaddexp(torch.full_like(log_proposal, math.log(a)), math.log(b) + log_proposal)
    else:
        robust = -log_proposal
    seed_terms = torch.where(seeded, -log_seed, torch.zeros_like(log_seed)).flatten(1).sum(1)
    robust_terms = torch.where(proposed, robust, torch.zeros_like(robust)).flatten(1).sum(1)
    has_proposal = (proposals != UNLABELLED).flatten(1).any(1)
    counted = (seeded | (proposals != UNLABELLED)).flatten(1).sum(1)
    stage_b = (seed_terms + robust_terms) / counted.clamp_min(1)
    partial_ce = seed_terms / seeded.flatten(1).sum(1).clamp_min(1)
    return torch.where(has_proposal, stage_b, partial_ce)


class RobustTrustRegionLoss(WeakLoss):
    """Stage B of the robust trust region (see the module): robust CE to the cached proposals + CE on the seeds.

    Args:
        epsilon: ``ε`` in ``[0, (K−1)/K)``.
        seed_key: batch key of the seeds ``(B, 1, *spatial)``.
        proposal_key: batch key of the stage-A proposals ``(B, 1, *spatial)`` (:data:`UNLABELLED`: none yet).
        reduction: ``"mean"``/``"sum"`` over images, or ``"none"`` (``(B,)``).

    Example:
        >>> import torch
        >>> logits = torch.zeros(1, 2, 1, 2)  # S = 1/2 everywhere
        >>> batch = {"scribble": torch.tensor([[[[0, -1]]]]), "proposal": torch.tensor([[[[0, 1]]]])}
        >>> round(RobustTrustRegionLoss(epsilon=0.4)(logits, batch).item(), 4)  # (log 2 - log(0.4 + 0.2 * 0.5)) / 2
        0.6931
    """

    def __init__(
        self,
        epsilon: float,
        seed_key: str = "scribble",
        proposal_key: str = "proposal",
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction=reduction)
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not 0 <= epsilon < 1:
            raise ValueError(f"epsilon must lie in [0, (K-1)/K), got {epsilon!r}")
        self.epsilon, self.seed_key, self.proposal_key = float(epsilon), seed_key, proposal_key

    def forward(self, logits: torch.Tensor, batch: Mapping) -> torch.Tensor:
        self.check_logits(logits)
        seeds = seed_map(self, batch, self.seed_key, logits)
        proposals = seed_map(self, batch, self.proposal_key, logits)
        log_probs = torch.log_softmax(logits if logits.dtype == torch.float64 else logits.float(), dim=1)
        if self.reduction == "mean" and bool((proposals == UNLABELLED).all()):
            # no proposal in the batch (before the first stage A): exactly the partial CE of
            # PartialCrossEntropyLoss, whose mean pools the seeds of the batch
            seeded = seeds != UNLABELLED
            log_seed = log_probs.gather(1, seeds.clamp_min(0)[:, None])[:, 0]
            return -(log_seed * seeded).sum() / seeded.sum().clamp_min(1)
        return reduce_per_image(robust_trust_region_loss(log_probs, seeds, proposals, self.epsilon), self.reduction)
