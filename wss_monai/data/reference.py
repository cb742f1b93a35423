"""Size bounds measured on a reference patient, for the "common bounds" supervision."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from monai.transforms import Compose, EnsureChannelFirst, LoadImage, Resize

logger = logging.getLogger("wss_monai.data")

__all__ = ["reference_size_bounds"]


def reference_size_bounds(
    cases: Sequence[dict],
    num_classes: int,
    spatial_size: int | None = None,
    margin: float = 0.1,
    patient: str | None = None,
    label_key: str = "label",
    spatial_dims: int = 2,
) -> np.ndarray:
    """Common size bounds ``(num_classes, 2)`` from every frame of one reference patient.

    The labels of that patient are loaded, resized in-plane to ``spatial_size`` with nearest
    neighbour (as for training, so the sizes are in training voxels), and
    :func:`wss_monai.transforms.common_size_bounds` takes each class's smallest and largest
    non-empty slice size (``spatial_dims=2``) or volume (``spatial_dims=3``) times ``1 - margin`` and
    ``1 + margin`` (Kervadec et al., MedIA 2019).

    Args:
        cases: datalist entries with ``label_key`` and ``"patient"``.
        num_classes: number of classes.
        spatial_size: training in-plane size, or ``None`` for the native grid.
        margin: relative widening of the bounds.
        patient: the reference patient; ``None`` takes the patient of the first case.
        label_key: key of the label file in each case.
        spatial_dims: 2 for slice sizes, 3 for volume sizes.
    """
    from wss_monai.transforms import common_size_bounds

    if not cases:
        raise ValueError("cases is empty: no reference patient to measure")
    patient = cases[0].get("patient") if patient is None else patient
    frames = [c for c in cases if c.get("patient") == patient]
    if not frames:
        raise ValueError(f"no case of patient {patient!r} among the {len(cases)} cases given")
    steps = [LoadImage(image_only=True), EnsureChannelFirst()]
    if spatial_size is not None:
        steps.append(Resize((spatial_size, spatial_size, -1), mode="nearest"))
    load = Compose(steps)
    labels = [np.asarray(load(c[label_key])) for c in frames]
    bounds = common_size_bounds(labels, num_classes, margin=margin, spatial_dims=spatial_dims)
    logger.info("common size bounds from %s (%d frames): %s", patient, len(frames), np.round(bounds, 1).tolist())
    return bounds
