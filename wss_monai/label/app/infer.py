"""Inference tasks: segmentation of a 3D volume, and its refinement from new scribbles.

Both read the image the request names (a datastore image or an upload), predict with the run the app
currently serves (:class:`wss_monai.label.predict.Predictor`, in the input's grid) and write a uint8
NIfTI label with the image's affine. The refinement adds the annotator's scribbles (an uploaded
``label``, or the image's stored ``scribbles``) as hard seeds of a 3D Potts problem solved by a graph
cut or α-expansion (:func:`wss_monai.label.refine.refine_segmentation`).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from wss_monai.constants import UNLABELLED
from wss_monai.label.app.errors import bad_request, unprocessable
from wss_monai.label.checks import LabelCheckError, check_same_grid, read_volume
from wss_monai.label.predict import Predictor
from wss_monai.label.refine import SOLVER_CHOICES, refine_segmentation
from wss_monai.label.scribbles import ScribbleConvention

__all__ = ["RefinementTask", "SegmentationTask"]

logger = logging.getLogger(__name__)


def _write_label(labels: np.ndarray, affine: np.ndarray) -> str:
    path = tempfile.NamedTemporaryFile(suffix=".nii.gz", delete=False).name
    nib.save(nib.Nifti1Image(labels.astype(np.uint8), affine), path)
    return path


def _image_path(request: dict) -> str:
    image = request.get("image")
    if not image or not isinstance(image, str) or not Path(image).is_file():
        raise bad_request(f"no image to segment: {image!r} is neither a datastore image nor an upload")
    return image


class SegmentationTask(InferTask):
    """The served network's labels for a 3D volume, in the volume's own grid.

    Args:
        predictor: returns the current :class:`Predictor` (it changes after a training).
        labels: ``{name: class index}`` (from the bundle's metadata).
        description: shown by ``/info/``.
    """

    def __init__(self, predictor: Callable[[], Predictor], labels: dict[str, int], description: str):
        super().__init__(type=InferType.SEGMENTATION, labels=labels, dimension=3, description=description)
        self.predictor = predictor

    def is_valid(self) -> bool:
        return True

    def _predict(self, request: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        try:
            return self.predictor()(_image_path(request))
        except LabelCheckError as error:
            raise unprocessable(str(error)) from error

    def __call__(self, request: dict) -> tuple[str, dict[str, Any]]:
        probabilities, _, affine = self._predict(request)
        labels = probabilities.argmax(0)
        return _write_label(labels, affine), {"label_names": self.labels, "shape": list(labels.shape)}


class RefinementTask(SegmentationTask):
    """The network's labels refined by the annotator's scribbles (graph cut / α-expansion, seeds hard).

    Request parameters (``params`` of ``/infer/<model>``, over the app's defaults): ``scribbles_convention``
    (``painted``, ``monailabel``, ``dataset``), ``scribbles_background`` / ``scribbles_unlabelled`` (values),
    ``target`` (MONAI Label's binary scribbles: the foreground class, name or index), ``smoothness``
    (λ), ``solver`` (``auto``, ``graph_cut``, ``alpha_expansion``).

    Args:
        predictor, labels, description: as :class:`SegmentationTask`.
        convention: the scribble convention of a request.
        stored_scribbles: the path of the stored scribbles of the request's image (``None``: none).
        defaults: default request parameters.
    """

    def __init__(self, predictor, labels, description, convention: Callable[[dict], ScribbleConvention],
                 stored_scribbles: Callable[[dict], str | None], defaults: dict | None = None):  # fmt: skip
        super().__init__(predictor, labels, description)
        self.type = InferType.SCRIBBLES
        self.convention = convention
        self.stored_scribbles = stored_scribbles
        self._config.update({"smoothness": 2.0, "solver": "auto", **(defaults or {})})

    def _seeds(self, request: dict, shape, affine) -> np.ndarray:
        path = request.get("label") or self.stored_scribbles(request)
        if not path:
            raise bad_request("refinement needs scribbles: upload them as 'label' or save them with tag 'scribbles'")
        try:
            data, label_affine = read_volume(path, "scribbles")
            check_same_grid(data.shape, label_affine, shape, affine, "scribbles")
            return self.convention(request).to_seeds(np.asarray(data).reshape(shape))
        except ValueError as error:  # LabelCheckError included
            raise unprocessable(str(error)) from error

    def __call__(self, request: dict) -> tuple[str, dict[str, Any]]:
        options = {**self._config, **request}
        if options["solver"] not in SOLVER_CHOICES:
            raise unprocessable(f"solver must be one of {SOLVER_CHOICES}, got {options['solver']!r}")
        try:
            smoothness = float(options["smoothness"])
        except (TypeError, ValueError):
            raise unprocessable(f"smoothness must be a number, got {options['smoothness']!r}") from None
        probabilities, image, affine = self._predict(request)
        seeds = self._seeds(request, probabilities.shape[1:], affine)
        if not (seeds != UNLABELLED).any():
            raise unprocessable("the scribbles annotate no voxel")
        convention = self.convention(request)
        targets = set(convention.mapping.values()) - {UNLABELLED, 0}
        target = next(iter(targets)) if convention.name == "monailabel" else None
        spacing = np.sqrt((affine[:3, :3] ** 2).sum(0)).tolist()
        try:
            labels, info = refine_segmentation(probabilities, image, seeds, smoothness=smoothness, spacing=spacing,
                                               solver=options["solver"], target=target)  # fmt: skip
        except ValueError as error:
            raise unprocessable(str(error)) from error
        return _write_label(labels, affine), {"label_names": self.labels, "refinement": info}
