"""Per-volume 3D segmentation metrics in physical units: Dice and HD95 with the voxel spacing."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance
from monai.networks.utils import one_hot

__all__ = ["spacing_from_affine", "volume_metrics"]


def spacing_from_affine(affine: np.ndarray | torch.Tensor) -> tuple[float, ...]:
    """Voxel spacing (mm) from a ``(4, 4)`` affine: the norms of its first three columns."""
    affine = np.asarray(affine.cpu() if isinstance(affine, torch.Tensor) else affine, dtype=float)
    if affine.shape != (4, 4):
        raise ValueError(f"affine must be (4, 4), got {affine.shape}")
    return tuple(float(s) for s in np.linalg.norm(affine[:3, :3], axis=0))


def volume_metrics(
    pred: np.ndarray | torch.Tensor,
    label: np.ndarray | torch.Tensor,
    class_names: Sequence[str],
    spacing: Sequence[float],
    include_background: bool = False,
) -> dict[str, float]:
    """3D Dice and HD95 (mm) of each class for one volume.

    Args:
        pred, label: integer class maps ``(H, W, D)`` or ``(1, H, W, D)``, same shape.
        class_names: one name per class index (index 0 = background).
        spacing: voxel size in mm along each spatial axis.
        include_background: also report class 0.

    Returns:
        ``{"dice_<name>": ..., "hd95_<name>": ...}``. Dice is 1 when both are empty; NaN where the
        class is absent from the label but predicted (Dice 0) is reported as 0. HD95 is NaN when the
        class is absent from both, and the image diagonal (mm) when exactly one of the two is empty.

    Example:
        >>> import numpy as np
        >>> label = np.zeros((8, 8, 2), int); label[2:6, 2:6] = 1
        >>> m = volume_metrics(label, label, ["bg", "fg"], spacing=(1, 1, 1))
        >>> m["dice_fg"], m["hd95_fg"]
        (1.0, 0.0)
    """
    pred_t, label_t = (torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x for x in (pred, label))
    pred_t, label_t = pred_t.squeeze(), label_t.squeeze()
    if pred_t.shape != label_t.shape:
        raise ValueError(f"prediction {tuple(pred_t.shape)} and label {tuple(label_t.shape)} differ in shape")
    if len(spacing) != pred_t.ndim:
        raise ValueError(f"spacing {tuple(spacing)} must have one value per spatial axis ({pred_t.ndim})")
    num_classes = len(class_names)
    for name, x in (("prediction", pred_t), ("label", label_t)):
        if x.numel() and (x.min() < 0 or x.max() >= num_classes):
            raise ValueError(f"{name} values {torch.unique(x).tolist()} outside the classes [0, {num_classes - 1}]")
    p = one_hot(pred_t[None, None].long(), num_classes)
    y = one_hot(label_t[None, None].long(), num_classes)
    dice = compute_dice(p, y, include_background=True, ignore_empty=False)[0]
    diagonal = math.sqrt(sum((n * s) ** 2 for n, s in zip(pred_t.shape, spacing)))
    result: dict[str, float] = {}
    for k in range(0 if include_background else 1, num_classes):
        in_pred, in_label = bool(p[0, k].any()), bool(y[0, k].any())
        result[f"dice_{class_names[k]}"] = float(dice[k]) if not math.isnan(float(dice[k])) else 0.0
        if in_pred and in_label:
            hd = compute_hausdorff_distance(
                p[:, k : k + 1], y[:, k : k + 1], include_background=True, percentile=95, spacing=list(spacing)
            )
            result[f"hd95_{class_names[k]}"] = float(hd[0, 0])
        elif in_pred or in_label:
            result[f"hd95_{class_names[k]}"] = diagonal
        else:
            result[f"hd95_{class_names[k]}"] = float("nan")
    return result
