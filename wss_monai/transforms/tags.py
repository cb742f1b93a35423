"""Image-level tags: which classes are present in a slice or a volume.

Reference: H. Kervadec et al., "Constrained-CNN losses for weakly supervised segmentation",
MedIA 2019 (tags as size bounds [1, |Ω|] / [0, 0]); A. Kolesnikov and C. Lampert, "Seed, expand
and constrain", ECCV 2016 (tags as the only supervision).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.transforms import Transform
from monai.utils import TransformBackends

from wss_monai.transforms._slices import (
    KeyLoopd,
    apply_per_slice,
    check_int,
    check_spatial_dims,
    class_map,
    to_input_type,
)

__all__ = ["ImageTags", "ImageTagsd", "class_sizes"]


def class_sizes(lab: np.ndarray, num_classes: int) -> np.ndarray:
    """Number of voxels of each class in a spatial int array: ``(num_classes,)`` int64."""
    return np.bincount(lab.ravel(), minlength=num_classes)


class ImageTags(Transform):
    """Class presence tags: ``t_k = 1`` if class k has at least one voxel, else 0.

    Args:
        num_classes: number of classes K (background included), >= 2.
        spatial_dims: 3, or 2 on a 2D input: one tag vector for the whole input, shape ``(K,)``;
            2 on a 3D ``(1, H, W, D)`` input: one vector per slice along the last axis, ``(K, D)``.

    Input ``(1, H, W[, D])`` integer class map (numpy, torch or MetaTensor); output float32 of the
    input's array type (a plain ``torch.Tensor`` for a MetaTensor: tags have no spatial metadata).

    Example:
        >>> import numpy as np
        >>> label = np.zeros((1, 4, 4, 2), dtype=np.int64)
        >>> label[0, :2, :2, 1] = 2
        >>> ImageTags(num_classes=3, spatial_dims=3)(label).tolist()
        [1.0, 0.0, 1.0]
        >>> ImageTags(num_classes=3, spatial_dims=2)(label).tolist()  # (K, D)
        [[1.0, 1.0], [0.0, 0.0], [0.0, 1.0]]
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, num_classes: int, spatial_dims: int = 2) -> None:
        self.num_classes = check_int("num_classes", num_classes, 2)
        self.spatial_dims = check_spatial_dims(spatial_dims)

    def __call__(self, label: Any) -> Any:
        """Args: label: ``(1, H, W[, D])`` class map. Returns: ``(K,)`` or ``(K, D)`` float32 tags."""
        lab = class_map(label, self.num_classes)
        tags = apply_per_slice(lambda s: class_sizes(s, self.num_classes) > 0, lab, self.spatial_dims)
        return to_input_type(tags, label, spatial=False)


class ImageTagsd(KeyLoopd):
    """Dictionary wrapper of :class:`ImageTags`: ``d[output_key] = ImageTags(...)(d[key])``.

    Args:
        keys: keys of the full labels.
        output_key: key of the result; ``None`` replaces each label (required with several keys).
        Other arguments: see :class:`ImageTags`.

    Example:
        >>> import numpy as np
        >>> label = np.zeros((1, 4, 4), dtype=np.int64)
        >>> ImageTagsd(keys="label", num_classes=2)({"label": label})["tags"].tolist()
        [1.0, 0.0]
    """

    def __init__(
        self,
        keys: KeysCollection = "label",
        *,
        num_classes: int,
        spatial_dims: int = 2,
        output_key: str | None = "tags",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, output_key, ImageTags(num_classes, spatial_dims), allow_missing_keys)
