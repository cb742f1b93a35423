"""Gaussian filtering in a high-dimensional feature space on the permutohedral lattice, in torch.

Adams, Baek and Davis, "Fast high-dimensional filtering using the permutohedral lattice",
Eurographics 2010; the lattice layout and constants follow Krähenbühl and Koltun's dense-CRF code
(NIPS 2011), which rloss (Tang et al., ECCV 2018) wraps.

Every point ``i`` carries a feature vector ``f_i`` (e.g. position / σ_xy and intensity / σ_I) and
a value vector ``v_i``. The filter returns, for every point,

.. math:: (W v)_i ≈ \\sum_j \\exp\\left(-\\tfrac12 \\lVert f_i - f_j \\rVert^2\\right) v_j

(unnormalised, self-weight included) in O(N d²) instead of O(N²): values are splatted onto the
vertices of the simplices enclosing each point, blurred with a [1/2, 1, 1/2] kernel along each
of the d + 1 lattice directions, and sliced back with the same barycentric weights. The lattice
is built once per image set (``no_grad``: it depends on the features only); filtering is plain
``index_add`` / indexing, so autograd gives the exact transpose of the operator, on CPU and GPU.
Points of different images never interact: the image index is part of every lattice key.
"""

from __future__ import annotations

import math

import torch

__all__ = ["PermutohedralLattice"]


