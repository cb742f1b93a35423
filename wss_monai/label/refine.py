"""Interactive refinement: new scribbles + the network's probabilities → a Potts segmentation, seeds hard.

.. math:: x^* = \\arg\\min_x \\sum_p -\\log S_{x_p}(p) + \\lambda \\sum_{(p, q)} w_{pq} [x_p \\ne x_q]
    \\quad \\text{s.t. } x_p = y_p \\text{ on the scribbled voxels}

with the grid CRF's contrast-sensitive weights ``w_pq = exp(-|I_p - I_q|² / 2σ²) / dist(p, q)``
(:func:`wss_monai.losses.potts_edge_weights`, 6-connected in 3D, ``dist`` in mm from the voxel
spacing). Two labels: the exact binary graph cut (PyMaxflow); more: α-expansion (gco), 2 sweeps
(on a cardiac phantom the 2nd to 5th sweeps changed no Dice digit and cost 20 % to 80 % more time)
(:mod:`wss_monai.solvers`). In ``target`` mode (MONAI Label's binary scribbles: background and one
foreground class) the problem is binary, ``S_target`` against ``1 - S_target``, and the cut only
moves that class: voxels it removes from ``target`` take their most probable other class.

Example:
    >>> import numpy as np
    >>> probabilities = np.stack([np.full((8, 8, 2), 0.52), np.full((8, 8, 2), 0.48)])  # (K, H, W, D)
    >>> image = np.zeros((1, 8, 8, 2)); image[:, 4:] = 1.0                              # two flat halves
    >>> seeds = np.full((8, 8, 2), -1); seeds[6, 4, 0] = 1                              # one click of class 1
    >>> labels, info = refine_segmentation(probabilities, image, seeds, smoothness=2.0)
    >>> labels[:, 4, 0].tolist(), info["solver"]
    ([0, 0, 0, 0, 1, 1, 1, 1], 'graph_cut')
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
import torch

from wss_monai.constants import UNLABELLED
from wss_monai.losses.grid_crf import potts_edge_weights
from wss_monai.solvers import PottsProblem, alpha_expansion, binary_graph_cut

__all__ = ["SOLVER_CHOICES", "refine_segmentation"]

logger = logging.getLogger(__name__)

SOLVER_CHOICES = ("auto", "graph_cut", "alpha_expansion")
"""``auto``: the binary graph cut for two labels, α-expansion for more."""


def _edges(image: np.ndarray, smoothness: float, neighbourhood, spacing, sigma) -> list:
    weights = potts_edge_weights(torch.as_tensor(image, dtype=torch.float32)[None], neighbourhood, spacing, sigma)
    return [(offset, smoothness * w[0, 0].numpy().astype(np.float64)) for offset, w in weights]


def _check(probabilities: np.ndarray, image: np.ndarray, seeds: np.ndarray) -> None:
    if probabilities.ndim not in (3, 4):
        raise ValueError(f"probabilities must have shape (K, H, W[, D]), got {probabilities.shape}")
    spatial = probabilities.shape[1:]
    if image.ndim != probabilities.ndim or image.shape[1:] != spatial:
        raise ValueError(f"image of shape {image.shape} does not match probabilities {probabilities.shape}: "
                         "expected (C, *spatial)")  # fmt: skip
    if seeds.shape != spatial:
        raise ValueError(f"seeds of shape {seeds.shape} do not match the spatial shape {spatial}")


def refine_segmentation(
    probabilities: np.ndarray,
    image: np.ndarray,
    seeds: np.ndarray,
    smoothness: float = 2.0,
    spacing: Sequence[float] | None = None,
    neighbourhood: int | None = None,
    sigma: float | None = None,
    solver: str = "auto",
    target: int | None = None,
    sweeps: int = 2,
    floor: float = 1e-4,
) -> tuple[np.ndarray, dict]:
    """The refined label map of one image.

    Args:
        probabilities: ``(K, H, W[, D])`` softmax of the network (each voxel sums to 1).
        image: ``(C, H, W[, D])`` intensities (any scale: σ is estimated from the image).
        seeds: ``(H, W[, D])`` class indices where scribbled, ``UNLABELLED`` (-1) elsewhere.
        smoothness: ``λ``, the weight of the Potts term against the ``-log S`` unaries.
        spacing: voxel size per axis (mm) for ``dist(p, q)``; ``None``: isotropic.
        neighbourhood: 4 / 8 (2D), 6 / 18 / 26 (3D); ``None``: 8 in 2D, 6 in 3D.
        sigma: contrast σ; ``None``: from the image.
        solver: one of :data:`SOLVER_CHOICES`.
        target: binary mode: the foreground class of the seeds (the seeds then hold 0 and ``target``).
        sweeps: α-expansion cycles.
        floor: probabilities are clipped to ``[floor, 1]`` before the log.

    Returns:
        ``(labels (H, W[, D]) int64, info)`` with ``info = {"solver", "seconds", "cpu_seconds", "seeds", "changed"}``
        (``changed``: voxels whose label differs from the argmax of ``probabilities``).

    Raises:
        ValueError: shapes that disagree, an unknown solver, seeds outside the classes.
    """
    probabilities, image, seeds = np.asarray(probabilities), np.asarray(image), np.asarray(seeds)
    _check(probabilities, image, seeds)
    if solver not in SOLVER_CHOICES:
        raise ValueError(f"solver must be one of {SOLVER_CHOICES}, got {solver!r}")
    if not smoothness >= 0:
        raise ValueError(f"smoothness must be >= 0, got {smoothness!r}")
    num_classes = probabilities.shape[0]
    seeded = seeds != UNLABELLED
    bad = sorted(np.unique(seeds[seeded & ((seeds < 0) | (seeds >= num_classes))]).tolist())
    if bad:
        raise ValueError(f"seed classes {bad} are outside range({num_classes})")
    start, cpu_start = time.perf_counter(), time.process_time()
    argmax = probabilities.argmax(0)
    if target is not None:
        if not 0 < int(target) < num_classes:
            raise ValueError(f"target must be a foreground class in 1..{num_classes - 1}, got {target}")
        others = [c for c in np.unique(seeds[seeded]).tolist() if c not in (0, target)]
        if others:
            raise ValueError(f"binary (target {target}) seeds hold other classes {others}")
        foreground = probabilities[int(target)]
        unary = np.stack([-np.log(np.clip(1.0 - foreground, floor, 1.0)), -np.log(np.clip(foreground, floor, 1.0))])
        binary_seeds = np.where(seeded, (seeds == target).astype(np.int64), UNLABELLED)
        edges = _edges(image, smoothness, neighbourhood, spacing, sigma)
        problem = PottsProblem(unary, edges, binary_seeds, case="refinement")
        cut = binary_graph_cut(problem) if solver != "alpha_expansion" else alpha_expansion(problem, sweeps)
        rest = probabilities.copy()
        rest[int(target)] = -1.0
        labels = np.where(cut == 1, int(target), np.where(argmax == target, rest.argmax(0), argmax))
        used = "graph_cut" if solver != "alpha_expansion" else "alpha_expansion"
    else:
        unary = -np.log(np.clip(probabilities, floor, 1.0))
        edges = _edges(image, smoothness, neighbourhood, spacing, sigma)
        problem = PottsProblem(unary, edges, np.where(seeded, seeds, UNLABELLED), case="refinement")
        used = solver if solver != "auto" else ("graph_cut" if num_classes == 2 else "alpha_expansion")
        labels = binary_graph_cut(problem) if used == "graph_cut" else alpha_expansion(problem, sweeps)
    info = {
        "solver": used,
        "seconds": round(time.perf_counter() - start, 3),
        "cpu_seconds": round(time.process_time() - cpu_start, 3),
        "seeds": int(seeded.sum()),
        "changed": int((labels != argmax).sum()),
    }
    logger.info("refined %s voxels with %s in %.2f s: %d seeds, %d labels changed", labels.size, used,
                info["seconds"], info["seeds"], info["changed"])  # fmt: skip
    return labels.astype(np.int64), info
