"""Lesion segmentation metrics of the WMH challenge: Dice, HD95, volume difference, lesion-wise recall and F1.

Reference: H. Kuijf et al., "Standardized assessment of automatic segmentation of white matter
hyperintensities and results of the WMH segmentation challenge", IEEE TMI 2019 (its evaluation
script: voxels of the "other pathology" label 2 are removed from both maps first, components
are fully connected).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance
from scipy.ndimage import generate_binary_structure
from scipy.ndimage import label as connected_components

__all__ = ["lesion_metrics"]


def _binary(name: str, x, spatial_ndim: int, hint: str = "") -> np.ndarray:
    """A copy of ``x`` as a bool array ``(H, W[, D])``, from ``(H, W[, D])`` or ``(1, H, W[, D])``."""
    if not isinstance(x, (np.ndarray, torch.Tensor)):
        raise ValueError(f"{name} must be a numpy array or a torch tensor, got {type(x).__name__}")
    array = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if array.ndim == spatial_ndim + 1 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != spatial_ndim:
        raise ValueError(
            f"{name} must have shape (H, W{', D' if spatial_ndim == 3 else ''}) or (1, ...) to match the "
            f"{spatial_ndim} spacing values, got {tuple(x.shape)}"
        )
    values = np.unique(array)
    bad = values[(values != 0) & (values != 1)]
    if bad.size:
        raise ValueError(f"{name} must be binary (0 or 1), got values {bad[:10].tolist()}{hint}")
    return array.astype(bool)


def lesion_metrics(
    pred: np.ndarray | torch.Tensor,
    label: np.ndarray | torch.Tensor,
    spacing: Sequence[float],
    ignore_mask: np.ndarray | torch.Tensor | None = None,
    connectivity: int | None = None,
) -> dict[str, float]:
    """Voxel-wise and lesion-wise metrics of one binary lesion segmentation, as in the WMH challenge.

    Voxels of ``ignore_mask`` are set to 0 in both maps before anything is computed (the WMH
    script does this with label 2): they count in no metric, and a lesion cut by the mask may
    split into several components. Lesions are the connected components of each map.

    - ``dice``: 2|P ∩ G| / (|P| + |G|).
    - ``hd95`` (mm): 95th-percentile symmetric Hausdorff distance between the surfaces (MONAI's
      ``compute_hausdorff_distance`` with ``spacing``).
    - ``avd`` (%): absolute volume difference 100 · |V_P − V_G| / V_G.
    - ``recall``: detected GT lesions / GT lesions; a GT lesion is detected if any predicted voxel
      overlaps it.
    - ``precision``: true-positive predicted components / predicted components; a predicted
      component is a true positive if it overlaps the GT.
    - ``f1``: 2 · precision · recall / (precision + recall), 0 when both are 0.
    - counts ``n_gt_lesions``, ``n_pred_lesions``, ``n_detected`` (GT lesions hit),
      ``n_true_positive`` (predicted components on the GT) and volumes ``volume_gt`` /
      ``volume_pred`` (mm³), so lesion counts can also be pooled over a data set.

    Empty maps (after masking):

    ============== ====== ==================== ============ ======== ========= ====
    case           dice   hd95                 avd          recall   precision f1
    ============== ====== ==================== ============ ======== ========= ====
    both empty     1      NaN                  0            1        1         1
    GT empty only  0      image diagonal (mm)  NaN          1        0         0
    pred empty     0      image diagonal (mm)  100          0        1         0
    ============== ====== ==================== ============ ======== ========= ====

    Recall and precision are 1 when there is nothing to find / nothing found, as in the WMH
    script; the relative volume difference is undefined (NaN) when the GT is empty and the
    prediction is not; HD95 follows :func:`wss_monai.metrics.volume.volume_metrics`.

    Args:
        pred, label: binary lesion maps ``(H, W[, D])`` or ``(1, H, W[, D])`` of the same shape
            (numpy arrays or torch tensors, bool or 0/1 values). A raw WMH label holding 2 must be
            split: ``label == 1`` as ``label``, ``label == 2`` as ``ignore_mask``.
        spacing: voxel size in mm along each spatial axis (2 or 3 values; fixes the dimension).
        ignore_mask: optional binary map of the same shape, voxels excluded from everything.
        connectivity: neighbourhood of the components, 1 (faces: 4 in 2D, 6 in 3D) up to the
            number of dimensions (full: 8 in 2D, 26 in 3D); ``None`` means full, as in the WMH script.

    Returns:
        A dict of floats (counts as ints) with the keys listed above.

    Example:
        >>> import numpy as np
        >>> label = np.zeros((8, 8, 1), int); label[1:3, 1:3] = 1; label[5:7, 5:7] = 1   # two lesions
        >>> pred = np.zeros_like(label); pred[1:3, 1:3] = 1; pred[5, 0] = 1              # one hit, one false
        >>> m = lesion_metrics(pred, label, spacing=(1, 1, 1))
        >>> m["recall"], m["precision"], m["n_gt_lesions"], m["avd"]
        (0.5, 0.5, 2, 37.5)
    """
    spacing = tuple(spacing) if isinstance(spacing, (Sequence, np.ndarray)) else (spacing,)
    if len(spacing) not in (2, 3) or not all(
        isinstance(s, numbers.Real) and not isinstance(s, bool) and math.isfinite(s) and s > 0 for s in spacing
    ):
        raise ValueError(f"spacing must be 2 or 3 finite positive numbers (mm), got {spacing!r}")
    spacing = tuple(float(s) for s in spacing)
    ndim = len(spacing)
    if connectivity is None:
        connectivity = ndim
    integral = isinstance(connectivity, numbers.Integral) and not isinstance(connectivity, bool)
    if not integral or not 1 <= connectivity <= ndim:
        raise ValueError(f"connectivity must be an integer in [1, {ndim}] or None, got {connectivity!r}")
    hint = "; pass WMH's label 2 as ignore_mask=(label == 2) and label == 1 as the label"
    p = _binary("pred", pred, ndim)
    g = _binary("label", label, ndim, hint)
    if p.shape != g.shape:
        raise ValueError(f"pred {p.shape} and label {g.shape} differ in shape")
    if ignore_mask is not None:
        keep = ~_binary("ignore_mask", ignore_mask, ndim)
        if keep.shape != g.shape:
            raise ValueError(f"ignore_mask {keep.shape} and label {g.shape} differ in shape")
        p, g = p & keep, g & keep

    voxel_volume = float(np.prod(spacing))
    v_pred, v_gt = float(p.sum()) * voxel_volume, float(g.sum()) * voxel_volume
    p_t, g_t = (torch.from_numpy(x)[None, None].float() for x in (p, g))
    dice = float(compute_dice(p_t, g_t, include_background=True, ignore_empty=False)[0, 0])
    if p.any() and g.any():
        hd = compute_hausdorff_distance(p_t, g_t, include_background=True, percentile=95, spacing=list(spacing))
        hd95 = float(hd[0, 0])
    elif p.any() or g.any():
        hd95 = math.sqrt(sum((n * s) ** 2 for n, s in zip(p.shape, spacing)))
    else:
        hd95 = float("nan")
    if v_gt > 0:
        avd = 100.0 * abs(v_pred - v_gt) / v_gt
    else:
        avd = 0.0 if v_pred == 0 else float("nan")

    structure = generate_binary_structure(ndim, connectivity)
    gt_cc, n_gt = connected_components(g, structure=structure)
    pred_cc, n_pred = connected_components(p, structure=structure)
    n_detected = int(np.count_nonzero(np.unique(gt_cc[p])))  # GT components holding a predicted voxel
    n_true_positive = int(np.count_nonzero(np.unique(pred_cc[g])))  # predicted components touching the GT
    recall = n_detected / n_gt if n_gt else 1.0
    precision = n_true_positive / n_pred if n_pred else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {
        "dice": dice,
        "hd95": hd95,
        "avd": avd,
        "recall": float(recall),
        "precision": float(precision),
        "f1": float(f1),
        "n_gt_lesions": int(n_gt),
        "n_pred_lesions": int(n_pred),
        "n_detected": n_detected,
        "n_true_positive": n_true_positive,
        "volume_gt": v_gt,
        "volume_pred": v_pred,
    }
