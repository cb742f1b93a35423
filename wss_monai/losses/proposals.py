"""Discrete proposals from a network's output: Potts problems whose unary is a KL term to the softmax.

Both ADM (Marin et al., "Beyond gradient descent for regularized segmentation losses", CVPR 2019)
and the robust trust region (Marin and Boykov, "Robust trust region for weakly supervised
segmentation", ICCV 2021) solve, per image,

.. math:: X = \\arg\\min_{X} \\; λ \\sum_{(p, q)} w_{pq} [X_p ≠ X_q] + γ \\sum_p \\mathrm{KL}(X_p \\,\\|\\, S_p)
          \\quad \\text{s.t. } X_p = y_p \\text{ on the seeds } Ω_L

with the grid-CRF weights ``w_pq`` of :func:`wss_monai.losses.potts_edge_weights`. For a one-hot
``X_p`` the KL term is ``−log S_p(X_p)``, so the unary of label ``k`` at ``p`` is ``−γ log S_k(p)``
and the seeds are hard (the trust region's partial cross-entropy on the seeds is infinite off
them). The problems go to :mod:`wss_monai.solvers` (α-expansion, 5 sweeps).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from wss_monai.constants import UNLABELLED
from wss_monai.losses.grid_crf import potts_edge_weights
from wss_monai.solvers import PottsProblem, labels_in_seeds

__all__ = ["batch_case_names", "proposal_problems"]


def batch_case_names(batch: Mapping, size: int) -> list[str]:
    """Names of the ``size`` images of a batch for error messages: ``"volume 3 slice 7"`` or ``"image 2"``.

    Reads ``volume_index`` and ``slice_index`` (set by :class:`wss_monai.data.VolumeSliceDataset` and
    :class:`wss_monai.data.WholeVolumeDataset`) and ``patient`` when the batch holds them.

    Example:
        >>> import torch
        >>> batch_case_names({"volume_index": torch.tensor([3, 4]), "slice_index": torch.tensor([7, 0])}, 2)
        ['volume 3 slice 7', 'volume 4 slice 0']
        >>> batch_case_names({}, 1)
        ['image 0']
    """

    def column(key: str) -> list | None:
        value = batch.get(key) if isinstance(batch, Mapping) else None
        if value is None:
            return None
        values = value.tolist() if isinstance(value, torch.Tensor) else list(value)
        return values if len(values) == size else None

    volumes, slices, patients = column("volume_index"), column("slice_index"), column("patient")
    names = []
    for b in range(size):
        parts = []
        if patients is not None:
            parts.append(str(patients[b]))
        if volumes is not None:
            parts.append(f"volume {int(volumes[b])}")
        if slices is not None:
            parts.append(f"slice {int(slices[b])}")
        names.append(" ".join(parts) if parts else f"image {b}")
    return names


def proposal_problems(
    log_probs: torch.Tensor,
    image: torch.Tensor,
    seeds: torch.Tensor | None,
    potts_weight: float,
    kl_weight: float,
    cases: Sequence[str],
    neighbourhood: int | None = None,
    spacing: Sequence[float] | None = None,
    sigma: float | None = None,
    restrict_labels: bool = False,
) -> list[PottsProblem]:
    """One :class:`~wss_monai.solvers.PottsProblem` per image: unary ``−γ log S``, edges ``λ w_pq``, hard seeds.

    Args:
        log_probs: ``log S`` ``(B, K, H, W[, D])`` (detached; NaN values are reported by the problem, by case).
        image: ``(B, C, H, W[, D])``, for the contrast weights.
        seeds: class indices ``(B, 1, H, W[, D])`` or ``(B, H, W[, D])``, :data:`UNLABELLED` elsewhere;
            ``None``: no seed.
        potts_weight: ``λ`` (>= 0).
        kl_weight: ``γ`` (> 0).
        cases: one name per image, for the solver's errors.
        neighbourhood, spacing, sigma: as in :func:`wss_monai.losses.potts_edge_weights`.
        restrict_labels: allow only the labels present in each image's seeds (all ``K`` when it has none).

    Example:
        >>> import torch
        >>> from wss_monai.solvers import alpha_expansion
        >>> log_probs = torch.log(torch.tensor([[[[0.9, 0.6, 0.2]], [[0.1, 0.4, 0.8]]]]))  # (1, 2, 1, 3)
        >>> seeds = torch.tensor([[[[0, -1, -1]]]])
        >>> problem = proposal_problems(log_probs, torch.zeros(1, 1, 1, 3), seeds, 0.0, 1.0, ["a"])[0]
        >>> alpha_expansion(problem).tolist()  # no smoothing: the argmax of S
        [[0, 0, 1]]
    """
    if log_probs.ndim not in (4, 5):
        raise ValueError(f"log_probs must have shape (B, K, H, W[, D]), got {tuple(log_probs.shape)}")
    if not potts_weight >= 0 or not kl_weight > 0:
        raise ValueError(f"potts_weight must be >= 0 and kl_weight > 0, got {potts_weight!r} and {kl_weight!r}")
    size = log_probs.shape[0]
    if len(cases) != size:
        raise ValueError(f"cases must name the {size} images, got {len(cases)} names")
    edges = potts_edge_weights(image, neighbourhood, spacing, sigma)
    edges = [(offset, (potts_weight * weight[:, 0]).detach().cpu().double().numpy()) for offset, weight in edges]
    unary = (-kl_weight * log_probs.detach()).cpu().double().numpy()
    if seeds is None:
        seed_maps = np.full((size, *log_probs.shape[2:]), UNLABELLED, dtype=np.int64)
    else:
        seed_maps = seeds.detach().cpu().long().numpy()
        if seed_maps.ndim == log_probs.ndim:
            seed_maps = seed_maps[:, 0]
    problems = []
    for b in range(size):
        labels = labels_in_seeds(seed_maps[b]) if restrict_labels else None
        problems.append(
            PottsProblem(
                unary[b], [(offset, weight[b]) for offset, weight in edges], seed_maps[b], labels, case=cases[b]
            )
        )
    return problems
