"""ADM: discrete proposals by α-expansion inside each training step (Marin et al., CVPR 2019).

Marin, Tang, Ben Ayed, Boykov, "Beyond gradient descent for regularized segmentation losses",
CVPR 2019. The regularised loss ``pCE(S) + λ R(S)`` is split with a latent discrete segmentation
``X`` (alternating direction method):

1. ``X = argmin_X λ R(X) + γ Σ_p KL(X_p ‖ S_p)`` with ``S`` the detached softmax of the batch and
   the seeds fixed, ``R`` the grid Potts energy (:mod:`wss_monai.losses.grid_crf`), solved per
   image by α-expansion (5 sweeps) in a :class:`~wss_monai.solvers.SolverPool`;
2. an SGD step on ``pCE(S) + γ Σ_p KL(X_p ‖ S_p) / |Ω|``; for one-hot ``X`` the KL term is the
   cross-entropy ``−log S_p(X_p)``.

:class:`ADMLoss` is the second term, ``γ · CE(X, S)``; the seed recipe's partial cross-entropy term
stays beside it in the :class:`~wss_monai.losses.CompositeLoss`. ``γ`` is an attribute set from
outside (the schedule :class:`wss_monai.handlers.GeometricSchedule` in ``configs/regularisers/adm.yaml``);
``forward`` keeps no state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from wss_monai.constants import UNLABELLED
from wss_monai.losses.base import WeakLoss, reduce_per_image
from wss_monai.losses.crf_inputs import check_sigma, check_spacing
from wss_monai.losses.grid_crf import _check_neighbourhood, potts_energy
from wss_monai.losses.proposals import batch_case_names, proposal_problems
from wss_monai.solvers import SolverPool

__all__ = ["ADMLoss", "seed_map"]


def seed_map(loss: WeakLoss, batch: Mapping, key: str, logits: torch.Tensor) -> torch.Tensor:
    """The seeds ``batch[key]`` as class indices ``(B, *spatial)`` (``UNLABELLED`` elsewhere), checked."""
    seeds = loss.read(batch, key).to(logits.device)
    if seeds.ndim == logits.ndim:
        if seeds.shape[1] != 1:
            raise ValueError(f"{key!r} must have one channel, got shape {tuple(seeds.shape)}")
        seeds = seeds[:, 0]
    if seeds.shape != logits.shape[:1] + logits.shape[2:]:
        raise ValueError(f"{key!r} of shape {tuple(seeds.shape)} does not match logits {tuple(logits.shape)}")
    seeds = seeds.long()
    bad = seeds[(seeds != UNLABELLED) & ((seeds < 0) | (seeds >= logits.shape[1]))]
    if bad.numel():
        raise ValueError(
            f"{key!r} holds values {torch.unique(bad).tolist()} outside the classes [0, {logits.shape[1] - 1}] "
            f"and {UNLABELLED}"
        )
    return seeds


class ADMLoss(WeakLoss):
    """``γ · CE(X, S)`` to the α-expansion proposals ``X`` of the batch (ADM step 2; see the module).

    .. math:: X = \\arg\\min_{X:\\, X_{Ω_L} = y} λ \\sum_{(p,q)} w_{pq}[X_p ≠ X_q] − γ \\sum_p \\log S_p(X_p),
              \\qquad L = −\\frac{γ}{|Ω|} \\sum_p \\log S_p(X_p)

    Per image, the output also carries ``proposal_energy``: the grid-CRF energy
    ``Σ w_pq [X_p ≠ X_q] / |Ω|`` of the proposals (without ``λ``), the quantity
    :class:`~wss_monai.losses.PottsEnergy` logs for the argmax of the network, so that the two can
    be compared. :class:`~wss_monai.losses.CompositeLoss` logs it as ``<term>_proposal_energy``.

    Args:
        potts_weight: ``λ`` (>= 0).
        gamma: ``γ`` (> 0); scheduled by a handler through the attribute of the same name.
        seed_key: batch key of the seeds ``(B, 1, *spatial)`` (class index or :data:`UNLABELLED`).
        image_key: batch key of the image the contrast weights come from.
        neighbourhood, spacing, sigma: the grid CRF's (:func:`wss_monai.losses.potts_edge_weights`).
        sweeps: α-expansion cycles (5 in the paper).
        workers: solver processes (0: in this process).
        timeout: seconds one image may take before it is an error naming the image.
        solver: ``"alpha_expansion"`` or a picklable ``f(problem, sweeps=...)``.
        reduction: ``"mean"``/``"sum"`` over images, or ``"none"`` (``(B,)``).

    Shapes:
        logits ``(B, K, H, W[, D])``; image ``(B, C, H, W[, D])``; seeds ``(B, 1, H, W[, D])``.

    Raises:
        SolverError: naming the image (``volume 3 slice 7``), for NaN logits, a failed, killed or
            timed-out solver.

    Example:
        >>> import torch
        >>> logits = torch.tensor([[[[2.0, 0.0, -2.0]], [[-2.0, 0.0, 2.0]]]])  # (1, 2, 1, 3)
        >>> batch = {"image": torch.zeros(1, 1, 1, 3), "scribble": torch.tensor([[[[0, -1, -1]]]])}
        >>> out = ADMLoss(potts_weight=0.0, gamma=1.0, workers=0)(logits, batch)  # X = [0, ?, 1]
        >>> # loss (2 log(1 + e^-4) + log 2) / 3; energy: 1 cut edge / 3 voxels
        >>> round(out["loss"].item(), 4), round(out["proposal_energy"].item(), 4)
        (0.2431, 0.3333)
    """

    def __init__(
        self,
        potts_weight: float = 0.5,
        gamma: float = 1.0,
        seed_key: str = "scribble",
        image_key: str = "image",
        neighbourhood: int | None = None,
        spacing: Sequence[float] | None = None,
        sigma: float | None = None,
        sweeps: int = 5,
        workers: int = 1,
        timeout: float = 120.0,
        solver: str | Callable[..., np.ndarray] = "alpha_expansion",
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction=reduction)
        _check_neighbourhood(neighbourhood)
        if isinstance(potts_weight, bool) or not isinstance(potts_weight, (int, float)) or not potts_weight >= 0:
            raise ValueError(f"potts_weight must be a number >= 0, got {potts_weight!r}")
        self.potts_weight = float(potts_weight)
        self.gamma = check_sigma("gamma", gamma)
        if isinstance(sweeps, bool) or not isinstance(sweeps, int) or (sweeps < 1 and sweeps != -1):
            raise ValueError(f"sweeps must be an integer >= 1 or -1 (until convergence), got {sweeps!r}")
        self.seed_key, self.image_key, self.neighbourhood = seed_key, image_key, neighbourhood
        self.spacing = None if spacing is None else [float(s) for s in spacing]
        self.sigma = None if sigma is None else check_sigma("sigma", sigma)
        self.pool = SolverPool(solver, workers=workers, timeout=timeout, sweeps=sweeps)

    def proposals(self, logits: torch.Tensor, batch: Mapping) -> torch.Tensor:
        """The proposals ``X`` ``(B, *spatial)`` int64 of the batch (step 1), on the logits' device."""
        self.check_logits(logits)
        image = self.read(batch, self.image_key).to(logits.device)
        if image.ndim != logits.ndim or image.shape[0] != logits.shape[0] or image.shape[2:] != logits.shape[2:]:
            raise ValueError(
                f"image {self.image_key!r} of shape {tuple(image.shape)} does not match logits {tuple(logits.shape)}"
            )
        check_spacing(self.spacing, logits.ndim - 2)
        seeds = seed_map(self, batch, self.seed_key, logits)
        with torch.no_grad():
            log_probs = torch.log_softmax(logits.detach().float(), dim=1)
            problems = proposal_problems(
                log_probs,
                image,
                seeds,
                self.potts_weight,
                self.gamma,
                batch_case_names(batch, logits.shape[0]),
                self.neighbourhood,
                self.spacing,
                self.sigma,
            )
        labels = self.pool.solve(problems)
        return torch.as_tensor(np.stack(labels), device=logits.device)

    def forward(self, logits: torch.Tensor, batch: Mapping) -> dict[str, torch.Tensor]:
        proposals = self.proposals(logits, batch)
        log_probs = torch.log_softmax(logits if logits.dtype == torch.float64 else logits.float(), dim=1)
        ce = -log_probs.gather(1, proposals[:, None]).flatten(1).mean(1)  # (B,)
        image = self.read(batch, self.image_key).to(logits.device)
        energy = potts_energy(proposals[:, None], image, self.neighbourhood, self.spacing, self.sigma)
        return {"loss": reduce_per_image(self.gamma * ce, self.reduction), "proposal_energy": energy.mean()}
