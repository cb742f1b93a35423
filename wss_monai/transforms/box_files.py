"""Boxes read from files: a JSON list of boxes, or a box mask as MONAI Label saves it.

Files are found next to each image by name (:func:`attach_box_files`): for ``<stem>.nii.gz`` (or
``.nii``, ``.mhd``) in ``box_dir``, ``<stem>_boxes.json`` or ``<stem>_boxes.nii.gz`` (``.nii``, ``.mhd``).

**JSON**, in voxel indices of the image file, half-open (``lo ≤ p < hi``), ``x y z`` in the image's
array order::

    {"boxes": [{"class": 1, "box": [x0, y0, z0, x1, y1, z1]}, ...]}

A 2D box of a 3D image is one slice deep (``z1 = z0 + 1``). A box partly outside the image, of zero
width, with a class that is not a foreground class, or a file that is not such JSON stops the run
with the file and the box named; nothing is clipped.

**Box mask**: a label map on the image's grid (same shape and affine, checked; a different affine
stops the run naming both files) where each box is filled with its class. Each connected region of a
class (of each slice, with ``box_dims=2``) must be a filled axis-aligned box; otherwise the error names
the file, the class and the region: a label map cannot hold boxes of two classes that overlap (the
later one cuts the earlier), so give such boxes as JSON.

The boxes are drawn on the file's grid and the box-id map resized to the training grid with
nearest-neighbour interpolation, as the labels are.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import LoadImage, MapTransform, Resize
from scipy import ndimage

from wss_monai.transforms._slices import check_int, check_spatial_dims, to_input_type
from wss_monai.transforms.boxes import boxes_to_ids, check_boxes

__all__ = ["BoxFilesd", "attach_box_files", "read_box_json", "read_box_mask"]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mhd", ".mha")
BOX_SUFFIXES = (".json", ".nii.gz", ".nii", ".mhd")


def _stem(path: str | Path) -> str:
    name = Path(path).name
    for suffix in IMAGE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def attach_box_files(items: Sequence[Mapping], box_dir: str | Path, key: str = "box_file") -> list[dict]:
    """Copies of datalist ``items`` with ``item[key]`` = the box file of each item's (first) image.

    Raises:
        FileNotFoundError: ``box_dir`` missing, or an image without ``<stem>_boxes.{json,nii.gz,nii,mhd}``
            (the message names the files looked for).
    """
    folder = Path(box_dir).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"box_dir does not exist: {folder}")
    out = []
    for item in items:
        image = item["image"] if isinstance(item["image"], (str, Path)) else item["image"][0]
        candidates = [folder / f"{_stem(image)}_boxes{suffix}" for suffix in BOX_SUFFIXES]
        found = [c for c in candidates if c.is_file()]
        if not found:
            raise FileNotFoundError(f"no box file for {image}; looked for {[str(c) for c in candidates]}")
        out.append({**item, key: str(found[0])})
    return out


def read_box_json(path: str | Path, spatial_shape: Sequence[int], num_classes: int) -> np.ndarray:
    """The boxes ``(N, 1 + 2·N_s)`` of a JSON box file, checked against the image grid ``spatial_shape``."""
    path = Path(path)
    try:
        content = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"box file {path} is not readable JSON: {error}") from error
    entries = content.get("boxes") if isinstance(content, dict) else None
    if not isinstance(entries, list):
        raise ValueError(
            f'box file {path} must hold {{"boxes": [{{"class": k, "box": [...]}}, ...]}}, got {content!r:.200}'
        )
    dims = len(spatial_shape)
    rows = []
    for index, entry in enumerate(entries):
        box = entry.get("box") if isinstance(entry, dict) else None
        cls = entry.get("class") if isinstance(entry, dict) else None
        if not isinstance(box, list) or len(box) != 2 * dims or not isinstance(cls, int) or isinstance(cls, bool):
            raise ValueError(
                f"box file {path}: box {index} must be {{'class': int, 'box': [{2 * dims} integers]}} "
                f"for a {dims}D image, got {entry!r}"
            )
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in box):
            raise ValueError(f"box file {path}: box {index} has non-integer coordinates {box}")
        rows.append([cls, *box])
    return check_boxes(np.asarray(rows).reshape(-1, 1 + 2 * dims), spatial_shape, num_classes, f"box file {path}")


def read_box_mask(path: str | Path, num_classes: int, box_dims: int = 2, reference: Any = None, atol: float = 1e-3):
    """The boxes ``(N, 1 + 2·N_s)`` of a box mask (label map), and its spatial shape.

    Args:
        path: the mask file (NIfTI or MHD).
        num_classes: K; mask values must lie in 0..K-1.
        box_dims: 2: regions of each slice along the last axis; 3: regions of the volume.
        reference: ``(affine 4x4, spatial shape)`` of the image the mask must match, or ``None``.
        atol: largest affine difference allowed (mm).
    """
    mask = LoadImage(image_only=True)(str(path))
    array = np.rint(np.asarray(mask)).astype(np.int64)
    if reference is not None:
        affine, shape = reference
        if tuple(array.shape) != tuple(int(s) for s in shape):
            raise ValueError(f"box mask {path} has shape {array.shape}, its image {tuple(shape)}")
        diff = float(np.abs(np.asarray(mask.affine) - np.asarray(affine)).max())
        if diff > atol:
            raise ValueError(f"box mask {path} and its image have different affines (max difference {diff:.4g} mm)")
    bad = np.setdiff1d(np.unique(array), np.arange(num_classes))
    if bad.size:
        raise ValueError(f"box mask {path} holds values {bad[:10].tolist()} outside the classes 0..{num_classes - 1}")
    rows = []
    slices = (
        [(None, array)] if array.ndim == 2 or box_dims == 3 else [(z, array[..., z]) for z in range(array.shape[-1])]
    )
    for cls in range(1, num_classes):
        for z, part in slices:
            regions, _ = ndimage.label(part == cls)
            for number, found in enumerate(ndimage.find_objects(regions), start=1):
                lo = [s.start for s in found] + ([] if z is None else [z])
                hi = [s.stop for s in found] + ([] if z is None else [z + 1])
                if not (regions[found] == number).all():
                    raise ValueError(
                        f"box mask {path}: the class-{cls} region with bounding box lo {lo}, hi {hi} is not a filled "
                        "box (boxes of two classes overlap, or boxes of one class touch: a label map cannot hold "
                        "them; give such boxes as JSON)"
                    )
                rows.append([cls, *lo, *hi])
    return np.asarray(rows, np.int64).reshape(-1, 1 + 2 * array.ndim), array.shape


class BoxFilesd(MapTransform):
    """Box file of each item (``d[key]``, JSON or box mask) → box-id map ``d[output_key]`` on the training grid.

    The file's boxes are checked on the grid of the image file (shape ``meta["spatial_shape"]``, affine
    ``meta["original_affine"]`` of ``d[image_key]``), drawn with :func:`wss_monai.transforms.boxes_to_ids`,
    and the map is resized with nearest-neighbour interpolation to ``d[image_key]``'s current grid.

    Args:
        keys: key of the box file path (e.g. from :func:`attach_box_files`).
        num_classes: K.
        box_dims: 2 or 3 (see :func:`read_box_mask`, :func:`wss_monai.transforms.boxes_to_ids`).
        image_key: the loaded (and resized) image.
        output_key: key of the box-id map ``(K - 1, *spatial)``.
    """

    def __init__(
        self,
        keys: KeysCollection = "box_file",
        *,
        num_classes: int,
        box_dims: int = 2,
        image_key: str = "image",
        output_key: str = "box_ids",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.num_classes = check_int("num_classes", num_classes, 2)
        self.box_dims = check_spatial_dims(box_dims)
        self.image_key, self.output_key = image_key, output_key

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            path = Path(str(d[key]))
            image = d[self.image_key]
            meta = getattr(image, "meta", {})
            shape = tuple(int(s) for s in np.asarray(meta.get("spatial_shape", image.shape[1:])).ravel())
            if not path.is_file():
                raise FileNotFoundError(f"box file does not exist: {path}")
            if path.suffix == ".json":
                boxes = read_box_json(path, shape, self.num_classes)
            else:
                affine = meta.get("original_affine")
                reference = None if affine is None else (affine, shape)
                boxes, shape = read_box_mask(path, self.num_classes, self.box_dims, reference)
            ids = torch.as_tensor(boxes_to_ids(boxes, shape, self.num_classes, self.box_dims))
            if tuple(ids.shape[1:]) != tuple(image.shape[1:]):
                ids = Resize(tuple(image.shape[1:]), mode="nearest")(ids)
            logger.debug("%d boxes from %s", len(boxes), path)
            d[self.output_key] = to_input_type(np.asarray(ids, dtype=np.float32), image)
        return d
