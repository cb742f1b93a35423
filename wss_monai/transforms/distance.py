"""Signed distance maps of a label, the target of the boundary loss.

Reference: H. Kervadec et al., "Boundary loss for highly unbalanced segmentation", MIDL 2019 /
MedIA 2021.

The map depends on the label only, so it is computed once per label: put the transform in the
deterministic (cached) part of the pipeline, before the first random transform of a
``CacheDataset`` / ``PersistentDataset``, never in the per-batch loss. Later spatial transforms
must then carry the map with the label (add ``"dist_map"`` to their keys; crops and flips keep its
values exact, interpolating ones should use bilinear mode), and intensity transforms must not touch it.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.data.utils import affine_to_spacing
from monai.transforms import Transform
from monai.utils import TransformBackends
from scipy.ndimage import distance_transform_edt

from wss_monai.transforms._slices import (
    KeyLoopd,
    apply_per_slice,
    check_int,
    check_spatial_dims,
    class_map,
    to_input_type,
)

__all__ = ["CONVENTIONS", "SignedDistanceMap", "SignedDistanceMapd", "signed_distance"]

CONVENTIONS = ("faces", "reference")


def _check_convention(convention: Any) -> str:
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    return convention


def signed_distance(mask: np.ndarray, spacing: Sequence[float], convention: str = "faces") -> np.ndarray:
    """Signed distance map of one binary mask, float64, in the units of ``spacing``.

    .. math::
        φ(p) = -d(p, Ω \\setminus G)\\,[p ∈ G] + d(p, G)\\,[p ∉ G]

    where ``d(p, A)`` is the Euclidean distance (with ``spacing``) from the centre of voxel p to the
    nearest voxel centre of A (``convention="faces"``). ``convention="reference"`` is the published
    code's ``one_hot2dist`` (Kervadec et al.): inside, ``-(d(p, Ω \\setminus G) - 1)``, so the inner
    contour holds 0 (the ``1`` is subtracted in the units of ``spacing``, as there). A mask that is
    empty or fills the whole array has no boundary and gives a zero map.

    Example:
        >>> import numpy as np
        >>> signed_distance(np.array([[0, 1, 1, 1, 0, 0]], bool), spacing=(1.0, 1.0)).tolist()
        [[1.0, -1.0, -2.0, -1.0, 1.0, 2.0]]
        >>> signed_distance(np.array([[0, 1, 1, 1, 0, 0]], bool), (1.0, 1.0), "reference").tolist()
        [[1.0, 0.0, -1.0, 0.0, 1.0, 2.0]]
    """
    convention = _check_convention(convention)
    mask = np.asarray(mask, dtype=bool)
    if not mask.any() or mask.all():
        return np.zeros(mask.shape, dtype=np.float64)
    outside = ~mask
    to_inside = distance_transform_edt(outside, sampling=spacing)  # at outside voxels: distance to G
    to_outside = distance_transform_edt(mask, sampling=spacing)  # at inside voxels: distance to Ω \ G
    inside = 1.0 - to_outside if convention == "reference" else -to_outside
    return np.where(mask, inside, to_inside)


def _check_spacing(spacing: Any) -> tuple[float, ...] | None:
    if spacing is None:
        return None
    values = (spacing,) if isinstance(spacing, numbers.Real) else tuple(np.asarray(spacing, dtype=object).ravel())
    ok = len(values) in (1, 2, 3) and all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) and np.isfinite(v) and v > 0 for v in values
    )
    if not ok:
        raise ValueError(f"spacing must be None or 1 to 3 finite positive numbers (mm), got {spacing!r}")
    return tuple(float(v) for v in values)


class SignedDistanceMap(Transform):
    """Per-class signed distance to the label's boundary: negative inside, positive outside.

    For each selected class k with mask ``G_k`` (Kervadec et al. 2019, computed with
    ``scipy.ndimage.distance_transform_edt(..., sampling=spacing)``):

    .. math::
        φ_k(p) = -d(p, Ω \\setminus G_k)\\,[p ∈ G_k] + d(p, G_k)\\,[p ∉ G_k]

    **Boundary convention.** ``d(p, A)`` is the distance (mm, or voxels without spacing) from the
    centre of voxel p to the nearest voxel centre of A, so each voxel holds its distance to the
    closest voxel of the other side. The boundary ∂G_k is the set of voxel faces between G_k and
    its complement, and φ changes sign exactly there: the two voxels across a face along axis i
    hold values in ``[-spacing[i], 0)`` and ``(0, spacing[i]]``; across a straight edge they hold
    ``-spacing[i]`` and ``+spacing[i]``, so φ interpolated linearly between them is zero ON the face.
    No voxel centre of a class with a boundary holds 0, and ``|φ| ≥ min(spacing)``. There is no
    ½-voxel shift, and the published code's ``- 1`` on the inside (which puts the inner contour at
    0, counts 1 in voxels even with mm spacing, and makes an eroded prediction tie with the ground
    truth under the boundary loss) is not applied by default. For two classes, φ_0 = −φ_1.
    ``convention="reference"`` applies it (inside ``-(d - 1)``, the 1 in the map's units, as the
    published ``one_hot2dist`` does), to compare with the authors' code.

    A class absent from the slice/volume, or filling all of it, has no boundary there: zero map.

    Args:
        num_classes: number of classes K (background included), >= 2.
        spatial_dims: 2 computes the map in each 2D slice along the last axis of a 3D input
            (distances within the slice only, as in the 2D paper); 3 over the whole volume.
        spacing: voxel size per spatial axis (2 or 3 numbers, or one for every axis). ``None``
            takes it from a ``MetaTensor``'s affine, and uses 1 (voxel units) for other inputs.
            On a 3D input with ``spatial_dims=2`` two values, or the first two of three, are used.
        include_background: also compute class 0; the output then has K channels, otherwise K - 1
            (channel i is class i + 1).
        convention: ``"faces"`` (default, zero on the voxel faces between the classes) or
            ``"reference"`` (the published code: inner contour at 0).

    Input ``(1, H, W[, D])`` integer class map (numpy, torch or MetaTensor); output
    ``(C', H, W[, D])`` float32 of the input's type, ``C' = K`` or ``K - 1``. Computed once per
    label: use it in the cached part of the pipeline (see the module docstring).

    Example:
        >>> import numpy as np
        >>> label = np.array([[[0, 1, 1, 1, 0, 0]]])                     # (1, H=1, W=6)
        >>> SignedDistanceMap(num_classes=2)(label).tolist()
        [[[1.0, -1.0, -2.0, -1.0, 1.0, 2.0]]]
        >>> SignedDistanceMap(num_classes=2, spacing=(1.0, 0.5))(label).tolist()
        [[[0.5, -0.5, -1.0, -0.5, 0.5, 1.0]]]
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        num_classes: int,
        spatial_dims: int = 2,
        spacing: float | Sequence[float] | None = None,
        include_background: bool = False,
        convention: str = "faces",
    ) -> None:
        self.num_classes = check_int("num_classes", num_classes, 2)
        self.spatial_dims = check_spatial_dims(spatial_dims)
        self.spacing = _check_spacing(spacing)
        self.include_background = bool(include_background)
        self.convention = _check_convention(convention)

    def _spacing(self, label: Any, ndim: int, per_slice: bool) -> tuple[float, ...]:
        """Spacing of the axes the distances are computed over (the first two on a per-slice 3D input)."""
        used = 2 if per_slice else ndim
        if self.spacing is None:
            if isinstance(label, MetaTensor):
                return tuple(float(s) for s in affine_to_spacing(label.affine, r=ndim))[:used]
            return (1.0,) * used
        if len(self.spacing) == 1:
            return self.spacing * used
        if len(self.spacing) not in (ndim, used):
            raise ValueError(f"spacing {self.spacing} must have one value per spatial axis of the label ({ndim})")
        return self.spacing[:used]

    def __call__(self, label: Any) -> Any:
        """Args: label: ``(1, H, W[, D])`` class map. Returns: ``(C', H, W[, D])`` float32 signed distances."""
        lab = class_map(label, self.num_classes)
        sampling = self._spacing(label, lab.ndim, per_slice=self.spatial_dims == 2 and lab.ndim == 3)
        classes = range(0 if self.include_background else 1, self.num_classes)

        def maps(region: np.ndarray) -> np.ndarray:
            return np.stack([signed_distance(region == k, sampling, self.convention) for k in classes])

        return to_input_type(apply_per_slice(maps, lab, self.spatial_dims), label, spatial=True)


class SignedDistanceMapd(KeyLoopd):
    """Dictionary wrapper of :class:`SignedDistanceMap`: ``d[output_key] = SignedDistanceMap(...)(d[key])``.

    Args:
        keys: keys of the full labels.
        output_key: key of the result (``"dist_map"``, read by :class:`wss_monai.losses.boundary.BoundaryLoss`);
            ``None`` replaces each label (required with several keys).
        Other arguments: see :class:`SignedDistanceMap`.

    Example:
        >>> import numpy as np
        >>> label = np.array([[[0, 1, 1, 0]]])
        >>> SignedDistanceMapd(keys="label", num_classes=2)({"label": label})["dist_map"].tolist()
        [[[1.0, -1.0, -1.0, 1.0]]]
    """

    def __init__(
        self,
        keys: KeysCollection = "label",
        *,
        num_classes: int,
        spatial_dims: int = 2,
        spacing: float | Sequence[float] | None = None,
        include_background: bool = False,
        convention: str = "faces",
        output_key: str | None = "dist_map",
        allow_missing_keys: bool = False,
    ) -> None:
        transform = SignedDistanceMap(num_classes, spatial_dims, spacing, include_background, convention)
        super().__init__(keys, output_key, transform, allow_missing_keys)
