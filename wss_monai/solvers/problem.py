"""A discrete Potts segmentation problem on a 2D or 3D grid, and its exact energy.

.. math:: E(x) = \\sum_p U_p(x_p) + \\sum_{(p, q)} w_{pq} [x_p \\ne x_q]

The unary terms ``U`` come from the network (``−log S`` and, for the trust region, a KL term); the
edges are the grid-CRF's contrast-sensitive weights (:func:`wss_monai.losses.potts_edge_weights`),
one weight array per neighbour offset. Seeds (scribbles) are hard constraints: a seed voxel keeps
its label. Everything is numpy, so that a problem can be sent to a worker process.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from wss_monai.constants import UNLABELLED

__all__ = ["PottsProblem", "SolverError", "checked_seeds", "grid_pairs", "labels_in_seeds", "potts_problem_energy"]


class SolverError(RuntimeError):
    """A discrete solver failed on one case; the message starts with the case's name."""


def _pair_slices(shape: Sequence[int], offset: Sequence[int]) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    first, second = [], []
    for size, step in zip(shape, offset):
        step = min(abs(step), size) * (1 if step >= 0 else -1)
        first.append(slice(0, size - step) if step >= 0 else slice(-step, size))
        second.append(slice(step, size) if step >= 0 else slice(0, size + step))
    return tuple(first), tuple(second)


@dataclass
class PottsProblem:
    """One image's Potts problem.

    Args:
        unary: ``(K, *spatial)`` float costs of each label at each voxel (2D or 3D).
        edges: ``[(offset, w), ...]``; ``w`` of shape ``overlap`` (the voxels ``p`` whose ``p + offset``
            lies in the image, as :func:`wss_monai.losses.pairwise.pair_views` cuts them), ≥ 0.
        seeds: ``spatial`` integer label map, ``UNLABELLED`` (-1) where free; or ``(K, *spatial)``
            boolean masks, one per label (a voxel in two masks is an error).
        labels: the labels the solution may use (e.g. those present in the seeds); ``None``: all ``K``.
        case: a name for the errors (e.g. ``"patient012_frame01 slice 4"``).
    """

    unary: np.ndarray
    edges: list[tuple[tuple[int, ...], np.ndarray]] = field(default_factory=list)
    seeds: np.ndarray | None = None
    labels: Sequence[int] | None = None
    case: str = "case"

    def __post_init__(self) -> None:
        self.unary = np.asarray(self.unary, dtype=np.float64)
        if self.unary.ndim not in (3, 4):
            raise SolverError(f"{self.case}: unary must have shape (K, H, W[, D]), got {self.unary.shape}")
        if not np.isfinite(self.unary).all():
            bad = int((~np.isfinite(self.unary)).sum())
            raise SolverError(f"{self.case}: the unary costs hold {bad} NaN or inf values (a NaN probability map?)")
        num_labels, spatial = self.unary.shape[0], self.unary.shape[1:]
        checked = []
        for offset, weight in self.edges:
            offset = tuple(int(o) for o in offset)
            weight = np.asarray(weight, dtype=np.float64).reshape(
                [s.stop - s.start for s in _pair_slices(spatial, offset)[0]]
            )
            if not np.isfinite(weight).all() or (weight < 0).any():
                raise SolverError(f"{self.case}: the weights of offset {offset} must be finite and >= 0")
            checked.append((offset, weight))
        self.edges = checked
        self.seeds = checked_seeds(self.seeds, num_labels, spatial, self.case)
        labels = range(num_labels) if self.labels is None else sorted({int(v) for v in self.labels})
        if not labels or min(labels) < 0 or max(labels) >= num_labels:
            raise SolverError(f"{self.case}: labels must be a non-empty subset of range({num_labels}), got {labels}")
        self.labels = list(labels)
        seeded = np.unique(self.seeds[self.seeds != UNLABELLED])
        missing = sorted(set(seeded.tolist()) - set(self.labels))
        if missing:
            raise SolverError(f"{self.case}: the seeds use labels {missing}, not among the allowed {self.labels}")

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(self.unary.shape[1:])


