"""Point annotations: a disc (ball) around random voxels of each class, clipped to the class.

Reference: H. Kervadec et al., "Constrained-CNN losses for weakly supervised segmentation",
MedIA 2019 (ACDC / PROMISE12 points: a disc of radius 4 around a random pixel of the structure).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.transforms import Randomizable, Transform
from monai.utils import TransformBackends
from scipy import ndimage

from wss_monai.constants import UNLABELLED
from wss_monai.transforms._slices import (
    RandomKeyLoopd,
    apply_per_slice,
    check_int,
    check_number,
    check_spatial_dims,
    check_unlabelled,
    class_map,
    to_input_type,
)

__all__ = ["RandomPointDiscs", "RandomPointDiscsd"]


class RandomPointDiscs(Randomizable, Transform):
    """Random point annotations: discs of radius r around random voxels of each class.

    For each class k present in the slice (``spatial_dims=2``) or volume (``spatial_dims=3``),
    ``num_points`` centres c are drawn uniformly without replacement among the voxels of
    ``M_k = {label == k}`` (all of them if the class has fewer voxels), and the annotation is
    ``{p ∈ M_k : min_c ‖p − c‖₂ ≤ r}``: discs (balls in 3D, voxel units) clipped to the class.
    ``radius=0`` gives single voxels. The draws use ``self.R``; seed with ``set_random_state``.

    Args:
        num_classes: number of classes K (background included), >= 2.
        radius: disc radius r >= 0 in voxels (4 in Kervadec et al.).
        spatial_dims: 2: each slice of a 3D input along its last axis on its own; 3: whole volume.
        include_background: also annotate class 0.
        num_points: number of discs per class, >= 1.
        unlabelled: value of the voxels left unannotated.

    Input ``(1, H, W[, D])`` integer class map; output a float32 map of the same shape and type.

    Example:
        >>> import numpy as np
        >>> label = np.zeros((1, 9, 9), dtype=np.int64)
        >>> label[0, 2:7, 2:7] = 1
        >>> points = RandomPointDiscs(num_classes=2, radius=10, include_background=False)
        >>> weak = points.set_random_state(0)(label)
        >>> int((weak == 1).sum()), int((weak == -1).sum())  # the disc covers the 5 x 5 class
        (25, 56)
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        num_classes: int,
        radius: float = 4,
        spatial_dims: int = 2,
        include_background: bool = True,
        num_points: int = 1,
        unlabelled: float = UNLABELLED,
    ) -> None:
        self.num_classes = check_int("num_classes", num_classes, 2)
        self.radius = check_number("radius", radius, 0.0)
        self.spatial_dims = check_spatial_dims(spatial_dims)
        self.include_background = bool(include_background)
        self.num_points = check_int("num_points", num_points, 1)
        self.unlabelled = check_unlabelled(unlabelled, self.num_classes)

    def randomize(self, data: Any = None) -> None:
        """No-op: the centres depend on the label and are drawn in ``__call__``."""

    def _points(self, lab: np.ndarray) -> np.ndarray:
        out = np.full(lab.shape, self.unlabelled, dtype=np.float32)
        for k in np.unique(lab):
            if k == 0 and not self.include_background:
                continue
            mask = lab == k
            voxels = np.flatnonzero(mask)
            chosen = self.R.choice(voxels.size, size=min(self.num_points, voxels.size), replace=False)
            not_centre = np.ones(lab.shape, bool)
            not_centre.flat[voxels[chosen]] = False
            disc = ndimage.distance_transform_edt(not_centre) <= self.radius
            out[disc & mask] = k
        return out

    def __call__(self, label: Any) -> Any:
        """Args: label: ``(1, H, W[, D])`` class map. Returns: ``(1, H, W[, D])`` float32 weak map."""
        lab = class_map(label, self.num_classes)
        return to_input_type(apply_per_slice(self._points, lab, self.spatial_dims)[None], label)


class RandomPointDiscsd(RandomKeyLoopd):
    """Dictionary wrapper of :class:`RandomPointDiscs`; ``set_random_state`` seeds the array transform.

    Args:
        keys: keys of the full labels.
        output_key: key of the result; ``None`` replaces each label (required with several keys).
        Other arguments: see :class:`RandomPointDiscs`.

    Example:
        >>> import numpy as np
        >>> label = np.zeros((1, 9, 9), dtype=np.int64)
        >>> label[0, 2:7, 2:7] = 1
        >>> t = RandomPointDiscsd(keys="label", num_classes=2, radius=0).set_random_state(0)
        >>> [int((t({"label": label})["points"] == k).sum()) for k in (0, 1)]
        [1, 1]
    """

    def __init__(
        self,
        keys: KeysCollection = "label",
        *,
        num_classes: int,
        radius: float = 4,
        spatial_dims: int = 2,
        include_background: bool = True,
        num_points: int = 1,
        unlabelled: float = UNLABELLED,
        output_key: str | None = "points",
        allow_missing_keys: bool = False,
    ) -> None:
        transform = RandomPointDiscs(num_classes, radius, spatial_dims, include_background, num_points, unlabelled)
        super().__init__(keys, output_key, transform, allow_missing_keys)
