"""One batch, two supervisions: the full loss on fully annotated items, the weak loss on the others.

Used by hybrid training (n fully annotated patients, the rest weakly annotated; see
:func:`wss_monai.data.hybrid.make_hybrid_datalist`).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from wss_monai.losses.base import WeakLoss, reduce_per_image

__all__ = ["SupervisionSwitchLoss", "supervision_mask"]


def supervision_mask(values: Any, full_value: str = "full", num_images: int | None = None) -> torch.Tensor:
    """Boolean ``(B,)`` mask, ``True`` for the fully supervised images of a batch.

    Args:
        values: the collated ``batch["supervision"]``: a list of strings (``"full"`` / ``"weak"``),
            or a bool / integer tensor (non-zero = full).
        full_value: the string marking full supervision.
        num_images: expected B (checked when given).

    Example:
        >>> supervision_mask(["full", "weak", "full"]).tolist()
        [True, False, True]
    """
    if isinstance(values, str):
        values = [values]
    if isinstance(values, (list, tuple)) and all(isinstance(v, str) for v in values):
        unknown = sorted({v for v in values if v not in (full_value, "weak")})
        if unknown:
            raise ValueError(f"supervision values must be {full_value!r} or 'weak', got {unknown}")
        mask = torch.tensor([v == full_value for v in values], dtype=torch.bool)
    else:
        tensor = torch.as_tensor(values)
        if tensor.is_floating_point() and not torch.isin(tensor, tensor.new_tensor([0.0, 1.0])).all():
            raise ValueError(f"a numeric supervision mask must hold 0 / 1 values, got {tensor.unique().tolist()}")
        mask = tensor.reshape(-1) != 0
    if num_images is not None and mask.numel() != num_images:
        raise ValueError(f"supervision must hold one value per image ({num_images}), got {mask.numel()}")
    return mask


class SupervisionSwitchLoss(WeakLoss):
    """Full loss on the images marked full, weak loss on the others, per image within one batch.

    ``L_b = full_weight · L_full(b)`` if ``batch[key][b]`` is full, else ``weak_weight · L_weak(b)``.
    Both terms are called on the whole batch (``term(logits, batch)``) and must return one value per
    image: build them with ``reduction="none"`` (trailing dimensions, e.g. the ``(B, C, 1, 1)`` of
    MONAI's Dice loss, are averaged). The per-image values are combined with ``torch.where``, so an
    image only receives gradients from its own term; a term is not evaluated at all when no image
    of the batch uses it. Terms that group images (``per="volume"``) see the whole batch; keep the
    slices of a volume under one mark (:func:`make_hybrid_datalist` marks whole patients).

    Args:
        full_loss: term for the fully annotated images (e.g. ``TargetLoss(DiceCELoss(...,
            reduction="none"))`` or cross-entropy).
        weak_loss: term for the others (e.g. a size constraint with predicted bounds).
        key: batch key of the marks (see :func:`supervision_mask`).
        full_value: the mark of full supervision.
        full_weight, weak_weight: factors of the two terms.
        reduction: ``"mean"``/``"sum"`` over the images, or ``"none"`` (``(B,)``).

    Example:
        >>> import torch
        >>> from wss_monai.losses import PartialCrossEntropyLoss
        >>> full = PartialCrossEntropyLoss(key="label", reduction="none")
        >>> weak = PartialCrossEntropyLoss(key="scribble", reduction="none")
        >>> loss = SupervisionSwitchLoss(full, weak, reduction="none")
        >>> batch = {"label": torch.zeros(2, 1, 2, 2, dtype=torch.long),
        ...          "scribble": torch.full((2, 1, 2, 2), -1), "supervision": ["full", "weak"]}
        >>> [round(v, 4) for v in loss(torch.zeros(2, 2, 2, 2), batch).tolist()]
        [0.6931, 0.0]
    """

    def __init__(
        self,
        full_loss: nn.Module,
        weak_loss: nn.Module,
        key: str = "supervision",
        full_value: str = "full",
        full_weight: float = 1.0,
        weak_weight: float = 1.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction=reduction)
        for name, term in (("full_loss", full_loss), ("weak_loss", weak_loss)):
            if not isinstance(term, nn.Module):
                raise ValueError(f"{name} must be a torch module called as term(logits, batch), got {term!r}")
        for name, weight in (("full_weight", full_weight), ("weak_weight", weak_weight)):
            if (
                isinstance(weight, bool)
                or not isinstance(weight, numbers.Real)
                or not np.isfinite(weight)
                or weight < 0
            ):
                raise ValueError(f"{name} must be a finite number >= 0, got {weight!r}")
        self.full_loss, self.weak_loss = full_loss, weak_loss
        self.key, self.full_value = key, full_value
        self.full_weight, self.weak_weight = float(full_weight), float(weak_weight)

    @staticmethod
    def _per_image(name: str, values: torch.Tensor, num_images: int) -> torch.Tensor:
        if not isinstance(values, torch.Tensor) or values.ndim == 0 or values.shape[0] != num_images:
            shape = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
            raise ValueError(
                f"{name} must return one value per image, (B, ...) with B = {num_images}, got {shape}; "
                "build it with reduction='none'"
            )
        return values.reshape(num_images, -1).mean(1)

    def forward(self, logits: torch.Tensor, batch: Mapping) -> torch.Tensor:
        num_images = logits.shape[0]
        if not isinstance(batch, Mapping):
            raise TypeError(f"{type(self).__name__} expects the batch dictionary, got {type(batch).__name__}")
        if self.key not in batch:
            raise KeyError(f"{type(self).__name__} needs the batch key {self.key!r}; keys present: {sorted(batch)}")
        full = supervision_mask(batch[self.key], self.full_value, num_images).to(logits.device)
        values = logits.new_zeros(num_images, dtype=torch.float32 if logits.dtype != torch.float64 else logits.dtype)
        if full.any():
            full_values = self._per_image("full_loss", self.full_loss(logits, batch), num_images)
            values = torch.where(full, self.full_weight * full_values.to(values.dtype), values)
        if not full.all():
            weak_values = self._per_image("weak_loss", self.weak_loss(logits, batch), num_images)
            values = torch.where(full, values, self.weak_weight * weak_values.to(values.dtype))
        return reduce_per_image(values, self.reduction)
