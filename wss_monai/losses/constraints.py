"""The costs of a violated inequality constraint ``z ≤ 0``: the quadratic penalty and the log-barrier extension.

:class:`wss_monai.losses.InequalityConstraintLoss` applies them to every constraint of a batch at
once, as one tensor; :data:`CONSTRAINT_MODES` lists the ways it handles constraints.

References:
    Kervadec et al., "Constrained-CNN losses for weakly supervised segmentation", MedIA 2019 (penalty).
    Kervadec et al., "Constrained deep networks: Lagrangian optimization via log-barrier extensions",
    EUSIPCO 2022 (log-barrier extension).
"""

from __future__ import annotations

import math

import torch

__all__ = ["CONSTRAINT_MODES", "LAGRANGIAN_MODES", "log_barrier_extension", "quadratic_penalty"]

CONSTRAINT_MODES = ("penalty", "log_barrier", "lagrangian", "relu_lagrangian")
"""Constraint handling: quadratic penalty, log-barrier extension, standard and ReLU Lagrangian."""
LAGRANGIAN_MODES = ("lagrangian", "relu_lagrangian")
"""The modes whose multipliers a :class:`wss_monai.handlers.DualAscentHandler` updates."""


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