def _unique_with_inverse(codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.unique(codes, sorted=True, return_inverse=True)`` for 1D int64, through one sort (faster on CPU)."""
    ordered, order = torch.sort(codes)
    new = torch.ones_like(ordered, dtype=torch.bool)
    new[1:] = ordered[1:] != ordered[:-1]
    inverse = torch.empty_like(order)
    inverse[order] = torch.cumsum(new, 0) - 1
    return ordered[new], inverse


class PermutohedralLattice:
    """The permutohedral lattice of a set of feature vectors, for repeated Gaussian filtering.

    Args:
        features: ``(N, d)`` feature vectors, already divided by the kernel's standard deviations.
        groups: ``(N,)`` integer group of each point (e.g. its image in a batch); points of
            different groups are filtered independently. ``None``: one group.

    Example:
        >>> import torch
        >>> features = torch.tensor([[0.0, 0.0], [0.5, 0.0], [40.0, 40.0]])
        >>> lattice = PermutohedralLattice(features)
        >>> out = lattice.filter(torch.ones(3, 1))
        >>> bool(out[2, 0] < out[0, 0])   # the far point has only itself as a neighbour
        True
    """

    def __init__(self, features: torch.Tensor, groups: torch.Tensor | None = None) -> None:
        if features.ndim != 2 or features.shape[0] == 0 or features.shape[1] == 0:
            raise ValueError(f"features must have shape (N, d) with N, d >= 1, got {tuple(features.shape)}")
        if not torch.isfinite(features).all():
            raise ValueError("features contain NaN or inf values")
        if groups is not None and groups.shape != features.shape[:1]:
            raise ValueError(f"groups must have shape ({features.shape[0]},), got {tuple(groups.shape)}")
        with torch.no_grad():
            self._build(features.detach().float(), None if groups is None else groups.detach().long())

    @property
    def num_vertices(self) -> int:
        """Number of lattice vertices holding at least one point's value."""
        return self.keys.shape[0]

    def _build(self, features: torch.Tensor, groups: torch.Tensor | None) -> None:
        n, d = features.shape
        device = features.device
        self.num_points, self.dim = n, d
        # Elevate onto the plane x·1 = 0 of R^{d+1}, scaled so that the blur approximates a unit Gaussian.
        position = torch.arange(1, d + 1, device=device, dtype=torch.float32)
        cf = features * ((d + 1) * math.sqrt(2.0 / 3.0) / torch.sqrt(position * (position + 1)))
        suffix = torch.flip(torch.cumsum(torch.flip(cf, [1]), 1), [1])  # suffix[:, j] = Σ_{k ≥ j} cf[:, k]
        elevated = torch.cat([suffix, cf.new_zeros(n, 1)], 1)
        elevated[:, 1:] -= position * cf
        # The closest remainder-0 lattice point, and the simplex around the point: rank[i] is the place of
        # coordinate i when the differences are sorted in decreasing order (ties: the lower index first).
        rounded = torch.round(elevated / (d + 1))
        rem0 = rounded * (d + 1)
        diff = elevated - rem0
        rank = rounded.sum(1, keepdim=True).long().expand(n, d + 1).clone()
        for i in range(d + 1):
            for j in range(i + 1, d + 1):
                later_larger = (diff[:, i] < diff[:, j]).long()
                rank[:, i] += later_larger
                rank[:, j] += 1 - later_larger
        wrap = (rank < 0).long() - (rank > d).long()  # bring the point back onto the plane
        rank += wrap * (d + 1)
        rem0 += wrap * (d + 1)
        # Barycentric weights of the d + 1 vertices of the enclosing simplex.
        v = (elevated - rem0) / (d + 1)
        barycentric = torch.zeros(n, d + 2, device=device)
        barycentric.scatter_add_(1, d - rank, v)
        barycentric.scatter_add_(1, d - rank + 1, -v)
        barycentric[:, 0] += 1.0 + barycentric[:, d + 1]
        self.barycentric = barycentric[:, : d + 1]  # (N, d + 1)
        # Vertex r of the simplex has coordinates rem0_i + r - (d + 1)·[rank_i > d - r]. Keys are encoded as
        # one int64 (mixed radix over the first d coordinates, the last being minus their sum, and the
        # group); the encoding is linear, so a vertex's code is the code of rem0 plus a per-vertex shift.
        rem0 = rem0.long()[:, :d]
        margin = 2 * d + 2  # vertices lie within d of rem0, their neighbours within d more
        low = rem0.min(0).values - margin
        span = rem0.max(0).values + margin - low + 1
        group = torch.zeros(n, dtype=torch.long, device=device) if groups is None else groups
        num_groups = int(group.max().item()) + 1
        bits = math.log2(num_groups) + float(torch.log2(span.double()).sum())
        if bits > 62:
            raise ValueError(
                f"the lattice of these features needs {bits:.0f} bits per key (> 62): the features span too "
                "wide a range for their standard deviations; increase the kernel's sigmas or downsample"
            )
        multipliers = torch.cumprod(torch.cat([span[1:], span.new_ones(1)]).flip(0), 0).flip(0)  # (d,)
        group_multiplier = int(multipliers[0] * span[0])
        base = ((rem0 - low) * multipliers).sum(1) + group * group_multiplier  # (N,)
        # Σ_i mult_i [rank_i > d - r] for r = 0..d, from the multipliers gathered by rank and summed from the top
        by_rank = torch.zeros(n, d + 2, dtype=torch.long, device=device)
        by_rank.scatter_add_(1, rank[:, :d], multipliers.expand(n, d))
        above = torch.flip(torch.cumsum(torch.flip(by_rank, [1]), 1), [1])  # above[:, k] = Σ_{rank ≥ k}
        r = torch.arange(d + 1, device=device)
        codes = base[:, None] + r * multipliers.sum() - (d + 1) * above[:, d - r + 1]  # (N, d + 1)
        self.keys, inverse = _unique_with_inverse(codes.flatten())  # sorted codes of the vertices
        self.vertex = inverse.view(n, d + 1)  # (N, d + 1) vertex index of each simplex corner
        # Neighbours along lattice direction j: every coordinate + 1 and coordinate j - d (j = d: the implicit
        # last one), i.e. a code shift of Σ mult - (d + 1) mult_j; both signs. Missing ones point to the zero row.
        total = multipliers.sum()
        shifts = [total - (d + 1) * multipliers[j] for j in range(d)] + [total]
        self.neighbours = [(self._lookup(self.keys + shift), self._lookup(self.keys - shift)) for shift in shifts]
        # The lattice kernel's integral is 2^{d+1} (3/2)^{d/2} / sqrt(d + 1) (blur gain times the feature-space
        # volume per vertex); scaling it to the Gaussian's (2π)^{d/2} makes dense point sets exact on average.
        self.scale = (2 * math.pi / 1.5) ** (d / 2) * math.sqrt(d + 1) / 2 ** (d + 1)

    def _lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Vertex index of each code, then ``num_vertices`` (the zero row, also for missing codes) appended."""
        position = torch.searchsorted(self.keys, codes).clamp_max(self.keys.shape[0] - 1)
        missing = torch.full_like(position, self.keys.shape[0])
        found = torch.where(self.keys[position] == codes, position, missing)
        return torch.cat([found, missing[:1]])

    def filter(self, values: torch.Tensor, symmetric: bool = True) -> torch.Tensor:
        """Unnormalised Gaussian filtering ``W v`` of ``values`` ``(N, C)``, differentiable in ``values``.

        Args:
            values: ``(N, C)``.
            symmetric: average the blur in both orders of the lattice directions. On a sparse lattice
                the blurs do not commute, so one order gives a slightly asymmetric ``W`` (its
                transpose is the other order); the average is exactly symmetric, so the gradient of
                ``vᵀ W v`` is exactly ``2 W v``.

        Returns:
            ``(N, C)``, in the dtype of ``values`` (computed in float32 for half inputs).
        """
        if values.ndim != 2 or values.shape[0] != self.num_points:
            raise ValueError(f"values must have shape ({self.num_points}, C), got {tuple(values.shape)}")
        dtype = values.dtype
        work = values.float() if dtype in (torch.float16, torch.bfloat16) else values
        weights = self.barycentric.to(work.dtype)
        splat = work.new_zeros(self.num_vertices + 1, work.shape[1])  # the last row stays 0: missing neighbours
        splat = splat.index_add(0, self.vertex.flatten(), (weights[..., None] * work[:, None, :]).flatten(0, 1))
        lattice = self._blur(splat, self.neighbours)
        if symmetric:
            lattice = 0.5 * (lattice + self._blur(splat, self.neighbours[::-1]))
        out = (weights[..., None] * lattice[self.vertex]).sum(1) * self.scale
        return out.to(dtype)

    @staticmethod
    def _blur(lattice: torch.Tensor, neighbours: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """The [1/2, 1, 1/2] blur along each lattice direction in turn (the last row, zero, stays zero)."""
        for forward, backward in neighbours:
            lattice = lattice + 0.5 * (lattice[forward] + lattice[backward])
        return lattice
