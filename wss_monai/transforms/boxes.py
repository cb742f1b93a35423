"""Bounding boxes as weak labels: tight boxes from a label, the box-id map the losses read, the masked-CE target.

Reference: H. Kervadec, J. Dolz, S. Wang, E. Granger, I. Ben Ayed, "Bounding boxes for weakly
supervised segmentation: global constraints get close to full supervision", MIDL 2020.

A set of boxes is an int64 array ``(N, 1 + 2·N_s)``: ``[class, lo_1, …, lo_Ns, hi_1, …, hi_Ns]`` in
voxel indices of the input grid, half-open (``lo ≤ p < hi``), ``N_s`` its spatial axes. A 2D box of
a 3D volume (``box_dims=2``) is a box one slice deep (``hi_D = lo_D + 1``).

The losses read a **box-id map** ``(C', *spatial)`` (:class:`BoxIds`), one channel per foreground
class: 0 outside every box of the class, ``i > 0`` inside its ``i``-th box. The map travels through
flips, rotations, slicing and depth padding like any label map, and the boxes are recovered from it
on the augmented batch (:func:`wss_monai.transforms.boxes_from_ids`).

Example:
    >>> import numpy as np
    >>> label = np.zeros((1, 8, 8), dtype=np.int64)
    >>> label[0, 2:5, 3:7] = 1
    >>> BoundingBoxes(num_classes=2)(label).tolist()          # [class, x0, y0, x1, y1]
    [[1, 2, 3, 5, 7]]
    >>> BoundingBoxes(num_classes=2, margin=1)(label).tolist()
    [[1, 1, 2, 6, 8]]
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from scipy import ndimage

from wss_monai.constants import UNLABELLED
from wss_monai.transforms._slices import KeyLoopd, check_int, check_spatial_dims, class_map, source_name, to_input_type

__all__ = [
    "BoundingBoxes",
    "BoundingBoxesd",
    "BoxIds",
    "BoxIdsd",
    "BoxTarget",
    "BoxTargetd",
    "boxes_to_ids",
    "check_boxes",
    "tight_boxes",
]

logger = logging.getLogger(__name__)


MARGIN_SPACES = ("grid", "file")
"""Units of :class:`BoundingBoxes`' margin and jitter: voxels of the map given, or of the image file."""


def _per_axis(name: str, value: Any, dims: int) -> np.ndarray:
    values = np.atleast_1d(np.asarray(value))
    if values.ndim != 1 or values.size not in (1, dims) or values.dtype.kind not in "iu" or (values < 0).any():
        raise ValueError(f"{name} must be a non-negative integer or one per spatial axis ({dims}), got {value!r}")
    return np.broadcast_to(values.astype(np.int64), (dims,)).copy()


def tight_boxes(label: np.ndarray, num_classes: int, box_dims: int = 2) -> np.ndarray:
    """The tight box of every connected component of every foreground class of a spatial class map.

    Args:
        label: ``(H, W)`` or ``(H, W, D)`` int array.
        num_classes: K; classes 1..K-1 get boxes.
        box_dims: 3 (or a 2D label): components in the whole array; 2 on a 3D label: 2D components of
            each slice along the last axis (boxes one slice deep).

    Returns:
        ``(N, 1 + 2·label.ndim)`` int64 boxes, ordered by class, slice, then component (face connectivity).
    """
    rows = []
    slices = (
        [(None, label)] if label.ndim == 2 or box_dims == 3 else [(z, label[..., z]) for z in range(label.shape[-1])]
    )
    for cls in range(1, num_classes):
        for z, part in slices:
            components, _ = ndimage.label(part == cls)
            for found in ndimage.find_objects(components):
                lo = [s.start for s in found] + ([] if z is None else [z])
                hi = [s.stop for s in found] + ([] if z is None else [z + 1])
                rows.append([cls, *lo, *hi])
    return np.asarray(rows, dtype=np.int64).reshape(-1, 1 + 2 * label.ndim)


