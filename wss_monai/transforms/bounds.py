"""Size bounds [a, b] per class for the size constraint (penalty or log-barrier).

Reference: H. Kervadec et al., "Constrained-CNN losses for weakly supervised segmentation",
MedIA 2019, section 4: tags ([1, |Ω|] present, [0, 0] absent), common bounds (min / max size of
the class over reference data × 0.9 / 1.1; ACDC LV gave [60, 2000] px at 256²) and individual
bounds ([0.9 τ, 1.1 τ] with τ the true size).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import Transform
from monai.utils import TransformBackends

from wss_monai.transforms._slices import (
    KeyLoopd,
    apply_per_slice,
    check_int,
    check_number,
    check_spatial_dims,
    class_map,
    to_input_type,
)
from wss_monai.transforms.tags import class_sizes

__all__ = ["SizeBounds", "SizeBoundsd", "common_size_bounds"]

_MODES = ("tags", "common", "individual")


def _check_common_bounds(common_bounds: Any, num_classes: int) -> np.ndarray:
    try:
        bounds = np.asarray(common_bounds, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"common_bounds must be a ({num_classes}, 2) array of numbers, got {common_bounds!r}"
        ) from error
    if bounds.shape != (num_classes, 2):
        raise ValueError(f"common_bounds must have shape ({num_classes}, 2), got {bounds.shape}")
    bad = ~np.isfinite(bounds).all(1) | (bounds[:, 0] < 0) | (bounds[:, 0] > bounds[:, 1])
    if bad.any():
        raise ValueError(
            f"common_bounds rows must satisfy 0 <= lower <= upper, got {bounds[bad].tolist()} "
            f"for classes {np.flatnonzero(bad).tolist()}"
        )
    return bounds


def common_size_bounds(
    labels: Sequence[np.ndarray | torch.Tensor] | np.ndarray | torch.Tensor,
    num_classes: int,
    margin: float = 0.1,
    spatial_dims: int = 2,
) -> np.ndarray:
    """Common size bounds from reference labels: ``[(1 − margin) min τ, (1 + margin) max τ]``.

    τ ranges over the non-zero sizes of class k in every slice (``spatial_dims=2``, slices along the
    last axis of 3D labels) or every volume (``spatial_dims=3``) of the reference labels. A class
    never present gets ``[0, 0]``.

    Args:
        labels: reference labels, each ``(1, H, W[, D])`` (or a single such array).
        num_classes: number of classes K.
        margin: relative margin in [0, 1] (0.1 in Kervadec et al.).
        spatial_dims: 2 (per-slice sizes) or 3 (per-volume sizes).

    Returns:
        ``(K, 2)`` float32 array of ``[lower, upper]`` in voxels.

    Example:
        >>> import numpy as np
        >>> a = np.zeros((1, 10, 10), dtype=np.int64); a[0, :2, :5] = 1   # class 1: 10 px
        >>> b = np.zeros((1, 10, 10), dtype=np.int64); b[0, :4, :5] = 1   # class 1: 20 px
        >>> common_size_bounds([a, b], num_classes=3).round(3).tolist()
        [[72.0, 99.0], [9.0, 22.0], [0.0, 0.0]]
    """
    num_classes = check_int("num_classes", num_classes, 2)
    margin = check_number("margin", margin, 0.0, 1.0)
    spatial_dims = check_spatial_dims(spatial_dims)
    if isinstance(labels, (np.ndarray, torch.Tensor)):
        labels = [labels]
    labels = list(labels)
    if not labels:
        raise ValueError("labels must contain at least one label array, got 0")
    sizes = np.concatenate(
        [
            apply_per_slice(lambda s: class_sizes(s, num_classes), class_map(x, num_classes), spatial_dims).reshape(
                num_classes, -1
            )
            for x in labels
        ],
        axis=1,
    ).astype(np.float64)
    present = sizes > 0
    lower = np.where(present, sizes, np.inf).min(1)
    upper = sizes.max(1)
    bounds = np.stack([(1 - margin) * lower, (1 + margin) * upper], axis=1)
    bounds[~present.any(1)] = 0
    return bounds.astype(np.float32)


class SizeBounds(Transform):
    """Size bounds ``[a_k, b_k]`` (in voxels) per class, from a full label.

    With τ_k the size of class k in the slice / volume and |Ω| its number of voxels:

    * ``"tags"``: ``[1, |Ω|]`` if τ_k > 0, else ``[0, 0]``;
    * ``"common"``: ``common_bounds[k]`` if τ_k > 0, else ``[0, 0]``
      (see :func:`common_size_bounds`);
    * ``"individual"``: ``[(1 − margin) τ_k, (1 + margin) τ_k]`` (``[0, 0]`` when absent).

    Args:
        num_classes: number of classes K (background included), >= 2.
        mode: ``"tags"``, ``"common"`` or ``"individual"``.
        margin: relative margin in [0, 1] of the individual mode.
        common_bounds: ``(K, 2)`` array-like of ``[lower, upper]``, required by the common mode.
        spatial_dims: 3, or 2 on a 2D input: bounds for the whole input, ``(K, 2)``;
            2 on a 3D ``(1, H, W, D)`` input: bounds per slice along the last axis, ``(K, 2, D)``.

    Output float32 of the input's array type (a plain ``torch.Tensor`` for a MetaTensor).

    Example:
        >>> import numpy as np
        >>> label = np.zeros((1, 10, 10), dtype=np.int64)
        >>> label[0, :4, :5] = 1  # 20 voxels
        >>> SizeBounds(num_classes=3, mode="individual", margin=0.1)(label).round(3).tolist()
        [[72.0, 88.0], [18.0, 22.0], [0.0, 0.0]]
        >>> SizeBounds(num_classes=3, mode="tags")(label).tolist()
        [[1.0, 100.0], [1.0, 100.0], [0.0, 0.0]]
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        num_classes: int,
        mode: str = "tags",
        margin: float = 0.1,
        common_bounds: Any = None,
        spatial_dims: int = 2,
    ) -> None:
        self.num_classes = check_int("num_classes", num_classes, 2)
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        self.mode = mode
        self.margin = check_number("margin", margin, 0.0, 1.0)
        if mode == "common" and common_bounds is None:
            raise ValueError("common_bounds is required with mode='common', got None")
        self.common_bounds = None if common_bounds is None else _check_common_bounds(common_bounds, self.num_classes)
        self.spatial_dims = check_spatial_dims(spatial_dims)

    def _bounds(self, lab: np.ndarray) -> np.ndarray:
        sizes = class_sizes(lab, self.num_classes).astype(np.float64)
        present = (sizes > 0)[:, None]
        if self.mode == "tags":
            return present * np.array([1.0, lab.size])
        if self.mode == "common":
            return present * self.common_bounds
        return sizes[:, None] * np.array([1 - self.margin, 1 + self.margin])

    def __call__(self, label: Any) -> Any:
        """Args: label: ``(1, H, W[, D])`` class map. Returns: ``(K, 2)`` or ``(K, 2, D)`` float32."""
        lab = class_map(label, self.num_classes)
        return to_input_type(apply_per_slice(self._bounds, lab, self.spatial_dims), label, spatial=False)


class SizeBoundsd(KeyLoopd):
    """Dictionary wrapper of :class:`SizeBounds`: ``d[output_key] = SizeBounds(...)(d[key])``.

    Args:
        keys: keys of the full labels.
        output_key: key of the result; ``None`` replaces each label (required with several keys).
        Other arguments: see :class:`SizeBounds`.

    Example:
        >>> import numpy as np
        >>> label = np.zeros((1, 4, 4, 3), dtype=np.int64)
        >>> SizeBoundsd(keys="label", num_classes=2)({"label": label})["bounds"].shape
        (2, 2, 3)
    """

    def __init__(
        self,
        keys: KeysCollection = "label",
        *,
        num_classes: int,
        mode: str = "tags",
        margin: float = 0.1,
        common_bounds: Any = None,
        spatial_dims: int = 2,
        output_key: str | None = "bounds",
        allow_missing_keys: bool = False,
    ) -> None:
        transform = SizeBounds(num_classes, mode, margin, common_bounds, spatial_dims)
        super().__init__(keys, output_key, transform, allow_missing_keys)
