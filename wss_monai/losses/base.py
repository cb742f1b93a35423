"""The interface shared by every weak-supervision loss term.

A term is called as ``term(logits, batch)``: ``logits`` is the raw network output ``(B, C, H, W[, D])``
and ``batch`` the collated batch dictionary, from which the term reads the keys it needs
(``scribble``, ``bounds``, ...). A missing key raises an error that names it.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from monai.utils import LossReduction
from torch.nn.modules.loss import _Loss

__all__ = ["WeakLoss", "reduce_per_image"]


def reduce_per_image(values: torch.Tensor, reduction: str) -> torch.Tensor:
    """Reduce a per-image loss ``(B,)`` by ``"mean"``, ``"sum"`` or ``"none"`` (kept as ``(B,)``)."""
    if reduction == LossReduction.MEAN.value:
        return values.mean()
    if reduction == LossReduction.SUM.value:
        return values.sum()
    return values


class WeakLoss(_Loss):
    """Base class of the loss terms that read their targets from the batch dictionary.

    Args:
        reduction: ``"mean"`` (over images), ``"sum"`` or ``"none"`` (one value per image, ``(B,)``).
    """

    def __init__(self, reduction: str = "mean") -> None:
        allowed = [r.value for r in LossReduction]
        if reduction not in allowed:
            raise ValueError(f"reduction must be one of {allowed}, got {reduction!r}")
        super().__init__(reduction=reduction)

    def read(self, batch: Mapping, key: str) -> torch.Tensor:
        """The tensor ``batch[key]``, with an error naming the key and the keys present when it is missing."""
        if not isinstance(batch, Mapping):
            raise TypeError(f"{type(self).__name__} expects the batch dictionary, got {type(batch).__name__}")
        if key not in batch:
            raise KeyError(
                f"{type(self).__name__} needs the batch key {key!r}, which is missing; keys present: {sorted(batch)}. "
                "Check that the supervision recipe's transforms produce it."
            )
        value = batch[key]
        return value if isinstance(value, torch.Tensor) else torch.as_tensor(value)

    @staticmethod
    def check_logits(logits: torch.Tensor) -> None:
        if logits.ndim not in (4, 5):
            raise ValueError(f"logits must have shape (B, C, H, W[, D]), got {tuple(logits.shape)}")
        if logits.shape[1] < 2:
            raise ValueError(f"logits need at least 2 channels (classes), got {logits.shape[1]}")
