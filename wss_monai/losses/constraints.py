"""Inequality constraints on the softmax, handled by a quadratic penalty or the log-barrier extension.

Every constraint is one scalar ``z ≤ 0`` per (image or volume, class, side); all of them are
computed at once as one tensor, with no Python loop over constraints.

References:
    Kervadec et al., "Constrained-CNN losses for weakly supervised segmentation", MedIA 2019 (penalty).
    Kervadec et al., "Constrained deep networks: Lagrangian optimization via log-barrier extensions",
    EUSIPCO 2022 (log-barrier extension).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from wss_monai.losses.base import WeakLoss, reduce_per_image

__all__ = ["log_barrier_extension", "quadratic_penalty", "SizeConstraintLoss", "CONSTRAINT_MODES"]

CONSTRAINT_MODES = ("penalty", "log_barrier")


def log_barrier_extension(z: torch.Tensor, t: float) -> torch.Tensor:
    """The log-barrier extension ψ_t of a constraint ``z ≤ 0``, elementwise.

    .. math::
        ψ_t(z) = -\\frac{1}{t}\\log(-z) \\text{ if } z ≤ -\\frac{1}{t^2},
        \\quad t z - \\frac{1}{t}\\log\\frac{1}{t^2} + \\frac{1}{t} \\text{ otherwise.}

    ψ_t is continuous and differentiable at ``-1/t²``, convex, and tends to the hard barrier as
    t grows. Computed in float64 and returned in ``z``'s dtype (float32 for half inputs), finite
    for any finite ``z`` up to t = 1e12: the logarithm only ever sees values ≥ 1/t², so no NaN
    reaches the gradient through the branch that is not taken.

    Example:
        >>> import torch
        >>> log_barrier_extension(torch.tensor([-1.0, 0.0]), t=1.0).tolist()
        [-0.0, 1.0]
    """
    if not t > 0 or not math.isfinite(t):
        raise ValueError(f"log-barrier t must be a finite positive number, got {t}")
    out_dtype = z.dtype if z.dtype in (torch.float32, torch.float64) else torch.float32
    z64 = z.double()
    threshold = -1.0 / t**2
    inside = z64 <= threshold
    barrier = -torch.log((-z64).clamp_min(-threshold)) / t
    linear = t * z64 - math.log(1.0 / t**2) / t + 1.0 / t
    return torch.where(inside, barrier, linear).to(out_dtype)


def quadratic_penalty(z: torch.Tensor) -> torch.Tensor:
    """``max(0, z)²`` elementwise: zero where the constraint holds (Kervadec et al. 2019)."""
    return torch.relu(z if z.dtype == torch.float64 else z.float()) ** 2


class SizeConstraintLoss(WeakLoss):
    """Bounds ``a ≤ V_k ≤ b`` on the soft size ``V_k = Σ_p S_k(p)`` of each class.

    Each bound is one constraint: ``a - V ≤ 0`` and ``V - b ≤ 0``; an absent class (``a = b = 0``)
    becomes the equality ``V = 0``. With ``mode="penalty"`` a violated constraint costs ``z²``
    (``(V - a)²`` below the lower bound, ``(V - b)²`` above the upper one); with
    ``mode="log_barrier"`` every constraint goes through :func:`log_barrier_extension` with the
    current ``t``, which :class:`wss_monai.handlers.LogBarrierScheduler` raises each epoch.

    The sizes are taken per image of the batch (``per="image"``: a 2D slice or a 3D volume) or per
    volume (``per="volume"``): the slices of a batch that share ``batch[group_key]`` are summed into
    one volume size and constrained once, with that volume's bounds (the same on each of its slices).

    Args:
        key: batch key of the bounds, ``(B, C, 2)`` as ``[lower, upper]`` in voxels.
        mode: ``"penalty"`` or ``"log_barrier"``.
        classes: indices of the constrained classes; ``None`` means every class but the background (0).
        per: ``"image"`` or ``"volume"``.
        group_key: batch key of the volume index of each slice, ``(B,)``, used when ``per="volume"``.
        t: initial log-barrier parameter (5 in the paper; 1 on the toy set).
        normalize: divide each image's summed cost by its number of voxels |Ω| (the original
            penalty code divides by 256²).
        reduction: ``"mean"``/``"sum"`` over images (or volumes), or ``"none"``.

    Half precision: the softmax, sizes and barrier are computed in float32 (float64 for float64
    logits), so the loss stays finite at t = 1e9 with fp16 logits. Its gradient on a violated
    constraint is about ``weight · t`` per voxel; past fp16's range (65504) under autocast, the
    ``GradScaler`` sees the overflow and skips that step, as it does for any overflow.

    Shapes:
        logits ``(B, C, H, W[, D])``; bounds ``(B, C, 2)``; output a scalar or ``(B,)`` (``(G,)`` volumes).

    Example:
        >>> import torch
        >>> logits = torch.zeros(1, 2, 4, 4)              # soft sizes 8 and 8
        >>> bounds = torch.tensor([[[0.0, 16.0], [10.0, 12.0]]])
        >>> SizeConstraintLoss(mode="penalty")(logits, {"bounds": bounds}).item()   # (10 - 8)^2
        4.0
    """

    def __init__(
        self,
        key: str = "bounds",
        mode: str = "log_barrier",
        classes: Sequence[int] | None = None,
        per: str = "image",
        group_key: str = "volume_index",
        t: float = 5.0,
        normalize: bool = False,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction=reduction)
        if mode not in CONSTRAINT_MODES:
            raise ValueError(f"mode must be one of {CONSTRAINT_MODES}, got {mode!r}")
        if per not in ("image", "volume"):
            raise ValueError(f"per must be 'image' or 'volume', got {per!r}")
        if not t > 0:
            raise ValueError(f"t must be positive, got {t}")
        self.key, self.mode, self.per, self.group_key = key, mode, per, group_key
        self.classes = None if classes is None else [int(c) for c in classes]
        self.t = float(t)
        self.normalize = bool(normalize)

    def _class_index(self, num_classes: int) -> list[int]:
        classes = list(range(1, num_classes)) if self.classes is None else self.classes
        bad = [c for c in classes if not 0 <= c < num_classes]
        if bad:
            raise ValueError(f"classes {bad} out of range for a {num_classes}-class output")
        return classes

    def constraint_values(self, logits: torch.Tensor, batch: Mapping) -> tuple[torch.Tensor, torch.Tensor]:
        """The constraints ``z`` of the batch, ``(G, C', 2)``, and the voxel count |Ω| of each group, ``(G,)``.

        ``z[..., 0] = a - V`` and ``z[..., 1] = V - b``; a constraint holds where ``z ≤ 0``.
        """
        self.check_logits(logits)
        bounds = self.read(batch, self.key).to(device=logits.device, dtype=torch.float32)
        num_images, num_classes = logits.shape[:2]
        if bounds.shape != (num_images, num_classes, 2):
            raise ValueError(
                f"{self.key!r} must have shape (B, C, 2) = {(num_images, num_classes, 2)}, got {tuple(bounds.shape)}"
            )
        if not torch.isfinite(bounds).all():
            raise ValueError(f"{self.key!r} contains NaN or inf values")
        if (bounds[..., 0] > bounds[..., 1]).any():
            raise ValueError(f"{self.key!r} has lower bounds above upper bounds")
        classes = self._class_index(num_classes)
        probs = torch.softmax(logits if logits.dtype == torch.float64 else logits.float(), dim=1)[:, classes]
        sizes = probs.flatten(2).sum(-1)  # (B, C')
        bounds = bounds[:, classes]
        voxels = torch.full((num_images,), float(probs[0, 0].numel()), device=logits.device)
        if self.per == "volume":
            groups = self.read(batch, self.group_key).to(logits.device).reshape(-1)
            if groups.numel() != num_images:
                raise ValueError(f"{self.group_key!r} must hold one volume index per image, got {groups.numel()}")
            _, inverse = torch.unique(groups, return_inverse=True)
            num_groups = int(inverse.max()) + 1
            sizes = sizes.new_zeros(num_groups, sizes.shape[1]).index_add(0, inverse, sizes)
            voxels = voxels.new_zeros(num_groups).index_add(0, inverse, voxels)
            first = torch.full((num_groups,), num_images, device=logits.device, dtype=torch.long)
            first = first.scatter_reduce(0, inverse, torch.arange(num_images, device=logits.device), "amin")
            group_bounds = bounds[first]
            if not torch.equal(group_bounds[inverse], bounds):
                raise ValueError(f"slices of one volume ({self.group_key!r}) carry different {self.key!r}")
            bounds = group_bounds
        z = torch.stack([bounds[..., 0] - sizes, sizes - bounds[..., 1]], dim=-1)
        return z, voxels

    def forward(self, logits: torch.Tensor, batch: Mapping) -> torch.Tensor:
        z, voxels = self.constraint_values(logits, batch)
        if self.mode == "penalty":
            cost = quadratic_penalty(z)
        else:
            cost = log_barrier_extension(z, self.t)
        per_group = cost.flatten(1).sum(1)
        if self.normalize:
            per_group = per_group / voxels
        return reduce_per_image(per_group, self.reduction)