def checked_seeds(seeds, num_labels: int, spatial: Sequence[int], case: str = "case") -> np.ndarray:
    """A seed map as an int64 ``spatial`` array (``UNLABELLED`` where free), from a label map, ``(K, *spatial)``
    boolean masks or ``None``.

    Raises:
    SolverError: naming ``case``: a voxel seeded twice, a wrong shape, non-integer values or a label
        outside ``range(num_labels)``.
    """
    spatial = tuple(spatial)
    if seeds is None:
        return np.full(spatial, UNLABELLED, dtype=np.int64)
    seeds = np.asarray(seeds)
    if seeds.shape == (num_labels, *spatial) and seeds.dtype == bool:
        count = seeds.sum(0)
        if (count > 1).any():
            first = tuple(int(i) for i in np.argwhere(count > 1)[0])
            raise SolverError(
                f"{case}: {int((count > 1).sum())} voxels are seeds of two labels or more (first at {first})"
            )
        return np.where(count == 1, seeds.argmax(0), UNLABELLED).astype(np.int64)
    if seeds.shape != spatial:
        raise SolverError(
            f"{case}: seeds of shape {seeds.shape} do not match the unary's spatial shape {spatial} "
            f"(or ({num_labels}, *spatial) boolean masks)"
        )
    if not np.issubdtype(seeds.dtype, np.integer):
        if not np.isfinite(seeds).all() or (seeds != np.round(seeds)).any():
            raise SolverError(f"{case}: seeds must be integer labels or {UNLABELLED}")
    seeds = seeds.astype(np.int64)
    bad = (seeds != UNLABELLED) & ((seeds < 0) | (seeds >= num_labels))
    if bad.any():
        raise SolverError(
            f"{case}: seed labels {sorted(np.unique(seeds[bad]).tolist())} are outside range({num_labels})"
        )
    return seeds


def labels_in_seeds(seeds: np.ndarray) -> list[int] | None:
    """The labels a seed map uses, sorted; ``None`` when it holds no seed (every label stays allowed)."""
    present = np.unique(seeds[seeds != UNLABELLED])
    return present.astype(np.int64).tolist() if present.size else None


def grid_pairs(
    spatial_shape: Sequence[int], edges: Sequence[tuple[Sequence[int], np.ndarray]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The grid's edges as flat voxel indices ``(s1, s2, w)``, ``s1 < s2`` (C order), all offsets at once.

    Example:
        >>> s1, s2, w = grid_pairs((2, 2), [((0, 1), np.array([[1.0], [2.0]]))])
        >>> s1.tolist(), s2.tolist(), w.tolist()
        ([0, 2], [1, 3], [1.0, 2.0])
    """
    index = np.arange(int(np.prod(spatial_shape))).reshape(spatial_shape)
    first, second, weights = [], [], []
    for offset, weight in edges:
        a, b = _pair_slices(spatial_shape, offset)
        first.append(index[a].ravel())
        second.append(index[b].ravel())
        weights.append(np.asarray(weight, dtype=np.float64).ravel())
    if not first:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    s1, s2, w = np.concatenate(first), np.concatenate(second), np.concatenate(weights)
    swap = s1 > s2  # offsets whose first non-zero step is negative
    s1[swap], s2[swap] = s2[swap], s1[swap]
    return s1, s2, w


def potts_problem_energy(problem: PottsProblem, labels: np.ndarray) -> float:
    """``E(x)`` of a label map ``x`` (``spatial``) for ``problem``, seeds not included (check them apart).

    Example:
        >>> p = PottsProblem(np.array([[[0.0, 1.0]], [[1.0, 0.0]]]), [((0, 1), np.array([[3.0]]))])
        >>> potts_problem_energy(p, np.array([[0, 1]])), potts_problem_energy(p, np.array([[0, 0]]))
        (3.0, 1.0)
    """
    labels = np.asarray(labels)
    unary = np.take_along_axis(problem.unary, labels[None].astype(np.int64), 0).sum()
    pairwise = 0.0
    for offset, weight in problem.edges:
        a, b = _pair_slices(labels.shape, offset)
        pairwise += float((weight * (labels[a] != labels[b])).sum())
    return float(unary) + pairwise
