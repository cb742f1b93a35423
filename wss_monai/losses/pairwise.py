"""Voxel pairs at fixed offsets and the Potts energy summed over them (grid and local-window CRF losses).

An offset ``o`` pairs every voxel ``p`` with ``q = p + o`` where both lie in the image. Only one
of ``o`` and ``-o`` is listed (the first non-zero component positive): a pair is counted once.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import torch

__all__ = [
    "GRID_NEIGHBOURHOODS",
    "RELAXATIONS",
    "grid_offsets",
    "offset_lengths",
    "pair_views",
    "pairwise_potts_energy",
    "window_offsets",
]

GRID_NEIGHBOURHOODS = {2: (4, 8), 3: (6, 18, 26)}
"""Neighbourhood sizes allowed per number of spatial dimensions."""

RELAXATIONS = ("bilinear", "quadratic")
"""Relaxations of the Potts term ``[y_p ≠ y_q]`` of a soft segmentation: ``1 − S_p·S_q`` or ``½‖S_p − S_q‖²``."""


def _half(offsets: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """Keeps one of each pair ``o``, ``-o``: the one whose first non-zero component is positive."""
    return [o for o in offsets if any(o) and next(c for c in o if c) > 0]


def grid_offsets(spatial_dims: int, neighbourhood: int) -> list[tuple[int, ...]]:
    """The half-neighbourhood offsets of a 4/8-connected 2D or 6/18/26-connected 3D grid.

    Example:
        >>> grid_offsets(2, 8)
        [(0, 1), (1, -1), (1, 0), (1, 1)]
        >>> len(grid_offsets(3, 18))
        9
    """
    allowed = GRID_NEIGHBOURHOODS.get(spatial_dims)
    if allowed is None:
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    if neighbourhood not in allowed:
        raise ValueError(f"a {spatial_dims}D neighbourhood must be one of {allowed}, got {neighbourhood}")
    max_nonzero = {4: 1, 8: 2, 6: 1, 18: 2, 26: 3}[neighbourhood]
    offsets = _half(list(itertools.product((-1, 0, 1), repeat=spatial_dims)))
    return [o for o in offsets if sum(c != 0 for c in o) <= max_nonzero]


def window_offsets(radius: Sequence[int]) -> list[tuple[int, ...]]:
    """The half-window offsets of a ``(2 r_1 + 1) × ... × (2 r_n + 1)`` window, centre excluded.

    Example:
        >>> len(window_offsets((1, 1)))  # (3 * 3 - 1) / 2
        4
    """
    return _half(list(itertools.product(*(range(-r, r + 1) for r in radius))))


def pair_views(x: torch.Tensor, offset: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Views ``(x[p], x[p + offset])`` over every ``p`` with both voxels inside the image.

    Args:
        x: ``(B, C, *spatial)``.
        offset: one integer per spatial axis.

    Returns:
        Two views of shape ``(B, C, *overlap)``; empty along an axis shorter than its offset.
    """
    first, second = [slice(None), slice(None)], [slice(None), slice(None)]
    for size, step in zip(x.shape[2:], offset):
        step = min(abs(step), size) * (1 if step >= 0 else -1)
        if step >= 0:
            first.append(slice(0, size - step))
            second.append(slice(step, size))
        else:
            first.append(slice(-step, size))
            second.append(slice(0, size + step))
    return x[tuple(first)], x[tuple(second)]


def offset_lengths(offsets: Sequence[Sequence[int]], spacing: Sequence[float] | None) -> list[float]:
    """Euclidean length of each offset in units of the smallest voxel side (``spacing=None``: voxels).

    Example:
        >>> offset_lengths([(1, 0), (0, 1), (1, 1)], spacing=(2.0, 1.0))
        [2.0, 1.0, 2.23606797749979]
    """
    dims = len(offsets[0]) if offsets else 0
    scale = [1.0] * dims if spacing is None else [float(s) / min(float(v) for v in spacing) for s in spacing]
    return [sum((c * s) ** 2 for c, s in zip(o, scale)) ** 0.5 for o in offsets]


def pairwise_potts_energy(
    probs: torch.Tensor, edges: Iterable[tuple[Sequence[int], torch.Tensor]], relaxation: str = "bilinear"
) -> torch.Tensor:
    """``Σ_{(p, q)} w_pq ρ(S_p, S_q)`` per image over the pairs of the given offsets, with its gradient.

    Args:
        probs: ``(B, K, *spatial)`` soft segmentation.
        edges: ``(offset, w)`` pairs, ``w`` of shape ``(B, 1, *overlap)`` (see :func:`pair_views`),
            computed without gradient; may be a generator, so each weight tensor is dropped once used.
        relaxation: ``"bilinear"`` (ρ = 1 − S_p·S_q) or ``"quadratic"`` (ρ = ½‖S_p − S_q‖²).

    Returns:
        ``(B,)``. Both relaxations equal ``Σ w_pq [y_p ≠ y_q]`` on one-hot inputs.

    The weighted neighbour sum ``G_p = Σ_q w_pq S_q`` (and, for the quadratic form, the degree
    ``D_p = Σ_q w_pq``) are accumulated in place, one offset at a time; the gradient is ``−G``
    (bilinear) or ``D S − G`` (quadratic), so no per-offset tensor is kept for autograd.

    Example:
        >>> import torch
        >>> probs = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]])  # (1, 2, 1, 2): two voxels, two classes
        >>> pairwise_potts_energy(probs, [((0, 1), torch.full((1, 1, 1, 1), 3.0))]).tolist()
        [3.0]
    """
    if relaxation not in RELAXATIONS:
        raise ValueError(f"relaxation must be one of {RELAXATIONS}, got {relaxation!r}")
    return _PairwisePottsEnergy.apply(probs, edges, relaxation == "quadratic")


class _PairwisePottsEnergy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, probs, edges, quadratic):
        neighbour_sum = torch.zeros_like(probs)
        degree = torch.zeros_like(probs[:, :1]) if quadratic else None  # the bilinear form needs only Σ w
        total_weight = probs.new_zeros(probs.shape[0])
        for offset, weight in edges:
            a, b = pair_views(probs, offset)
            if a.numel() == 0:
                continue
            weight = weight.to(probs.dtype)
            ga, gb = pair_views(neighbour_sum, offset)
            ga.addcmul_(weight, b)
            gb.addcmul_(weight, a)
            if quadratic:
                da, db = pair_views(degree, offset)
                da.add_(weight)
                db.add_(weight)
            else:
                total_weight += weight.flatten(1).sum(1)
        cross = (probs * neighbour_sum).flatten(1).sum(1)  # Σ_p S_p·G_p counts every pair twice
        if quadratic:
            energy = 0.5 * ((degree * probs.pow(2)).flatten(1).sum(1) - cross)
        else:
            energy = total_weight - 0.5 * cross
        ctx.quadratic = quadratic
        ctx.save_for_backward(probs, neighbour_sum, *([degree] if quadratic else []))
        return energy

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_energy):
        probs, neighbour_sum, *degree = ctx.saved_tensors
        grad = degree[0] * probs - neighbour_sum if ctx.quadratic else -neighbour_sum
        return grad * grad_energy.view((-1,) + (1,) * (probs.ndim - 1)), None, None
