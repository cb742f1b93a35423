"""Image-level tags read from a JSON file instead of being derived from a full label.

The file maps each case (its image file name without the ``.nii.gz`` / ``.nii`` / ``.mha`` …
extension, e.g. ``patient001_frame01``) to the classes it holds: per 2D slice, a list with one list
of class indices per slice along the last axis; per 3D volume, one list of class indices::

    {"patient001_frame01": [[0], [0, 1, 2, 3], [0, 2, 3]]}     # spatial_dims = 2
    {"patient001_frame01": [0, 1, 2, 3]}                       # spatial_dims = 3

The output has the layout of :class:`wss_monai.transforms.ImageTags` (``(K, D)`` or ``(K,)``), so the
two sources can be swapped in a recipe.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform

from wss_monai.transforms._slices import check_int, check_spatial_dims, source_name, to_input_type
from wss_monai.transforms.input_checks import check_one_image_key

__all__ = ["TagsFromFile", "TagsFromFiled", "case_name"]

_EXTENSIONS = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".gz")


def case_name(path: str | os.PathLike) -> str:
    """The file name without directory and image extension: ``/d/p1_frame01.nii.gz`` → ``p1_frame01``."""
    name = Path(str(path)).name
    for ext in _EXTENSIONS:
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


class TagsFromFile(Transform):
    """Tags of an image from a JSON tag file (format in the module docstring), checked against the image.

    Args:
        tags_file: the JSON file.
        num_classes: number of classes K of the bundle.
        spatial_dims: 2 (one class list per slice, output ``(K, D)``) or 3 (one list, output ``(K,)``).

    Raises (when called):
        ValueError: the case is not in the file; a class index outside ``[0, K - 1]`` (a class the
            bundle does not have); a slice count that differs from the image's depth; a slice or
            volume with no tag at all. Each message names the file, the case and the slice.

    Example:
        >>> import json, tempfile, os, numpy as np
        >>> path = os.path.join(tempfile.mkdtemp(), "tags.json")
        >>> _ = open(path, "w").write(json.dumps({"p1": [[0], [0, 2]]}))
        >>> TagsFromFile(path, num_classes=3)(np.zeros((1, 4, 4, 2)), case="p1").tolist()
        [[1.0, 1.0], [0.0, 0.0], [0.0, 1.0]]
    """

    def __init__(self, tags_file: str | os.PathLike, num_classes: int, spatial_dims: int = 2) -> None:
        self.num_classes = check_int("num_classes", num_classes, 2)
        self.spatial_dims = check_spatial_dims(spatial_dims)
        self.path = Path(str(tags_file))
        if not self.path.is_file():
            raise FileNotFoundError(f"tags_file {str(self.path)!r} does not exist")
        try:
            table = json.loads(self.path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"tags_file {str(self.path)!r} is not valid JSON: {error}") from error
        if not isinstance(table, dict):
            raise ValueError(f"tags_file {str(self.path)!r} must hold a JSON object {{case: tags}}, got {type(table)}")
        self.table = table

    def _vector(self, classes: Any, where: str) -> np.ndarray:
        if not isinstance(classes, list) or not all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
            raise ValueError(f"tags_file {str(self.path)!r}: {where} must be a list of class indices, got {classes!r}")
        if not classes:
            raise ValueError(f"tags_file {str(self.path)!r}: {where} has no tag at all (list at least the background)")
        bad = sorted({c for c in classes if not 0 <= c < self.num_classes})
        if bad:
            raise ValueError(
                f"tags_file {str(self.path)!r}: {where} lists class(es) {bad}, which the bundle does not have "
                f"(num_classes={self.num_classes}, classes 0..{self.num_classes - 1})"
            )
        vector = np.zeros(self.num_classes, dtype=np.float32)
        vector[classes] = 1.0
        return vector

    def __call__(self, image: Any, case: str | None = None) -> Any:
        """Args: image ``(C, H, W[, D])``; case: its name (default: from the MetaTensor's file name).

        Returns: ``(K, D)`` (2D, per slice) or ``(K,)`` float32 tags.
        """
        source = case or source_name(image)
        if source is None:
            raise ValueError("TagsFromFile needs the case name: pass case= or an image loaded with its file name")
        name = case_name(source)
        if name not in self.table:
            raise ValueError(f"tags_file {str(self.path)!r} has no entry for case {name!r}")
        entry = self.table[name]
        if self.spatial_dims == 3 or image.ndim == 3:
            return to_input_type(self._vector(entry, f"case {name!r}"), image, spatial=False)
        depth = image.shape[-1]
        if not isinstance(entry, list) or not all(isinstance(s, list) for s in entry):
            raise ValueError(
                f"tags_file {str(self.path)!r}: case {name!r} must hold one list of classes per slice, got {entry!r}"
            )
        if len(entry) != depth:
            raise ValueError(
                f"tags_file {str(self.path)!r}: case {name!r} lists {len(entry)} slices but the image has {depth}"
            )
        tags = np.stack([self._vector(s, f"case {name!r} slice {z}") for z, s in enumerate(entry)], -1)
        return to_input_type(tags, image, spatial=False)


class TagsFromFiled(MapTransform):
    """Dictionary wrapper of :class:`TagsFromFile`: ``d[output_key] = TagsFromFile(...)(d[key])``.

    Args:
        keys: key of the image whose file name names the case (one key).
        tags_file, num_classes, spatial_dims: see :class:`TagsFromFile`.
        output_key: key of the tags.
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        *,
        tags_file: str | os.PathLike,
        num_classes: int,
        spatial_dims: int = 2,
        output_key: str = "tags",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        check_one_image_key(self.keys, output_key)
        self.output_key = output_key
        self.transform = TagsFromFile(tags_file, num_classes, spatial_dims)

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.output_key] = self.transform(d[key])
        return d
