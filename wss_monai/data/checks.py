"""Checks on a dataset's files, so that bad input fails early with the file and the values named.

Example:
    >>> import numpy as np
    >>> assert_finite(np.array([0.0, np.nan, np.inf]), "logits")
    Traceback (most recent call last):
        ...
    ValueError: logits contains 2 NaN/inf values
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

__all__ = ["EmptyScribbleError", "assert_finite", "check_case", "validate_cases"]

logger = logging.getLogger(__name__)

ON_EMPTY_SCRIBBLE = ("exclude", "raise")
SCRIBBLE_DISAGREEMENT_WARNING = 0.01
"""Fraction of scribble voxels that may disagree with the ground truth before a warning is given."""


class EmptyScribbleError(ValueError):
    """A scribble volume without a single annotated voxel (callers may choose to drop the case)."""


def assert_finite(array: Any, name: str) -> None:
    """Raise ``ValueError("<name> contains N NaN/inf values")`` if ``array`` is not all finite.

    Args:
        array: a numpy array, a torch tensor (any device) or anything ``numpy.asarray`` accepts.
        name: how to call the array in the message (e.g. ``"image /data/case1.nii.gz"``).
    """
    if hasattr(array, "detach") and hasattr(array, "isfinite"):  # torch tensor, without importing torch
        bad = int((~array.detach().isfinite()).sum().item())
    else:
        array = np.asarray(array)
        if not np.issubdtype(array.dtype, np.inexact):
            return
        bad = int(np.count_nonzero(~np.isfinite(array)))
    if bad:
        raise ValueError(f"{name} contains {bad} NaN/inf values")


def _load(path: str) -> nib.spatialimages.SpatialImage:
    """The image header of ``path``; an unreadable file raises an error naming it."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        return nib.load(str(path))
    except Exception as error:
        raise ValueError(f"cannot read {path}: {type(error).__name__}: {error}") from error


def _data(image: nib.spatialimages.SpatialImage, path: str) -> np.ndarray:
    """The voxels of ``image``; a truncated or corrupt file (EOFError, zlib errors) raises an error naming ``path``."""
    try:
        return np.asanyarray(image.dataobj)
    except Exception as error:
        raise ValueError(
            f"cannot read the voxels of {path} (truncated or corrupt file?): {type(error).__name__}: {error}"
        ) from error


def _compare_geometry(
    reference: nib.spatialimages.SpatialImage,
    ref_path: str,
    other: nib.spatialimages.SpatialImage,
    other_path: str,
    what: str,
    atol: float,
) -> None:
    if tuple(reference.shape) != tuple(other.shape):
        raise ValueError(
            f"{what} shape mismatch: {ref_path} has shape {tuple(reference.shape)} but {other_path} "
            f"has shape {tuple(other.shape)}"
        )
    difference = float(np.max(np.abs(np.asarray(reference.affine) - np.asarray(other.affine))))
    if not difference <= atol:  # also catches NaN affines
        raise ValueError(
            f"{what} affine mismatch: {ref_path} and {other_path} differ by up to {difference:.6g} (atol={atol})"
        )


def _format_values(values: Sequence) -> str:
    shown = [v.item() if hasattr(v, "item") else v for v in list(values)[:20]]
    more = f" ... ({len(values)} in all)" if len(values) > 20 else ""
    return f"{shown}{more}"


