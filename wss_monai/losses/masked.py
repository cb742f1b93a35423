"""Leave the voxels of an ignore mask out of any loss term (WMH's label 2, "other pathology").

Reference: H. Kuijf et al., "Standardized assessment of automatic segmentation of white matter
hyperintensities and results of the WMH segmentation challenge", IEEE TMI 2019: voxels of label 2
count neither as lesion nor as background. :class:`wss_monai.data.wmh.SplitIgnoreLabeld` turns the
raw label into a binary ``"label"`` and a boolean ``"ignore"`` mask; this wrapper makes a regional
MONAI loss or the boundary loss honour that mask.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from monai.data import MetaTensor
from monai.networks.utils import one_hot
from torch import nn

from wss_monai.losses.base import WeakLoss

__all__ = ["IGNORE_MODES", "IgnoreMaskedLoss"]

IGNORE_MODES = ("probabilities", "logits", "map")
PINNED_LOGIT = 30.0
"""Logit margin given to the target class at ignored voxels in ``"logits"`` mode (softmax 1 - 1e-13)."""


def _plain(x: torch.Tensor) -> torch.Tensor:
    return x.as_tensor() if isinstance(x, MetaTensor) else x


class IgnoreMaskedLoss(WeakLoss):
    """Calls a loss term with the voxels of ``batch[mask_key]`` taken out.

    Three ways, chosen by ``mode`` to fit the wrapped loss:

    - ``"probabilities"`` (Dice-type and distance losses: MONAI ``GeneralizedDiceLoss``,
      ``DiceLoss``, ``HausdorffDTLoss``): the wrapper computes ``S = softmax(logits)`` and the one-hot
      target ``G``, sets **both** to 0 at ignored voxels for every class, and calls
      ``loss(S', G')``. The ignored voxels then add nothing to any intersection ``Σ S G``, to any
      sum ``Σ S`` or ``Σ G``, nor to ``(S − G)²``: they are left out exactly, as in MONAI's
      ``MaskedDiceLoss``. Configure the wrapped loss with ``softmax=False, to_onehot_y=False``.
    - ``"logits"`` (losses that need logits: ``DiceCELoss``, ``FocalLoss(use_softmax=True)``):
      at ignored voxels the target is set to 0 and the logits are replaced by a constant (no
      gradient) predicting class 0 with a margin of 30, so the voxel's cross-entropy/focal term is
      0 (to 1e-13) and it is a true negative of every foreground class. The voxel still counts in
      the voxel mean of CE and in the background class of a Dice with ``include_background=True``
      (use ``include_background=False`` for the Dice part).
    - ``"map"`` (:class:`wss_monai.losses.boundary.BoundaryLoss`): ``batch[map_key]`` (the signed
      distance maps) is set to 0 at ignored voxels, so the boundary integrand ``φ · S`` is 0 there.

    With ``mask_key=None`` the wrapper is transparent in ``"map"`` mode and only does the
    activation/one-hot in the other two, so one recipe serves data sets with and without an
    ignore label.

    Args:
        loss: the wrapped loss: ``loss(input, target)`` in ``"probabilities"``/``"logits"`` modes,
            ``loss(logits, batch)`` in ``"map"`` mode.
        mode: ``"probabilities"``, ``"logits"`` or ``"map"``.
        mask_key: batch key of the ignore mask ``(B, 1, H, W[, D])`` (True/non-zero = ignored), or ``None``.
        target_key: batch key of the class-index target ``(B, 1, H, W[, D])`` (not used in ``"map"`` mode).
        map_key: batch key of the per-class maps zeroed in ``"map"`` mode.

    Shapes:
        logits ``(B, C, H, W[, D])``; target and mask ``(B, 1, H, W[, D])``; output: the wrapped loss's.

    Example:
        >>> import torch
        >>> from monai.losses import GeneralizedDiceLoss
        >>> gdl = IgnoreMaskedLoss(GeneralizedDiceLoss(softmax=False, to_onehot_y=False), mask_key="ignore")
        >>> logits = torch.tensor([[[[5.0, -5.0, 5.0]], [[-5.0, 5.0, -5.0]]]])   # predicts 0, 1, 0
        >>> label = torch.tensor([[[[0, 1, 1]]]])                                # the last voxel is wrong ...
        >>> ignore = torch.tensor([[[[False, False, True]]]])                    # ... but ignored
        >>> round(gdl(logits, {"label": label, "ignore": ignore}).item(), 3)
        0.0
    """

    def __init__(
        self,
        loss: nn.Module,
        mode: str = "probabilities",
        mask_key: str | None = "ignore",
        target_key: str = "label",
        map_key: str = "dist_map",
    ) -> None:
        super().__init__()
        if mode not in IGNORE_MODES:
            raise ValueError(f"mode must be one of {IGNORE_MODES}, got {mode!r}")
        if not isinstance(loss, nn.Module):
            raise TypeError(f"loss must be a torch module, got {type(loss).__name__}")
        if mask_key is not None and (not isinstance(mask_key, str) or not mask_key):
            raise ValueError(f"mask_key must be None or a batch key, got {mask_key!r}")
        self.loss, self.mode, self.mask_key, self.target_key, self.map_key = loss, mode, mask_key, target_key, map_key

    def _ignored(self, batch: Mapping, like: torch.Tensor) -> torch.Tensor | None:
        """The mask ``(B, 1, *spatial)`` as bool on ``like``'s device, checked against its shape."""
        if self.mask_key is None:
            return None
        mask = _plain(self.read(batch, self.mask_key)).to(like.device)
        if mask.ndim == like.ndim - 1:
            mask = mask[:, None]
        if (
            mask.ndim != like.ndim
            or mask.shape[1] != 1
            or mask.shape[0] != like.shape[0]
            or mask.shape[2:] != like.shape[2:]
        ):
            raise ValueError(
                f"{self.mask_key!r} of shape {tuple(mask.shape)} does not match {tuple(like.shape)}: "
                "expected (B, 1, H, W[, D]) with the same batch and spatial sizes"
            )
        return mask.bool()

    def forward(self, logits: torch.Tensor, batch: Mapping) -> torch.Tensor:
        self.check_logits(logits)
        ignored = self._ignored(batch, logits)
        if self.mode == "map":
            if ignored is None:
                return self.loss(logits, batch)
            maps = _plain(self.read(batch, self.map_key)).to(logits.device)
            return self.loss(logits, {**batch, self.map_key: maps.masked_fill(ignored, 0.0)})
        target = _plain(self.read(batch, self.target_key)).to(logits.device)
        if target.ndim == logits.ndim - 1:
            target = target[:, None]
        if target.shape[1] != 1 or target.shape[0] != logits.shape[0] or target.shape[2:] != logits.shape[2:]:
            raise ValueError(
                f"{self.target_key!r} of shape {tuple(target.shape)} does not match logits {tuple(logits.shape)}: "
                "expected class indices (B, 1, H, W[, D])"
            )
        target = target.long()
        if ignored is not None:
            target = target.masked_fill(ignored, 0)
        if self.mode == "probabilities":
            probs = torch.softmax(logits, dim=1)
            onehot = one_hot(target, logits.shape[1]).to(probs.dtype)
            if ignored is not None:
                keep = (~ignored).to(probs.dtype)
                probs, onehot = probs * keep, onehot * keep
            return self.loss(probs, onehot)
        if ignored is not None:
            pinned = torch.full_like(logits, -PINNED_LOGIT)
            pinned[:, 0] = PINNED_LOGIT
            logits = torch.where(ignored, pinned, logits)
        return self.loss(logits, target)
