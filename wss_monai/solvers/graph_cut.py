"""Exact binary graph cut (Boykov and Kolmogorov, PAMI 2004) through PyMaxflow, 2D and 3D.

PyMaxflow is GPL-licensed and therefore an optional extra (``pip install wss-monai[solvers]``);
this module imports it only when a problem is solved. For two labels the Potts energy is
submodular and the minimum cut is its exact minimiser; α-expansion reaches the same minimum on two
labels, this is the exact reference and the faster path for binary problems (lesions, one
structure against the background).
"""

from __future__ import annotations

import numpy as np

from wss_monai.constants import UNLABELLED
from wss_monai.solvers.problem import PottsProblem, SolverError, _pair_slices

__all__ = ["binary_graph_cut"]


def binary_graph_cut(problem: PottsProblem) -> np.ndarray:
    """The exact minimiser of a two-label Potts problem; returns the label map ``(*spatial)`` int64.

    Seeds are terminal edges of infinite capacity. With one allowed label the answer is constant.

    Raises:
        SolverError: naming the case, for more than two allowed labels or without PyMaxflow.

    Example:
        >>> unary = np.array([[[0.0, 0.0, 5.0]], [[5.0, 5.0, 0.0]]])
        >>> binary_graph_cut(PottsProblem(unary, [((0, 1), np.full((1, 2), 1.0))])).tolist()
        [[0, 0, 1]]
    """
    labels = np.asarray(problem.labels)
    if len(labels) == 1:
        return np.full(problem.spatial_shape, labels[0], dtype=np.int64)
    if len(labels) != 2:
        raise SolverError(f"{problem.case}: a binary graph cut needs two labels, got {labels.tolist()}")
    try:
        import maxflow  # noqa: PLC0415  (GPL: optional)
    except ImportError as error:
        raise SolverError(
            f"{problem.case}: PyMaxflow is not installed (pip install 'wss-monai[solvers]'); "
            "alpha_expansion solves two-label problems too"
        ) from error
    shape = problem.spatial_shape
    graph = maxflow.Graph[float]()
    nodes = graph.add_grid_nodes(shape)
    for offset, weight in problem.edges:
        full = np.zeros(shape)
        first, _ = _pair_slices(shape, offset)
        full[first] = weight
        reach = max(abs(o) for o in offset)
        structure = np.zeros((2 * reach + 1,) * len(shape))
        structure[tuple(reach + o for o in offset)] = 1  # the edge from p to p + offset, weight at p
        graph.add_grid_edges(nodes, weights=full, structure=structure, symmetric=True)
    cost_first, cost_second = problem.unary[labels[0]].copy(), problem.unary[labels[1]].copy()
    infinite = 1.0 + cost_first.sum() + cost_second.sum() + sum(float(w.sum()) for _, w in problem.edges)
    cost_second[problem.seeds == labels[0]] = infinite
    cost_first[problem.seeds == labels[1]] = infinite
    # a node on the sink side (segment True, the second label) cuts its source edge: capacity = its cost
    graph.add_grid_tedges(nodes, cost_second, cost_first)
    graph.maxflow()
    result = np.where(graph.get_grid_segments(nodes), labels[1], labels[0]).astype(np.int64)
    seeded = problem.seeds != UNLABELLED
    if (result[seeded] != problem.seeds[seeded]).any():
        raise SolverError(f"{problem.case}: the graph cut changed seeds")
    return result
