"""Annotators' boxes to the project's box form: one class index inside each box, 0 (background) outside.

A box arrives as a mask volume (the class index inside the box, 0 elsewhere: a box painted in
Slicer) or as JSON::

    {"boxes": [{"label": 3, "start": [x0, y0, z0], "end": [x1, y1, z1]}, ...]}

(voxel indices of the image, ``end`` inclusive; ``label`` a class index or name). The project's form
is that mask with every voxel outside all boxes certain background (REFERENCE §1). Training on
boxes needs the box recipe (``configs/supervision/boxes.yaml``); :func:`box_recipe` finds it or
says that it is not there.

Example:
    >>> mask = boxes_from_json({"boxes": [{"label": "lv", "start": [1, 1, 0], "end": [2, 2, 0]}]},
    ...                        shape=(4, 4, 1), class_names=["background", "lv"])
    >>> mask[..., 0].tolist()
    [[0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from wss_monai.paths import repository_root

__all__ = ["BOX_RECIPES", "box_recipe", "boxes_from_json"]

BOX_RECIPES = ("configs/supervision/boxes.yaml", "configs/supervision/box.yaml")
"""Where the box recipe is looked for, in order."""


def _class_index(label, class_names: Sequence[str]) -> int:
    if isinstance(label, str) and not label.isdigit():
        if label not in class_names:
            raise ValueError(f"box label {label!r} is not a class name: {list(class_names)}")
        return list(class_names).index(label)
    index = int(label)
    if not 0 < index < len(class_names):
        raise ValueError(f"box label {index} must be a foreground class in 1..{len(class_names) - 1}")
    return index


def boxes_from_json(boxes: Mapping, shape: Sequence[int], class_names: Sequence[str]) -> np.ndarray:
    """The box mask (uint8, ``shape``) of a JSON box annotation (see the module).

    Raises:
        ValueError: no ``"boxes"`` list, a corner outside the image, ``start`` after ``end``, an unknown class.
    """
    items = boxes.get("boxes") if isinstance(boxes, Mapping) else None
    if not isinstance(items, list) or not items:
        raise ValueError('box JSON must hold a non-empty list "boxes" of {"label", "start", "end"}')
    mask = np.zeros(tuple(shape), dtype=np.uint8)
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
        mask[tuple(slice(s, e + 1) for s, e in zip(start, end))] = label
    return mask


def box_recipe(root: str | Path | None = None) -> Path:
    """The box recipe's file.

    Raises:
        FileNotFoundError: none of :data:`BOX_RECIPES` exists yet; the message says what to do meanwhile.
    """
    root = Path(root) if root is not None else repository_root()
    for name in BOX_RECIPES:
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(
        f"no box recipe ({' or '.join(BOX_RECIPES)}) in {root}: training from boxes waits for it. The boxes "
        "are kept in the datastore (tag 'boxes'); train from scribbles or full labels meanwhile"
    )