def check_case(case: dict, num_classes: int, scribble_unlabelled: int | None = 4, atol: float = 1e-3) -> list[str]:
    """Load one case and check that image, label and scribble fit together.

    Args:
        case: ``{"image": path, "label": path[, "scribble": path]}`` (extra keys are ignored).
        num_classes: label values must lie in ``range(num_classes)``.
        scribble_unlabelled: value of the non-annotated scribble voxels, or ``None`` when the
            scribble file has no such value (every voxel then holds a class index).
        atol: largest absolute difference allowed between the affines.

    Returns:
        Warnings that do not stop the case from being used (e.g. classes absent from the label);
        possibly empty.

    Raises:
        ValueError: a required key is missing, image and label (or scribble) differ in shape or
            affine, label or scribble values are out of range, the image holds NaN/inf, or a file cannot be
            read (a corrupt header, truncated voxels); the message names the file.
        EmptyScribbleError: the scribble has no annotated voxel.
        FileNotFoundError: a file does not exist.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, not {num_classes}")
    missing = [key for key in ("image", "label") if key not in case]
    if missing:
        raise ValueError(f"case is missing the keys {missing}: {case}")
    warnings: list[str] = []
    image_path, label_path = str(case["image"]), str(case["label"])
    image, label = _load(image_path), _load(label_path)
    _compare_geometry(image, image_path, label, label_path, "image/label", atol)

    image_data = _data(image, image_path)
    assert_finite(image_data, f"image {image_path}")
    if image_data.size and np.ptp(image_data) == 0:
        warnings.append(f"image {image_path} is constant ({image_data.flat[0].item()})")

    label_data = _data(label, label_path)
    label_values = np.unique(label_data)
    allowed = np.arange(num_classes)
    bad = label_values[~np.isin(label_values, allowed)]
    if bad.size:
        raise ValueError(f"label {label_path} has values {_format_values(bad)} outside range({num_classes})")
    absent = sorted(set(range(num_classes)) - {int(v) for v in label_values})
    if absent:
        warnings.append(f"label {label_path} lacks the classes {absent}")

    if "scribble" in case and case["scribble"] is not None:
        scribble_path = str(case["scribble"])
        scribble = _load(scribble_path)
        _compare_geometry(image, image_path, scribble, scribble_path, "image/scribble", atol)
        scribble_data = _data(scribble, scribble_path)
        scribble_values = np.unique(scribble_data)
        allowed_scribble = allowed if scribble_unlabelled is None else np.append(allowed, scribble_unlabelled)
        bad = scribble_values[~np.isin(scribble_values, allowed_scribble)]
        if bad.size:
            raise ValueError(
                f"scribble {scribble_path} has values {_format_values(bad)} outside range({num_classes}) "
                f"and the unlabelled value {scribble_unlabelled}"
            )
        if scribble_unlabelled is None:
            annotated = np.ones(scribble_data.shape, bool)
        else:
            annotated = scribble_data != scribble_unlabelled
        num_annotated = int(np.count_nonzero(annotated))
        if num_annotated == 0:
            raise EmptyScribbleError(
                f"scribble {scribble_path} is empty: every voxel holds the unlabelled value {scribble_unlabelled}"
            )
        disagree = np.count_nonzero(scribble_data[annotated] != label_data[annotated]) / num_annotated
        if disagree > SCRIBBLE_DISAGREEMENT_WARNING:
            warnings.append(
                f"scribble {scribble_path} disagrees with label {label_path} on {disagree:.1%} of its "
                f"{num_annotated} annotated voxels"
            )
    return warnings


def validate_cases(
    cases: Sequence[dict], num_classes: int, scribble_unlabelled: int | None = 4, on_empty_scribble: str = "exclude"
) -> list[dict]:
    """Run :func:`check_case` on every case, logging its warnings.

    Args:
        cases: case dictionaries (see :func:`check_case`).
        num_classes: number of label classes.
        scribble_unlabelled: value of non-annotated scribble voxels (``None``: no such value).
        on_empty_scribble: ``"exclude"`` drops cases whose scribble is empty (a warning names the
            file); ``"raise"`` lets the :class:`EmptyScribbleError` propagate.

    Returns:
        The cases kept, in input order.

    Raises:
        ValueError: ``on_empty_scribble`` is not ``"exclude"`` or ``"raise"``, or any case fails a
            check other than the empty-scribble one.
    """
    if on_empty_scribble not in ON_EMPTY_SCRIBBLE:
        raise ValueError(f"on_empty_scribble must be one of {ON_EMPTY_SCRIBBLE}, not {on_empty_scribble!r}")
    kept = []
    for case in cases:
        try:
            warnings = check_case(case, num_classes=num_classes, scribble_unlabelled=scribble_unlabelled)
        except EmptyScribbleError as error:
            if on_empty_scribble == "raise":
                raise
            logger.warning("excluding case %s: %s", case.get("image"), error)
            continue
        for warning in warnings:
            logger.warning(warning)
        kept.append(case)
    logger.info("validated %d cases: %d kept, %d excluded", len(cases), len(kept), len(cases) - len(kept))
    return kept
