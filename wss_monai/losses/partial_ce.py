"""Partial cross-entropy on the annotated voxels of a weak label map."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from wss_monai.constants import UNLABELLED
from wss_monai.losses.base import WeakLoss, reduce_per_image

__all__ = ["PartialCrossEntropyLoss"]


class PartialCrossEntropyLoss(WeakLoss):
    """Cross-entropy over the labelled voxels Ω_L only (Tang et al., CVPR 2018; Kervadec et al., MedIA 2019).

    .. math:: L = -\\frac{1}{|Ω_L|} \\sum_{p ∈ Ω_L} \\log S_{y_p}(p)

    Every class with labelled voxels counts, background included. Images are weighted by their
    number of labelled voxels (the batch is one pool of voxels); with ``reduction="none"`` each
    image is normalised by its own count, and an image with no labelled voxel gives 0.

    Args:
        key: batch key of the weak label map ``(B, 1, H, W[, D])`` (class index or ``ignore_index``).
        ignore_index: value of unlabelled voxels.
        reduction: ``"mean"``, ``"sum"`` (per-image losses summed) or ``"none"`` (``(B,)``).

    Example:
        >>> import torch
        >>> logits = torch.zeros(1, 2, 2, 2)
        >>> scribble = torch.tensor([[[[0, -1], [-1, 1]]]])
        >>> round(PartialCrossEntropyLoss()(logits, {"scribble": scribble}).item(), 4)  # log 2
        0.6931
    """

    def __init__(self, key: str = "scribble", ignore_index: int = UNLABELLED, reduction: str = "mean") -> None:
        super().__init__(reduction=reduction)
        self.key = key
        self.ignore_index = int(ignore_index)

    def forward(self, logits: torch.Tensor, batch: Mapping) -> torch.Tensor:
        self.check_logits(logits)
        target = self.read(batch, self.key).to(logits.device)
        if target.ndim == logits.ndim:
            if target.shape[1] != 1:
                raise ValueError(f"{self.key!r} must have one channel, got shape {tuple(target.shape)}")
            target = target[:, 0]
        if target.shape != logits.shape[:1] + logits.shape[2:]:
            raise ValueError(f"{self.key!r} of shape {tuple(target.shape)} does not match logits {tuple(logits.shape)}")
        target = target.long()
        labelled = target != self.ignore_index
        bad = target[labelled]
        if bad.numel() and (bad.min() < 0 or bad.max() >= logits.shape[1]):
            raise ValueError(
                f"{self.key!r} holds values {torch.unique(bad[(bad < 0) | (bad >= logits.shape[1])]).tolist()} "
                f"outside the classes [0, {logits.shape[1] - 1}] and the ignore value {self.ignore_index}"
            )
        voxel_ce = (
            F.cross_entropy(
                logits if logits.dtype == torch.float64 else logits.float(), target.clamp_min(0), reduction="none"
            )
            * labelled
        )
        if self.reduction == "mean":
            return voxel_ce.sum() / labelled.sum().clamp_min(1)
        per_image = voxel_ce.flatten(1).sum(1) / labelled.flatten(1).sum(1).clamp_min(1)
        return reduce_per_image(per_image, self.reduction)
