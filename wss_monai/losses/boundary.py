"""The boundary loss: the softmax integrated against the signed distance to the ground-truth boundary."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence

import torch
from monai.data import MetaTensor

from wss_monai.losses.base import WeakLoss, reduce_per_image

__all__ = ["BoundaryLoss"]


class BoundaryLoss(WeakLoss):
    """Boundary loss of Kervadec et al., "Boundary loss for highly unbalanced segmentation", MIDL 2019.

    .. math:: L_B = \\frac{1}{|Ω|} \\sum_{p ∈ Ω} \\sum_{k} φ_k(p)\\, S_k(p)

    with ``S = softmax(logits)`` and ``φ_k`` the signed distance map of class k (negative inside,
    positive outside; :class:`wss_monai.transforms.distance.SignedDistanceMap`, computed once per
    label in the cached part of the pipeline). Since ``S_k ∈ [0, 1]``, each term is smallest with
    ``S_k = 1`` where ``φ_k < 0`` and ``S_k = 0`` where ``φ_k > 0``: the ground truth minimises it.
    The loss is negative at its minimum. Alone it collapses to an empty prediction early in
    training (it is linear in S and ignores region sizes): combine it with a regional loss in a
    :class:`wss_monai.losses.composite.CompositeLoss` and schedule the weights with
    :class:`wss_monai.handlers.boundary_schedule.BoundaryWeightSchedule`.

    The distance map holds either all C classes of the logits, or the C - 1 foreground classes
    (``include_background=False`` in the transform, the default), in which case its channel i is
    class i + 1 and class 0 cannot be selected.

    Args:
        key: batch key of the signed distance maps ``(B, C or C - 1, H, W[, D])``.
        classes: indices (in the logits) of the classes in the sum; ``None`` means every class but
            the background (the paper uses the foreground only).
        reduction: ``"mean"``/``"sum"`` over images, or ``"none"`` (``(B,)``).

    Shapes:
        logits ``(B, C, H, W[, D])``; dist_map ``(B, C or C - 1, H, W[, D])``; output a scalar or ``(B,)``.

    Example:
        >>> import torch
        >>> logits = torch.zeros(1, 2, 1, 4)                        # S_1 = 0.5 everywhere
        >>> dist_map = torch.tensor([[[[1.0, -1.0, -1.0, 3.0]]]])    # foreground channel only
        >>> BoundaryLoss()(logits, {"dist_map": dist_map}).item()   # 0.5 * (1 - 1 - 1 + 3) / 4
        0.25
    """

    def __init__(self, key: str = "dist_map", classes: Sequence[int] | None = None, reduction: str = "mean") -> None:
        super().__init__(reduction=reduction)
        if classes is not None:
            classes = list(classes)
            if not classes or any(isinstance(c, bool) or not isinstance(c, numbers.Integral) or c < 0 for c in classes):
                raise ValueError(f"classes must be None or a non-empty list of class indices >= 0, got {classes!r}")
            if len(set(classes)) != len(classes):
                raise ValueError(f"classes must not repeat a class, got {classes!r}")
        self.key = key
        self.classes = None if classes is None else [int(c) for c in classes]

    def _channels(self, num_classes: int, map_channels: int) -> tuple[list[int], list[int]]:
        """Indices of the selected classes in the logits and in the distance map."""
        if map_channels not in (num_classes, num_classes - 1):
            raise ValueError(
                f"{self.key!r} must have C = {num_classes} (all classes) or C - 1 = {num_classes - 1} "
                f"(foreground) channels, got {map_channels}"
            )
        classes = list(range(1, num_classes)) if self.classes is None else self.classes
        bad = [c for c in classes if c >= num_classes]
        if bad:
            raise ValueError(f"classes {bad} out of range for a {num_classes}-class output")
        offset = num_classes - map_channels
        if offset and 0 in classes:
            raise ValueError(
                f"class 0 is selected but {self.key!r} holds the foreground classes only ({map_channels} channels); "
                "compute it with include_background=True or leave class 0 out"
            )
        return classes, [c - offset for c in classes]

    def forward(self, logits: torch.Tensor, batch: Mapping) -> torch.Tensor:
        self.check_logits(logits)
        dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
        dist = self.read(batch, self.key)
        dist = (dist.as_tensor() if isinstance(dist, MetaTensor) else dist).to(device=logits.device, dtype=dtype)
        if dist.ndim != logits.ndim or dist.shape[0] != logits.shape[0] or dist.shape[2:] != logits.shape[2:]:
            raise ValueError(
                f"{self.key!r} of shape {tuple(dist.shape)} does not match logits {tuple(logits.shape)}: "
                "expected (B, C or C - 1, H, W[, D]) with the logits' batch and spatial sizes"
            )
        logit_idx, map_idx = self._channels(logits.shape[1], dist.shape[1])
        if not torch.isfinite(dist).all():
            raise ValueError(f"{self.key!r} contains NaN or inf values")
        probs = torch.softmax(logits.to(dtype), dim=1)[:, logit_idx]
        per_image = (probs * dist[:, map_idx]).sum(1).flatten(1).mean(1)
        return reduce_per_image(per_image, self.reduction)
