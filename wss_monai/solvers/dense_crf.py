"""Dense-CRF refinement of a softmax under label restrictions, for the solver pool: the proposal step of
DeepCut (labels restricted to their boxes) and the dense-CRF stage A of the trust region (seeds fixed).

Rajchl et al., "DeepCut: object segmentation from bounding box annotations using convolutional neural
networks", IEEE TMI 2017. A proposal is the mean-field solution (Krähenbühl and Koltun 2011, through
``pydensecrf``) of a fully connected CRF whose unary is ``-log S`` of the network, restricted to the
labels each voxel may take: background everywhere, class k only inside a box of class k. Pairwise: a
bilateral kernel over position (``sigma_xy`` voxels) and intensity (``sigma_intensity``, in the units of
the normalised image) plus a Gaussian smoothness kernel (3 voxels), Potts compatibility.

Example:
    >>> import numpy as np
    >>> probs = np.full((2, 4, 4), 0.5, np.float32)
    >>> allowed = np.ones((2, 4, 4), bool)
    >>> allowed[1, :, 2:] = False                         # class 1 only in the left half
    >>> problem = DenseCRFProblem("demo", probs, np.zeros((1, 4, 4), np.float32), allowed)
    >>> int(dense_crf_labels(problem)[:, 2:].max())
    0
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wss_monai.solvers.problem import SolverError

__all__ = ["DenseCRFProblem", "dense_crf_labels"]

FORBIDDEN = 1e4
"""Unary energy of a label a voxel may not take (outside every box of its class)."""


@dataclass
class DenseCRFProblem:
    """One slice or volume to refine: ``probs`` and ``allowed`` ``(K, *spatial)``, ``image`` ``(C, *spatial)``."""

    case: str
    probs: np.ndarray
    image: np.ndarray
    allowed: np.ndarray

    def __post_init__(self) -> None:
        if not np.isfinite(self.probs).all():
            raise SolverError(
                f"{self.case}: the probabilities hold {int(np.isnan(self.probs).sum())} NaN and "
                f"{int(np.isinf(self.probs).sum())} infinite values (a diverged network?)"
            )
        if not np.asarray(self.allowed, bool).any(0).all():
            raise SolverError(f"{self.case}: some voxels may take no label at all")


def dense_crf_labels(
    problem: DenseCRFProblem,
    sigma_xy: float = 20.0,
    sigma_intensity: float = 0.5,
    bilateral_weight: float = 5.0,
    gaussian_weight: float = 3.0,
    iterations: int = 5,
) -> np.ndarray:
    """Mean-field labels ``(*spatial)`` (int64) of the box-restricted dense CRF of ``problem``."""
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import create_pairwise_bilateral, create_pairwise_gaussian

    probs = np.asarray(problem.probs, np.float32)
    num_labels, spatial = probs.shape[0], probs.shape[1:]
    if problem.allowed.shape != probs.shape or problem.image.shape[1:] != spatial:
        raise ValueError(
            f"probs {probs.shape}, image {problem.image.shape} and allowed {problem.allowed.shape} do not agree"
        )
    unary = -np.log(np.clip(probs, 1e-6, 1.0))
    unary[~problem.allowed] = FORBIDDEN
    crf = dcrf.DenseCRF(int(np.prod(spatial)), num_labels)
    crf.setUnaryEnergy(np.ascontiguousarray(unary.reshape(num_labels, -1), dtype=np.float32))
    dims = len(spatial)
    crf.addPairwiseEnergy(create_pairwise_gaussian((3.0,) * dims, spatial), compat=gaussian_weight)
    image = np.asarray(problem.image, np.float32)
    bilateral = create_pairwise_bilateral((sigma_xy,) * dims, (sigma_intensity,) * image.shape[0], image, chdim=0)
    crf.addPairwiseEnergy(bilateral, compat=bilateral_weight)
    q = np.asarray(crf.inference(int(iterations))).reshape(num_labels, *spatial)
    return q.argmax(0).astype(np.int64)