def check_boxes(boxes: Any, spatial_shape: Sequence[int], num_classes: int, source: str = "boxes") -> np.ndarray:
    """Check boxes ``(N, 1 + 2·N_s)`` against an image grid; return them as int64.

    Raises:
        ValueError: naming ``source`` and the box (its index and values): a class outside 1..K-1, a box
            of zero (or negative) width, or a box partly outside the image (boxes are never clipped here;
            only a margin or jitter added by :class:`BoundingBoxes` is clipped to the image).
    """
    dims = len(spatial_shape)
    array = np.asarray(boxes)
    if array.size == 0:
        return np.zeros((0, 1 + 2 * dims), np.int64)
    if array.ndim != 2 or array.shape[1] != 1 + 2 * dims:
        raise ValueError(f"{source}: boxes must have shape (N, {1 + 2 * dims}) for a {dims}D image, got {array.shape}")
    if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
        raise ValueError(f"{source}: box coordinates and classes must be integers, got {array.tolist()[:5]}")
    array = array.astype(np.int64)
    shape = np.asarray(spatial_shape)
    for index, box in enumerate(array):
        cls, lo, hi = box[0], box[1 : 1 + dims], box[1 + dims :]
        if not 1 <= cls < num_classes:
            raise ValueError(
                f"{source}: box {index} {box.tolist()} has class {cls}, not a foreground class 1..{num_classes - 1}"
            )
        if (hi <= lo).any():
            raise ValueError(
                f"{source}: box {index} {box.tolist()} has zero width on axis {int(np.argmax(hi <= lo))} (hi <= lo)"
            )
        if (lo < 0).any() or (hi > shape).any():
            raise ValueError(
                f"{source}: box {index} {box.tolist()} lies partly outside the image of shape {tuple(shape.tolist())}"
            )
    return array


class BoundingBoxes(Transform):
    """Tight boxes from a full label, one per connected component per class, with optional margin and jitter.

    Each side is moved outwards by ``margin`` voxels, then by a uniform integer in ``[-jitter, jitter]``
    (drawn independently per side), and the box is clipped to the image (documented clipping: a box
    near the border keeps the part inside) and kept at least one voxel wide. With ``box_dims=2`` only
    the in-plane sides move. Jitter draws come from ``numpy.random.default_rng([seed, crc32(file)])``
    with the label's file name (from its ``MetaTensor``), so a case keeps the same boxes in every epoch
    and every run, whatever the order of the cases.

    With ``margin_space="file"`` the margin and the jitter are in voxels of the image as it was read,
    which is what an annotator's slack means (box files are drawn on that grid too): on a label resized
    for training they are scaled by the resizing, ``round(value · shape / spatial_shape)`` per axis, from
    the ``spatial_shape`` that MONAI's readers store in the ``MetaTensor``. ``"grid"``: voxels of the map
    as given.

    Args:
        num_classes: K (background included), >= 2.
        box_dims: 2 (one box per component of each slice along the last axis) or 3 (per volume).
        margin: voxels added on each side, one value or one per spatial axis.
        jitter: largest random shift of each side in voxels, one value or one per spatial axis.
        seed: seed of the jitter.
        margin_space: ``"grid"`` or ``"file"`` (see above).

    Input ``(1, H, W[, D])`` class map; output int64 ``(N, 1 + 2·N_s)`` boxes (numpy).

    Raises:
        ValueError: with ``margin_space="file"``, a label without ``spatial_shape`` metadata (and a
            margin or jitter to scale), or whose metadata has another number of axes.
    """

    def __init__(
        self,
        num_classes: int,
        box_dims: int = 2,
        margin: Any = 0,
        jitter: Any = 0,
        seed: int = 0,
        margin_space: str = "grid",
    ) -> None:
        self.num_classes = check_int("num_classes", num_classes, 2)
        self.box_dims = check_spatial_dims(box_dims)
        self.margin, self.jitter, self.seed = margin, jitter, check_int("seed", seed, 0)
        _per_axis("margin", margin, 3)
        _per_axis("jitter", jitter, 3)
        if margin_space not in MARGIN_SPACES:
            raise ValueError(f"margin_space must be one of {MARGIN_SPACES}, got {margin_space!r}")
        self.margin_space = margin_space

    def _file_scale(self, label: Any, dims: int) -> np.ndarray:
        """Per spatial axis, training-grid voxels per file voxel."""
        meta = getattr(label, "meta", None) or {}
        file_shape = meta.get("spatial_shape")
        if file_shape is None:
            raise ValueError(
                f"margin_space 'file' needs the label's spatial_shape metadata (a MetaTensor from a MONAI "
                f"reader) to scale margin {self.margin!r} and jitter {self.jitter!r}; "
                f"{source_name(label) or 'this label'} has none: give margins in voxels of the training grid "
                "with margin_space 'grid'"
            )
        file_shape = np.asarray(file_shape, dtype=np.float64).reshape(-1)
        if file_shape.size != dims or (file_shape <= 0).any():
            raise ValueError(
                f"{source_name(label) or 'the label'}: spatial_shape metadata {file_shape.tolist()} does not match "
                f"a label with {dims} spatial axes"
            )
        return np.asarray(label.shape[1:], dtype=np.float64) / file_shape

    def _grid_margin_and_jitter(self, label: Any, dims: int) -> tuple[np.ndarray, np.ndarray]:
        """Margin and jitter in voxels of the label's grid, on the axes whose sides move."""
        moving = dims if self.box_dims == 3 else 2  # in 2D mode the depth sides stay
        margin = _per_axis("margin", self.margin, dims)[:moving]
        jitter = _per_axis("jitter", self.jitter, dims)[:moving]
        if self.margin_space == "file" and (margin.any() or jitter.any()):
            scale = self._file_scale(label, dims)[:moving]
            margin = np.rint(margin * scale).astype(np.int64)
            jitter = np.rint(jitter * scale).astype(np.int64)
        return margin, jitter

    def grid_margin(self, label: Any) -> np.ndarray:
        """The margin added to every side, in voxels of the label's grid, per spatial axis ``(N_s,)`` float32.

        Axes whose sides do not move (depth with ``box_dims=2``) get 0. With ``margin_space="file"``
        it is the scaled margin of :meth:`__call__`.
        """
        dims = np.asarray(label).ndim - 1
        margin = np.zeros(dims, np.float32)
        moving, _ = self._grid_margin_and_jitter(label, dims)
        margin[: len(moving)] = moving
        return margin

    def __call__(self, label: Any) -> np.ndarray:
        lab = class_map(label, self.num_classes)
        boxes = tight_boxes(lab, self.num_classes, self.box_dims)
        dims = lab.ndim
        margin, jitter = self._grid_margin_and_jitter(label, dims)
        moving = len(margin)
        if not len(boxes) or not (margin.any() or jitter.any()):
            return boxes
        lo, hi = boxes[:, 1 : 1 + moving], boxes[:, 1 + dims : 1 + dims + moving]
        lo, hi = lo - margin, hi + margin
        if jitter.any():
            name = source_name(label) or ""
            rng = np.random.default_rng([self.seed, zlib.crc32(name.encode())])
            lo = lo + rng.integers(-jitter, jitter + 1, size=lo.shape)
            hi = hi + rng.integers(-jitter, jitter + 1, size=hi.shape)
        shape = np.asarray(lab.shape[:moving])
        lo = np.clip(lo, 0, shape - 1)
        hi = np.clip(np.maximum(hi, lo + 1), 1, shape)
        boxes[:, 1 : 1 + moving], boxes[:, 1 + dims : 1 + dims + moving] = lo, hi
        return boxes


