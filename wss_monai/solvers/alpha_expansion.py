"""α-expansion (Boykov, Veksler and Zabih, PAMI 2001) through gco-wrapper, on 2D grids and 3D volumes.

The GCO library works on 32-bit integer costs and aborts the whole process (an uncaught C++
exception) when one cost term exceeds 10⁷. The float problem is therefore scaled here, never by
GCO: unaries are shifted per voxel to a minimum of 0 (the minimiser is unchanged), then unaries and
edge weights share one scale that maps the largest of (the largest unary, the largest voxel degree
× the largest weight) to 10⁶, and are rounded and clipped to [0, 10⁷]. A seed is enforced by the
cost 10⁷ on every other label, more than any move can gain at that voxel (at most its degree ×
the largest weight ≤ 10⁶), so a seed never changes label; the result is checked anyway.

The graph is GCO's general graph, whose edges come from the grid offsets in one vectorised pass
(:func:`wss_monai.solvers.problem.grid_pairs`): 4/8-grids in 2D and 6/18/26-grids in 3D alike.
GCO is not thread safe; run problems in processes (:class:`wss_monai.solvers.SolverPool`).
gco-wrapper re-adds ``np.int`` and ``np.float`` to numpy when imported; it is imported here only
when a problem is solved.
"""

from __future__ import annotations

import numpy as np

from wss_monai.constants import UNLABELLED
from wss_monai.solvers.problem import PottsProblem, SolverError, grid_pairs

__all__ = ["MAX_COST", "SCALED_RANGE", "alpha_expansion", "integer_costs"]

MAX_COST = 10_000_000
"""The largest cost term GCO accepts (``GCO_MAX_ENERGYTERM``); above it GCO aborts the process."""
SCALED_RANGE = 1_000_000
"""What the largest unary, or the largest voxel degree × the largest weight, is scaled to."""


def integer_costs(problem: PottsProblem) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """The problem in GCO's integers: ``(unary (N, L), s1, s2, w, scale)`` over the allowed labels ``L``.

    Seeds cost 0 for their own label and :data:`MAX_COST` for the others.

    Example:
        >>> p = PottsProblem(np.array([[[0.0, 2.0]], [[1.0, 0.0]]]), [((0, 1), np.array([[4.0]]))])
        >>> unary, s1, s2, w, scale = integer_costs(p)
        >>> unary.tolist(), w.tolist(), scale
        ([[0, 250000], [500000, 0]], [1000000], 250000.0)
    """
    labels = np.asarray(problem.labels)
    unary = problem.unary[labels].reshape(len(labels), -1).T  # (N, L)
    unary = unary - unary.min(1, keepdims=True)
    s1, s2, w = grid_pairs(problem.spatial_shape, problem.edges)
    degree = np.bincount(np.concatenate([s1, s2]), minlength=unary.shape[0]).max() if s1.size else 0
    largest = max(float(unary.max()) if unary.size else 0.0, float(degree) * (float(w.max()) if w.size else 0.0))
    scale = SCALED_RANGE / largest if largest > 0 else 1.0
    unary = np.clip(np.rint(unary * scale), 0, MAX_COST)
    w = np.clip(np.rint(w * scale), 0, MAX_COST)
    seeds = problem.seeds.ravel()
    seeded = seeds != UNLABELLED
    if seeded.any():
        column = np.searchsorted(labels, seeds[seeded])
        unary[seeded] = MAX_COST
        unary[np.flatnonzero(seeded), column] = 0
    # C order: GCO reads the costs site by site through a raw pointer
    return np.ascontiguousarray(unary, dtype=np.intc), s1.astype(np.intc), s2.astype(np.intc), w.astype(np.intc), scale


def alpha_expansion(problem: PottsProblem, sweeps: int = 5) -> np.ndarray:
    """Minimises the Potts energy of ``problem`` by α-expansion; returns the label map ``(*spatial)`` int64.

    Args:
        problem: the unaries, edges, seeds and allowed labels.
        sweeps: expansion cycles over all labels (5 in ADM and the trust region); ``-1``: until convergence.

    Raises:
        SolverError: naming the case, when GCO fails or a seed was not kept.

    Example:
        >>> unary = np.array([[[0.0, 0.0, 5.0]], [[5.0, 5.0, 0.0]]])  # (2, 1, 3)
        >>> alpha_expansion(PottsProblem(unary, [((0, 1), np.full((1, 2), 1.0))])).tolist()
        [[0, 0, 1]]
        >>> alpha_expansion(PottsProblem(unary, [((0, 1), np.full((1, 2), 9.0))])).tolist()  # strong smoothing
        [[0, 0, 0]]
    """
    import gco  # noqa: PLC0415  (re-adds np.int / np.float to numpy: only where solving)

    labels = np.asarray(problem.labels)
    if len(labels) == 1:
        return np.full(problem.spatial_shape, labels[0], dtype=np.int64)
    unary, s1, s2, w, _ = integer_costs(problem)
    graph = gco.GCO()
    graph.create_general_graph(unary.shape[0], len(labels), energy_is_float=False)
    try:
        graph.set_data_cost(unary)
        if s1.size:
            graph.set_all_neighbors(s1, s2, w)
        graph.set_smooth_cost((1 - np.eye(len(labels))).astype(np.intc))
        graph.expansion(int(sweeps))
        result = labels[graph.get_labels()].reshape(problem.spatial_shape).astype(np.int64)
    except Exception as error:  # gco's own Python-side errors (shapes, indices)
        raise SolverError(f"{problem.case}: α-expansion failed: {error}") from error
    finally:
        graph.destroy_graph()
    seeded = problem.seeds != UNLABELLED
    if (result[seeded] != problem.seeds[seeded]).any():
        raise SolverError(
            f"{problem.case}: α-expansion changed {(result[seeded] != problem.seeds[seeded]).sum()} seeds"
        )
    return result
