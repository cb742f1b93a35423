"""Annotators' boxes to the box recipe's files: box masks, box JSON, and the tight boxes of full labels.

A box arrives as a mask volume (the class index inside the box, 0 elsewhere: a box painted in
Slicer, saved with the tag ``boxes``) or as JSON::

    {"boxes": [{"label": 3, "start": [x0, y0, z0], "end": [x1, y1, z1]}, ...]}

(voxel indices of the image, ``end`` inclusive; ``label`` a class index or name). Every voxel outside
all boxes is certain background (REFERENCE §1). The box recipe (``configs/supervision/boxes.yaml``
with ``box_source: files``, :data:`BOX_RECIPE`) reads one box file per image, a box mask or its own
JSON form ``{"boxes": [{"class": k, "box": [lo..., hi...]}]}`` (half-open); this module writes them:

- :func:`boxes_from_json`: JSON → box mask (what the label app stores);
- :func:`box_file_json`: JSON → the recipe's JSON, which keeps boxes of two classes that overlap (a
  mask cannot: ACDC's LV box lies inside the myocardium's);
- :func:`check_box_mask`: a stored mask on its image's grid, class indices only, each region a filled box;
- :func:`check_box_json`: a stored JSON box annotation → the recipe's JSON, checked on its image's grid;
- :func:`tight_box_json`: a full label → the recipe's JSON of its tight boxes (a full label in a box run).

Example:
    >>> mask = boxes_from_json({"boxes": [{"label": "lv", "start": [1, 1, 0], "end": [2, 2, 0]}]},
    ...                        shape=(4, 4, 1), class_names=["background", "lv"])
    >>> mask[..., 0].tolist()
    [[0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]]
    >>> box_file_json({"boxes": [{"label": "lv", "start": [1, 1, 0], "end": [2, 2, 0]}]}, (4, 4, 1), ["bg", "lv"])
    {'boxes': [{'class': 1, 'box': [1, 1, 0, 3, 3, 1]}]}
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from wss_monai.label.checks import LabelCheckError, check_same_grid, check_values, read_volume
from wss_monai.transforms.box_files import read_box_mask
from wss_monai.transforms.boxes import tight_boxes

__all__ = ["BOX_RECIPE", "box_file_json", "boxes_from_json", "check_box_json", "check_box_mask", "tight_box_json"]

BOX_RECIPE = "configs/supervision/boxes.yaml"
"""The box recipe a datastore with boxes trains through (``box_source: files``)."""


def _class_index(label, class_names: Sequence[str]) -> int:
    if isinstance(label, str) and not label.isdigit():
        if label not in class_names:
            raise ValueError(f"box label {label!r} is not a class name: {list(class_names)}")
        return list(class_names).index(label)
    index = int(label)
    if not 0 < index < len(class_names):
        raise ValueError(f"box label {index} must be a foreground class in 1..{len(class_names) - 1}")
    return index


def _parse_boxes(boxes: Mapping, shape: Sequence[int], class_names: Sequence[str]) -> list[tuple[int, list, list]]:
    """``[(class index, start, end inclusive), ...]`` of a JSON box annotation, checked against ``shape``."""
    items = boxes.get("boxes") if isinstance(boxes, Mapping) else None
    if not isinstance(items, list) or not items:
        raise ValueError('box JSON must hold a non-empty list "boxes" of {"label", "start", "end"}')
    parsed = []
    for number, box in enumerate(items):
        try:
            start, end = [int(v) for v in box["start"]], [int(v) for v in box["end"]]
            label = _class_index(box["label"], class_names)
        except (KeyError, TypeError) as error:
            raise ValueError(f"box {number} must have label, start and end: {box!r}") from error
        if len(start) != len(shape) or len(end) != len(shape):
            raise ValueError(f"box {number}: start and end need {len(shape)} indices, got {start}, {end}")
        if any(s < 0 or e >= n or s > e for s, e, n in zip(start, end, shape)):
            raise ValueError(f"box {number}: {start}..{end} is empty or outside the image of shape {tuple(shape)}")
        parsed.append((label, start, end))
    return parsed


def boxes_from_json(boxes: Mapping, shape: Sequence[int], class_names: Sequence[str]) -> np.ndarray:
    """The box mask (uint8, ``shape``) of a JSON box annotation (see the module); later boxes drawn over earlier ones.

    Raises:
        ValueError: no ``"boxes"`` list, a corner outside the image, ``start`` after ``end``, an unknown class.
    """
    mask = np.zeros(tuple(shape), dtype=np.uint8)
    for label, start, end in _parse_boxes(boxes, shape, class_names):
        mask[tuple(slice(s, e + 1) for s, e in zip(start, end))] = label
    return mask


def box_file_json(boxes: Mapping, shape: Sequence[int], class_names: Sequence[str]) -> dict:
    """The box recipe's JSON (``{"boxes": [{"class", "box": [lo..., hi...]}]}``, half-open) of a JSON box annotation.

    Raises:
        ValueError: as :func:`boxes_from_json`.
    """
    parsed = _parse_boxes(boxes, shape, class_names)
    return {"boxes": [{"class": label, "box": [*start, *[e + 1 for e in end]]} for label, start, end in parsed]}


def tight_box_json(label: np.ndarray, num_classes: int, box_dims: int = 2) -> dict:
    """The recipe's JSON of the tight boxes of a full label ``(H, W, D)``: one per connected region of each class.

    With ``box_dims`` 2, regions (and boxes) of each slice along the last axis; 3: of the volume.
    """
    rows = tight_boxes(np.asarray(label).astype(np.int64), num_classes=num_classes, box_dims=box_dims)
    return {"boxes": [{"class": int(row[0]), "box": [int(v) for v in row[1:]]} for row in rows]}


def check_box_mask(path: str | Path, image_path: str | Path, num_classes: int, box_dims: int = 2,
                   what: str = "boxes") -> np.ndarray:  # fmt: skip
    """The box mask at ``path`` ``(H, W, D)``, checked as the box recipe will read it.

    Args:
        path: the stored mask.
        image_path: its image (the grid it must share).
        num_classes: K; the mask holds class indices 0..K-1.
        box_dims: 2: each region of a class in each slice must be a filled box; 3: each region of the volume.
        what: names the mask in messages (e.g. ``"boxes of patient001"``).

    Raises:
        LabelCheckError: unreadable, another grid than the image's, values that are not class indices, or a
            region that is not a filled box (boxes of two classes overlap: give those as JSON).
    """
    data, affine = read_volume(path, what)
    image = nib.load(str(image_path))
    check_same_grid(data.shape, affine, image.shape[:3], image.affine, what)
    check_values(data, range(num_classes), what)
    data = np.asarray(data).reshape(image.shape[:3])
    try:
        read_box_mask(path, num_classes, box_dims)
    except ValueError as error:
        raise LabelCheckError(f"{what}: {error}") from error
    return data


def check_box_json(path: str | Path, image_path: str | Path, class_names: Sequence[str], what: str = "boxes") -> dict:
    """The recipe's JSON (:func:`box_file_json`) of the JSON box annotation at ``path``, on its image's grid.

    Raises:
        LabelCheckError: not readable JSON, or a box that :func:`box_file_json` refuses (an unknown class, a
            corner outside the image, ``start`` after ``end``), with ``what`` and the file named.
    """
    shape = nib.load(str(image_path)).shape[:3]
    try:
        return box_file_json(json.loads(Path(path).read_text()), shape, class_names)
    except (OSError, UnicodeDecodeError, ValueError) as error:  # json.JSONDecodeError is a ValueError
        raise LabelCheckError(f"{what} ({Path(path).name}): {error}") from error
