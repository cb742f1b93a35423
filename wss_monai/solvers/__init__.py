"""Discrete solvers for Potts segmentation energies: α-expansion (gco-wrapper), the exact binary graph
cut (PyMaxflow, optional), and a process pool that runs them beside training."""

from wss_monai.solvers.alpha_expansion import MAX_COST, alpha_expansion, integer_costs
from wss_monai.solvers.dense_crf import DenseCRFProblem, dense_crf_labels
from wss_monai.solvers.graph_cut import binary_graph_cut
from wss_monai.solvers.pool import SOLVERS, SolverPool, solve
from wss_monai.solvers.problem import (
    PottsProblem,
    SolverError,
    checked_seeds,
    grid_pairs,
    labels_in_seeds,
    potts_problem_energy,
)

__all__ = [
    "DenseCRFProblem",
    "dense_crf_labels",
    "MAX_COST",
    "SOLVERS",
    "PottsProblem",
    "SolverError",
    "SolverPool",
    "alpha_expansion",
    "binary_graph_cut",
    "checked_seeds",
    "grid_pairs",
    "integer_costs",
    "labels_in_seeds",
    "potts_problem_energy",
    "solve",
]