class BoundingBoxesd(KeyLoopd):
    """Dictionary wrapper of :class:`BoundingBoxes`: ``d[output_key] = BoundingBoxes(...)(d[key])``.

    ``margin_key`` also stores the margin in voxels of the label's grid per spatial axis
    (:meth:`BoundingBoxes.grid_margin`, ``(N_s,)``), for a size bound that counts the box less its margin
    (:class:`~wss_monai.losses.BoxConstraintLoss` ``margin_key``).
    """

    def __init__(
        self,
        keys: KeysCollection = "label",
        *,
        num_classes: int,
        box_dims: int = 2,
        margin: Any = 0,
        jitter: Any = 0,
        seed: int = 0,
        margin_space: str = "grid",
        output_key: str | None = "boxes",
        margin_key: str | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(
            keys,
            output_key,
            BoundingBoxes(num_classes, box_dims, margin, jitter, seed, margin_space),
            allow_missing_keys,
        )
        if margin_key is not None and len(self.keys) != 1:
            raise ValueError(f"margin_key can only be used with a single key, got keys={list(self.keys)}")
        self.margin_key = margin_key

    def __call__(self, data: Any) -> dict:
        d = super().__call__(data)
        if self.margin_key is not None and self.keys[0] in d:
            d[self.margin_key] = self.transform.grid_margin(d[self.keys[0]])
        return d


def boxes_to_ids(boxes: np.ndarray, spatial_shape: Sequence[int], num_classes: int, box_dims: int = 2) -> np.ndarray:
    """Draw boxes into a box-id map ``(K - 1, *spatial_shape)`` float32 (see the module docstring).

    Boxes of one class that overlap or touch become one connected region and share an id (2D regions
    of each slice with ``box_dims=2``, 3D regions otherwise); the losses then use its bounding box
    (the tightness prior still holds there: every line crossing it meets one of the boxes' objects)
    and its voxel count as |Ω_I|. Boxes of different classes may overlap (one channel per class).
    Ids are unique within a channel of the whole volume.
    """
    dims = len(spatial_shape)
    boxes = check_boxes(boxes, spatial_shape, num_classes)
    union = np.zeros((num_classes - 1, *spatial_shape), bool)
    for cls, *corners in boxes:  # once per volume, cached: a few hundred boxes at most
        union[(cls - 1, *(slice(a, b) for a, b in zip(corners[:dims], corners[dims:])))] = True
    ids = np.zeros(union.shape, np.float32)
    for channel in range(num_classes - 1):
        if dims == 2 or box_dims == 3:
            ids[channel] = ndimage.label(union[channel])[0]
            continue
        offset = 0
        for z in range(spatial_shape[-1]):
            part, count = ndimage.label(union[channel, ..., z])
            ids[channel, ..., z] = np.where(part > 0, part + offset, 0)
            offset += count
    return ids


class BoxIds(Transform):
    """Boxes ``(N, 1 + 2·N_s)`` → box-id map ``(K - 1, *spatial)`` on the grid of a reference image.

    Args:
        num_classes: K.
        box_dims: 2 or 3, how overlapping boxes of one class are joined (see :func:`boxes_to_ids`).

    Call with ``(boxes, reference)``: ``reference`` ``(C, *spatial)`` gives the grid, and its type and
    metadata (a ``MetaTensor`` keeps its affine, so flips and padding treat the map like a label).
    """

    def __init__(self, num_classes: int, box_dims: int = 2) -> None:
        self.num_classes = check_int("num_classes", num_classes, 2)
        self.box_dims = check_spatial_dims(box_dims)

    def __call__(self, boxes: Any, reference: Any) -> Any:
        spatial = tuple(reference.shape[1:])
        ids = boxes_to_ids(np.asarray(boxes), spatial, self.num_classes, self.box_dims)
        return to_input_type(ids, reference)


class BoxIdsd(MapTransform):
    """Dictionary wrapper of :class:`BoxIds`: ``d[output_key] = BoxIds(...)(d[key], d[reference_key])``.

    ``delete_boxes`` removes ``d[key]`` afterwards (the box-id map carries them on).
    """

    def __init__(
        self,
        keys: KeysCollection = "boxes",
        *,
        num_classes: int,
        box_dims: int = 2,
        reference_key: str = "label",
        output_key: str = "box_ids",
        delete_boxes: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = BoxIds(num_classes, box_dims)
        self.reference_key, self.output_key, self.delete_boxes = reference_key, output_key, bool(delete_boxes)

    def __call__(self, data: Any) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            if self.reference_key not in d:
                raise KeyError(f"BoxIdsd needs the reference key {self.reference_key!r}; keys present: {sorted(d)}")
            d[self.output_key] = self.transform(d[key], d[self.reference_key])
            if self.delete_boxes:
                del d[key]
        return d


class BoxTarget(Transform):
    """The target of the masked cross-entropy baseline from a box-id map ``(K - 1, *spatial)``: ``(1, *spatial)``.

    Outside every box: background (0). Inside boxes of one class: that class. Inside boxes of several
    classes: the class whose box (region of the id map) is smallest, as a box drawn inside another is
    the inner structure (ACDC: the LV box lies inside the myocardium's). Voxels outside the image
    (negative ids from depth padding) get ``unlabelled``.

    Example:
        >>> import numpy as np
        >>> ids = np.zeros((2, 1, 6), np.float32)
        >>> ids[0, 0, 0:5] = 1          # a class-1 box of 5 voxels
        >>> ids[1, 0, 2:4] = 1          # a class-2 box of 2 voxels inside it
        >>> BoxTarget()(ids)[0, 0].tolist()
        [1.0, 1.0, 2.0, 2.0, 1.0, 0.0]
    """

    def __init__(self, unlabelled: int = UNLABELLED) -> None:
        self.unlabelled = int(unlabelled)

    def __call__(self, box_ids: Any) -> Any:
        ids = np.rint(np.asarray(box_ids)).astype(np.int64)
        if ids.ndim not in (3, 4):
            raise ValueError(f"box_ids must have shape (K - 1, H, W[, D]), got {ids.shape}")
        sizes = np.full(ids.shape, np.inf)
        for channel in range(ids.shape[0]):  # per class: voxel count of each box, looked up per voxel
            counts = np.bincount(np.clip(ids[channel], 0, None).ravel())
            counts[0] = 0
            inside = ids[channel] > 0
            sizes[channel][inside] = counts[ids[channel][inside]]
        target = np.where(np.isfinite(sizes).any(0), sizes.argmin(0) + 1, 0).astype(np.float32)
        target[(ids < 0).any(0)] = self.unlabelled
        return to_input_type(target[None], box_ids)


class BoxTargetd(KeyLoopd):
    """Dictionary wrapper of :class:`BoxTarget`: ``d[output_key] = BoxTarget(...)(d[key])``."""

    def __init__(
        self,
        keys: KeysCollection = "box_ids",
        *,
        unlabelled: int = UNLABELLED,
        output_key: str | None = "box_target",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, output_key, BoxTarget(unlabelled), allow_missing_keys)
