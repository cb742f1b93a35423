"""What annotators saved in a MONAI Label datastore → the files and datalist of a bundle training run.

Each image of the datastore comes as a record ``{"id", "image", "scribbles"?, "final"?, "boxes"?}``
(paths of its labels by tag). For every record with something to learn from, one training case is
written in the bundle's scribble-file form (``configs/supervision/scribble_files.yaml``: class
indices, the bundle's ``scribble_unlabelled`` where not annotated):

- ``final`` (a full label): every voxel annotated, so the recipe's partial CE is the full CE there
  (hybrid: fully and weakly annotated images in one run, one loss);
- ``scribbles``: converted by a :class:`~wss_monai.label.scribbles.ScribbleConvention`;
- ``boxes`` alone: the box recipe's input (:mod:`wss_monai.label.boxes`); while that recipe is not
  there, such images are left out with a warning, and a datastore with nothing else is an error.

Example:
    >>> import tempfile, numpy as np, nibabel as nib
    >>> from wss_monai.label.scribbles import ScribbleConvention
    >>> folder = tempfile.mkdtemp()
    >>> nib.save(nib.Nifti1Image(np.zeros((4, 4, 2), np.float32), np.eye(4)), f"{folder}/a.nii.gz")
    >>> scribble = np.zeros((4, 4, 2), np.uint8); scribble[0, 0, 0] = 2; scribble[3, 3, 1] = 1
    >>> nib.save(nib.Nifti1Image(scribble, np.eye(4)), f"{folder}/a_s.nii.gz")
    >>> records = [{"id": "a", "image": f"{folder}/a.nii.gz", "scribbles": f"{folder}/a_s.nii.gz"}]
    >>> convention = ScribbleConvention.preset("painted", num_classes=2)
    >>> datalist = make_label_datalist(records, f"{folder}/out", convention, num_classes=2, unlabelled=4)
    >>> [(c["patient"], c["supervision"]) for c in datalist["training"]]
    [('a', 'weak')]
    >>> np.unique(nib.load(datalist["training"][0]["scribble"]).get_fdata()).tolist()
    [0.0, 1.0, 4.0]
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from wss_monai.constants import UNLABELLED
from wss_monai.label.boxes import box_recipe
from wss_monai.label.checks import check_same_grid, check_values, read_volume
from wss_monai.label.scribbles import ScribbleConvention

__all__ = ["make_label_datalist", "read_label_datalist"]

logger = logging.getLogger(__name__)


def _save(data: np.ndarray, affine: np.ndarray, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data.astype(np.uint8), affine), str(path))
    return str(path)


def _case(record: Mapping, output_dir: Path, convention: ScribbleConvention, num_classes: int, unlabelled: int):
    image = nib.load(str(record["image"]))
    shape, affine = image.shape[:3], image.affine
    target = output_dir / f"{record['id']}_scribble.nii.gz"
    case = {"image": str(record["image"]), "patient": str(record["id"])}
    if record.get("final"):
        data, label_affine = read_volume(record["final"], f"final label of {record['id']}")
        check_same_grid(data.shape, label_affine, shape, affine, f"final label of {record['id']}")
        check_values(data, range(num_classes), f"final label of {record['id']}")
        case.update(scribble=_save(np.asarray(data).reshape(shape), affine, target), supervision="full")
        return case
    if record.get("scribbles"):
        data, label_affine = read_volume(record["scribbles"], f"scribbles of {record['id']}")
        check_same_grid(data.shape, label_affine, shape, affine, f"scribbles of {record['id']}")
        seeds = convention.to_dataset(np.asarray(data).reshape(shape), unlabelled)
        if not (seeds != unlabelled).any():
            logger.warning("the scribbles of %s annotate no voxel; image left out", record["id"])
            return None
        case.update(scribble=_save(seeds, affine, target), supervision="weak")
        return case
    return None


def make_label_datalist(
    records: Sequence[Mapping],
    output_dir: str | Path,
    convention: ScribbleConvention,
    num_classes: int,
    unlabelled: int,
    output_json: str | Path | None = None,
) -> dict:
    """Training cases (and their scribble files under ``output_dir``) from the datastore's records.

    Args:
        records: ``[{"id", "image", "scribbles"?, "final"?, "boxes"?}, ...]`` (paths; a tag may be absent).
        output_dir: folder of the converted scribble files.
        convention: the meaning of the stored scribble values.
        num_classes: ``K`` of the bundle.
        unlabelled: the bundle's ``scribble_unlabelled``, written where a voxel is not annotated.
        output_json: where to write the datalist (``None``: not written).

    Returns:
        ``{"training": [{"image", "scribble", "patient", "supervision"}, ...], "validation": [],
        "boxes_waiting": [ids]}``.

    Raises:
        ValueError: no record has scribbles or a full label (the message says what was found), or a
            stored label is unusable (:class:`~wss_monai.label.checks.LabelCheckError`).
    """
    if unlabelled in range(num_classes) or unlabelled == UNLABELLED:
        raise ValueError(f"unlabelled must not be a class index in range({num_classes}), got {unlabelled}")
    output_dir = Path(output_dir)
    training, boxes_only = [], []
    for record in records:
        case = _case(record, output_dir, convention, num_classes, unlabelled)
        if case is not None:
            training.append(case)
        elif record.get("boxes"):
            boxes_only.append(str(record["id"]))
    if boxes_only:
        try:
            recipe = box_recipe()
            if not training:
                raise ValueError(
                    f"images {boxes_only} have boxes only and nothing else to train on: the box recipe {recipe} "
                    "is not wired to the datastore yet"
                )
            logger.warning("images %s have boxes only; the box recipe %s is not wired to the datastore yet",
                           boxes_only, recipe)  # fmt: skip
        except FileNotFoundError as error:
            if not training:
                raise ValueError(f"images {boxes_only} have boxes only and nothing else to train on: {error}") from None
            logger.warning("images %s left out: %s", boxes_only, error)
    if not training:
        raise ValueError(
            f"nothing to train on among {len(records)} images: save scribbles (tag 'scribbles') or a full label "
            "(tag 'final') first"
        )
    kinds = {kind: sum(c["supervision"] == kind for c in training) for kind in ("full", "weak")}
    logger.info("training cases from the datastore: %d with scribbles, %d with full labels", kinds["weak"],
                kinds["full"])  # fmt: skip
    datalist = {"training": training, "validation": [], "boxes_waiting": boxes_only}
    if output_json is not None:
        Path(output_json).parent.mkdir(parents=True, exist_ok=True)
        Path(output_json).write_text(json.dumps(datalist, indent=2) + "\n")
    return datalist


def read_label_datalist(path: str | Path) -> dict:
    """The datalist written by :func:`make_label_datalist` (the ``datalist`` of ``configs/label/datastore.yaml``).

    Raises:
        FileNotFoundError: ``path`` is not set or not a file.
    """
    if path is None or not Path(path).is_file():
        raise FileNotFoundError(f"label_datalist_file {path!r} is not a file: pass --label_datalist_file")
    return json.loads(Path(path).read_text())
