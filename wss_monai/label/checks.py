"""Checks of what an annotator uploads, before anything reaches the datastore.

A label that cannot be read (a truncated upload), that has another grid than its image, or that holds
values the label kind does not allow is refused with a :class:`LabelCheckError`, which the server
answers with 422 and the message; the datastore is left as it was.

Example:
    >>> import numpy as np
    >>> check_values(np.array([0, 1, 3]), allowed=range(4), what="final label")
    >>> check_values(np.array([0, 9]), allowed=range(4), what="final label")
    Traceback (most recent call last):
    ...
    wss_monai.label.checks.LabelCheckError: final label holds values [9] outside the allowed [0, 1, 2, 3]
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import nibabel as nib
import numpy as np

__all__ = ["LabelCheckError", "check_same_grid", "check_values", "read_volume"]

logger = logging.getLogger(__name__)


class LabelCheckError(ValueError):
    """An uploaded image or label is unusable; ``status`` is the HTTP status the server answers."""

    status = 422


def read_volume(path: str | Path, what: str = "label") -> tuple[np.ndarray, np.ndarray]:
    """``(data, affine)`` of a NIfTI file, read in full (a truncated file fails here, not later).

    Raises:
        LabelCheckError: the file is missing, not NIfTI, or truncated.
    """
    try:
        volume = nib.load(str(path))
        data = np.asanyarray(volume.dataobj)
    except Exception as error:  # nibabel raises many types for broken files (EOFError, zlib, ImageFileError)
        raise LabelCheckError(f"{what} {Path(path).name!r} cannot be read as NIfTI: {error}") from error
    return data, np.asarray(volume.affine)


def check_same_grid(shape, affine, image_shape, image_affine, what: str = "label", atol: float = 1e-3) -> None:
    """The label's spatial shape (a trailing singleton channel allowed) and affine match the image's.

    Raises:
        LabelCheckError: naming both shapes, or the largest affine difference.
    """
    shape, image_shape = tuple(shape), tuple(image_shape)
    spatial = shape[:-1] if len(shape) == len(image_shape) + 1 and shape[-1] == 1 else shape
    if spatial != image_shape[: len(spatial)] or len(spatial) != len(image_shape):
        raise LabelCheckError(f"{what} of shape {shape} does not match its image of shape {image_shape}")
    difference = float(np.abs(np.asarray(affine) - np.asarray(image_affine)).max())
    if difference > atol:
        raise LabelCheckError(f"{what} affine differs from its image's by up to {difference:.3g}: another grid")


def check_values(data: np.ndarray, allowed: Iterable[int], what: str = "label") -> None:
    """Every value of ``data`` is one of ``allowed`` (integers).

    Raises:
        LabelCheckError: listing (up to 10 of) the values outside ``allowed``.
    """
    data = np.asarray(data)
    allowed = sorted(int(a) for a in allowed)
    if data.dtype.kind == "f" and (not np.isfinite(data).all() or (data != np.round(data)).any()):
        raise LabelCheckError(f"{what} holds non-integer values")
    unknown = sorted(set(np.unique(data).astype(np.int64).tolist()) - set(allowed))
    if unknown:
        raise LabelCheckError(f"{what} holds values {unknown[:10]} outside the allowed {allowed}")
