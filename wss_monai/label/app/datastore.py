"""MONAI Label's local datastore with every upload checked before it is stored.

``PUT /datastore/label`` copies any file into the datastore; here a label is first read in full
(a truncated upload fails), compared with its image's grid, and its values checked for its tag:
class indices for ``final`` (and any tag not named below), the scribble convention's values for
``scribbles``, class indices for ``boxes`` with every region a filled box
(:func:`wss_monai.label.boxes.check_box_mask`). A ``boxes`` upload may also be a ``.json`` box annotation
(:func:`wss_monai.label.boxes.check_box_json`: classes by index or name, corners inside the image), the
form for boxes of two classes that overlap. ``PUT /datastore/`` (an image) is read in full too. A
refused upload answers 422 (404 for an unknown image) and leaves the datastore as it was.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import nibabel as nib
from monailabel.datastore.local import LocalDatastore

from wss_monai.label.app.errors import not_found, unprocessable
from wss_monai.label.boxes import check_box_json, check_box_mask
from wss_monai.label.checks import LabelCheckError, check_same_grid, check_values, read_volume
from wss_monai.label.scribbles import ScribbleConvention

__all__ = ["CheckedDatastore", "SCRIBBLES_TAG", "BOXES_TAG"]

logger = logging.getLogger(__name__)

SCRIBBLES_TAG = "scribbles"
"""The label tag of annotators' scribbles."""
BOXES_TAG = "boxes"
"""The label tag of box masks."""


class CheckedDatastore(LocalDatastore):
    """A :class:`LocalDatastore` that refuses unusable uploads (see the module).

    Args:
        datastore_path: the studies folder.
        num_classes: ``K`` of the served bundle.
        convention: builds the scribble convention of an upload from its label info (the ``params`` of the request).
        class_names: the bundle's class names, for box JSON naming classes (``None``: indices only).
        kwargs: passed to :class:`LocalDatastore`.
    """

    def __init__(self, datastore_path: str, num_classes: int, convention: Callable[[dict], ScribbleConvention],
                 class_names: Sequence[str] | None = None, **kwargs):  # fmt: skip
        super().__init__(datastore_path, **kwargs)
        self.num_classes = num_classes
        self.convention = convention
        self.class_names = list(class_names) if class_names is not None else [str(k) for k in range(num_classes)]

    def _allowed(self, tag: str, info: dict) -> list[int]:
        if tag == SCRIBBLES_TAG:
            try:
                return sorted(self.convention(info).mapping)
            except ValueError as error:
                raise unprocessable(f"scribble convention: {error}") from error
        return list(range(self.num_classes))

    def _check_label(self, label_filename: str, image_uri: str, label_tag: str, info: dict, what: str) -> None:
        """Raises :class:`LabelCheckError` for an unusable label of the tag ``label_tag`` (see the module)."""
        if label_tag == BOXES_TAG:  # a box mask is checked on its grid, for class values and filled boxes at once
            if str(label_filename).endswith(".json"):
                check_box_json(label_filename, image_uri, self.class_names, what)
            else:
                check_box_mask(label_filename, image_uri, self.num_classes, what=what)
            return
        data, affine = read_volume(label_filename, f"{label_tag} label")
        image = nib.load(image_uri)
        check_same_grid(data.shape, affine, image.shape[:3], image.affine, what)
        check_values(data, self._allowed(label_tag, info), what)

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict) -> str:
        """Checks the label (see the module), then stores it; raises 404 / 422 ``HTTPException`` otherwise."""
        image_uri = self.get_image_uri(image_id) if image_id in self.list_images() else ""
        if not image_uri:
            raise not_found(f"image {image_id!r} is not in the datastore")
        info = dict(label_info or {})
        try:
            self._check_label(label_filename, image_uri, label_tag, info, f"{label_tag} label of {image_id!r}")
        except LabelCheckError as error:
            logger.warning("refused a %s label of %s: %s", label_tag, image_id, error)
            raise unprocessable(str(error)) from error
        return super().save_label(image_id, label_filename, label_tag, info)

    def add_image(self, image_id: str, image_filename: str, image_info: dict) -> str:
        """Reads the image in full before storing it; raises a 422 ``HTTPException`` for an unreadable one."""
        try:
            data, _ = read_volume(image_filename, "image")
        except LabelCheckError as error:
            raise unprocessable(str(error)) from error
        if data.ndim not in (3, 4):
            raise unprocessable(f"image must be a 3D volume, got shape {data.shape}")
        return super().add_image(image_id, image_filename, image_info)
