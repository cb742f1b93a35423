"""Boundary accuracy in trimaps: accuracy and Dice restricted to bands around the ground-truth boundaries.

The trimap measure of Kohli, Ladický and Torr (IJCV 2009), used for weakly supervised segmentation
by Marin et al. (CVPR 2019) and Marin and Boykov (ICCV 2021) to show where regularised losses help:
at the object boundaries. Everything is measured per 2D slice (the last axis of a volume), in pixels
of the label's own grid.

A pixel is a *boundary pixel* when one of its four in-plane neighbours has another label (both
sides of every boundary, the image border excluded). The band of width ``w`` is the set of pixels
whose centre lies within ``w / 2`` of the boundary line, which runs between two boundary pixels:
the pixels at Euclidean distance ``≤ (w − 1) / 2`` from a boundary pixel (scipy's exact distance
transform). A straight boundary thus gets a band exactly ``w`` pixels wide, ``w / 2`` on each side.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.ndimage import distance_transform_edt

__all__ = ["TRIMAP_WIDTHS", "boundary_pixels", "trimap_bands", "trimap_metrics"]

TRIMAP_WIDTHS = (2, 4, 8, 16)
"""Band widths in pixels reported by default."""


def _as_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def boundary_pixels(label: np.ndarray) -> np.ndarray:
    """Pixels with a 4-neighbour of another label in their slice: bool, the shape of ``label`` ``(H, W[, D])``.

    Example:
        >>> boundary_pixels(np.array([[0, 0, 1, 1]])).astype(int).tolist()
        [[0, 1, 1, 0]]
    """
    label = _as_numpy(label)
    if label.ndim not in (2, 3):
        raise ValueError(f"label must be (H, W) or (H, W, D), got shape {label.shape}")
    boundary = np.zeros(label.shape, dtype=bool)
    for axis in (0, 1):
        differs = np.diff(label, axis=axis) != 0
        lower = [slice(None)] * label.ndim
        upper = [slice(None)] * label.ndim
        lower[axis], upper[axis] = slice(0, -1), slice(1, None)
        boundary[tuple(lower)] |= differs
        boundary[tuple(upper)] |= differs
    return boundary


def trimap_bands(label, widths: Sequence[int] = TRIMAP_WIDTHS) -> dict[int, np.ndarray]:
    """The band of each width around the boundaries of ``label`` ``(H, W[, D])``, per slice: ``{w: bool mask}``.

    Example:
        >>> label = np.array([[0, 0, 0, 1, 1, 1]])
        >>> {w: band.astype(int).tolist() for w, band in trimap_bands(label, (2, 4)).items()}
        {2: [[0, 0, 1, 1, 0, 0]], 4: [[0, 1, 1, 1, 1, 0]]}
    """
    widths = [int(w) for w in widths]
    if not widths or any(w < 1 for w in widths):
        raise ValueError(f"widths must be integers >= 1, got {widths}")
    label = _as_numpy(label)
    boundary = boundary_pixels(label)
    volume = boundary if boundary.ndim == 3 else boundary[..., None]
    distance = np.full(volume.shape, np.inf)
    for s in range(volume.shape[-1]):  # per slice: scipy's transform over the whole slice at once
        if volume[..., s].any():
            distance[..., s] = distance_transform_edt(~volume[..., s])
    distance = distance if boundary.ndim == 3 else distance[..., 0]
    return {w: distance <= (w - 1) / 2 for w in widths}


def trimap_metrics(
    pred,
    label,
    class_names: Sequence[str],
    widths: Sequence[int] = TRIMAP_WIDTHS,
    ignore_mask=None,
) -> dict[str, float]:
    """Accuracy and per-class Dice of ``pred`` in the bands of :func:`trimap_bands` around ``label``'s boundaries.

    Args:
        pred, label: integer class maps ``(H, W[, D])`` or ``(1, H, W, D)``, same shape.
        class_names: one name per class index (index 0, the background, gets no Dice column).
        widths: band widths in pixels.
        ignore_mask: voxels left out of every band (e.g. WMH's "other pathology"), or ``None``.

    Returns:
        ``trimap_acc_w<w>`` (share of band pixels where ``pred == label``), ``trimap_dice_<class>_w<w>``
        (``2|P ∩ G ∩ B| / (|P ∩ B| + |G ∩ B|)``, NaN where the class is in neither within the band)
        and, with several foreground classes, their mean ``trimap_dice_w<w>``. An empty band gives NaN.

    Example:
        >>> label = np.array([[0, 0, 0, 1, 1, 1]])
        >>> pred = np.array([[0, 0, 1, 1, 1, 1]])
        >>> trimap_metrics(pred, label, ["bg", "fg"], widths=(2, 4))
        {'trimap_acc_w2': 0.5, 'trimap_dice_fg_w2': 0.6666666666666666, 'trimap_acc_w4': 0.75, 'trimap_dice_fg_w4': 0.8}
    """
    pred, label = _as_numpy(pred), _as_numpy(label)
    pred, label = (x[0] if x.ndim == 4 else x for x in (pred, label))  # (1, H, W, D) -> (H, W, D)
    if pred.shape != label.shape:
        raise ValueError(f"prediction {pred.shape} and label {label.shape} differ in shape")
    keep = None if ignore_mask is None else ~_as_numpy(ignore_mask).astype(bool).reshape(label.shape)
    names = list(class_names)
    results: dict[str, float] = {}
    for w, band in trimap_bands(label, widths).items():
        if keep is not None:
            band = band & keep
        count = int(band.sum())
        results[f"trimap_acc_w{w}"] = float((pred[band] == label[band]).mean()) if count else float("nan")
        dices = []
        for k, name in enumerate(names[1:], start=1):
            p, g = (pred == k) & band, (label == k) & band
            total = int(p.sum() + g.sum())
            dice = 2.0 * float((p & g).sum()) / total if total else float("nan")
            results[f"trimap_dice_{name}_w{w}"] = dice
            dices.append(dice)
        if len(dices) > 1:
            finite = [d for d in dices if not np.isnan(d)]
            results[f"trimap_dice_w{w}"] = float(np.mean(finite)) if finite else float("nan")
    return results
