"""Centroid bounds per class from a full label, for the centroid constraint of ``InequalityConstraintLoss``.

Reference: H. Kervadec et al., "Constrained deep networks: Lagrangian optimization via log-barrier
extensions", EUSIPCO 2022 (size and centroid constraints; the centroid bounded within a few pixels of
the reference), and "Beyond pixel-wise supervision for segmentation: a few global shape descriptors
might be surprisingly good!", MIDL 2021.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.transforms import Transform
from monai.utils import TransformBackends

from wss_monai.transforms._slices import KeyLoopd, check_int, check_number, class_map, to_input_type

__all__ = ["CentroidBounds", "CentroidBoundsd", "centroid_bounds"]


def centroid_bounds(label: np.ndarray, num_classes: int, margin: float) -> np.ndarray:
    """``(K, N, 2)`` bounds ``[C - margin, C + margin]`` on each class's centroid, per spatial axis.

    ``C`` is the centroid of the class's voxels in voxel indices (from 0), the bounds are clipped to
    ``[0, n - 1]`` on an axis of ``n`` voxels; a class absent from ``label`` gets ``[0, n - 1]``,
    which every soft centroid satisfies (the constraint is void).

    Args:
        label: spatial class map ``(H, W[, D])`` of integers in ``[0, K - 1]``.
        num_classes: number of classes K.
        margin: half-width of the interval, in voxels.
    """
    extent = np.asarray(label.shape, dtype=np.float64) - 1  # (N,)
    bounds = np.stack([np.zeros_like(extent), extent], axis=-1)  # (N, 2)
    bounds = np.repeat(bounds[None], num_classes, axis=0)  # (K, N, 2)
    flat = label.reshape(-1)
    counts = np.bincount(flat, minlength=num_classes).astype(np.float64)
    coords = np.indices(label.shape, dtype=np.float64).reshape(label.ndim, -1)  # (N, P)
    sums = np.stack([np.bincount(flat, weights=c, minlength=num_classes) for c in coords], axis=-1)  # (K, N)
    present = counts > 0
    centre = sums[present] / counts[present, None]
    window = np.stack([centre - margin, centre + margin], axis=-1)
    bounds[present] = np.clip(window, 0, extent[:, None])
    return bounds


class CentroidBounds(Transform):
    """Centroid bounds ``(K, N, 2)`` per class and spatial axis, from a full ``(1, H, W[, D])`` label.

    See :func:`centroid_bounds`: the true centroid ± ``margin`` voxels, clipped to the grid; an absent
    class gets the whole grid ``[0, n - 1]``. Computed on the whole input (a 2D slice gives N = 2, a 3D
    volume N = 3), after any flip or rotation so that the bounds follow the image.

    Args:
        num_classes: number of classes K (background included), >= 2.
        margin: half-width of the interval in voxels, >= 0.

    Output float32 of the input's array type (a plain ``torch.Tensor`` for a MetaTensor).

    Example:
        >>> import numpy as np
        >>> label = np.zeros((1, 8, 8), dtype=np.int64)
        >>> label[0, 2:4, 4:8] = 1  # centroid (2.5, 5.5)
        >>> CentroidBounds(num_classes=3, margin=2)(label)[1:].tolist()
        [[[0.5, 4.5], [3.5, 7.0]], [[0.0, 7.0], [0.0, 7.0]]]
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, num_classes: int, margin: float = 3.0) -> None:
        self.num_classes = check_int("num_classes", num_classes, 2)
        self.margin = check_number("margin", margin, 0.0)

    def __call__(self, label: Any) -> Any:
        """Args: label: ``(1, H, W[, D])`` class map. Returns: ``(K, N, 2)`` float32."""
        lab = class_map(label, self.num_classes)
        return to_input_type(centroid_bounds(lab, self.num_classes, self.margin), label, spatial=False)


class CentroidBoundsd(KeyLoopd):
    """Dictionary wrapper of :class:`CentroidBounds`: ``d[output_key] = CentroidBounds(...)(d[key])``.

    Args:
        keys: keys of the full labels.
        output_key: key of the result; ``None`` replaces each label (required with several keys).
        Other arguments: see :class:`CentroidBounds`.

    Example:
        >>> import numpy as np
        >>> CentroidBoundsd(keys="label", num_classes=2)({"label": np.zeros((1, 4, 4))})["centroid_bounds"].shape
        (2, 2, 2)
    """

    def __init__(
        self,
        keys: KeysCollection = "label",
        *,
        num_classes: int,
        margin: float = 3.0,
        output_key: str | None = "centroid_bounds",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, output_key, CentroidBounds(num_classes, margin), allow_missing_keys)
