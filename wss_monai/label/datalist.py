"""What annotators saved in a MONAI Label datastore → the files and datalist of a bundle training run.

Each image of the datastore comes as a record ``{"id", "image", "scribbles"?, "final"?, "boxes"?}``
(paths of its labels by tag). One training run uses one supervision recipe, so a datalist is either
a scribble datalist or a box datalist (:data:`SUPERVISIONS`):

``scribbles`` (``configs/supervision/scribble_files.yaml``): one scribble file per image, class
indices and the bundle's ``scribble_unlabelled`` where not annotated:

- ``final`` (a full label): every voxel annotated, so the recipe's partial CE is the full CE there
  (hybrid: fully and weakly annotated images in one run, one loss);
- ``scribbles``: converted by a :class:`~wss_monai.label.scribbles.ScribbleConvention`.

``boxes`` (``configs/supervision/boxes.yaml`` with ``box_source: files``): one box file per image,
named in the case as ``box_file`` (:mod:`wss_monai.label.boxes`):

- ``final``: the tight boxes of the full label (JSON), exact boxes of the annotated structures;
- ``boxes``: the stored box mask (checked and copied), or a ``.json`` box annotation written in the
  recipe's JSON form (which keeps boxes of two classes that overlap).

``auto`` (the default) picks the recipe that trains on more of the datastore's images (final labels
count for both), scribbles on a tie. Images whose only annotation the chosen recipe cannot read
(boxes in a scribble run, scribbles in a box run) are left out with a warning naming them, and listed
under ``"left_out"``.

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
    >>> datalist["supervision"], [(c["patient"], c["supervision"]) for c in datalist["training"]]
    ('scribbles', [('a', 'weak')])
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
from wss_monai.label.boxes import check_box_json, check_box_mask, tight_box_json
from wss_monai.label.checks import check_same_grid, check_values, read_volume
from wss_monai.label.scribbles import ScribbleConvention

__all__ = ["SUPERVISIONS", "choose_supervision", "make_label_datalist", "read_label_datalist", "require_box_files"]

logger = logging.getLogger(__name__)

SUPERVISIONS = ("auto", "scribbles", "boxes")
"""How a datastore trains: the recipe that covers more images, the scribble recipe, or the box recipe."""
_TAGS = {"scribbles": ("final", "scribbles"), "boxes": ("final", "boxes")}
"""The label tags each recipe trains from, the first one preferred."""


def _save(data: np.ndarray, affine: np.ndarray, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data.astype(np.uint8), affine), str(path))
    return str(path)


def _save_json(content: dict, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content) + "\n")
    return str(path)


def _final_label(record: Mapping, shape, affine, num_classes: int) -> np.ndarray:
    """The full label ``(H, W, D)`` of a record, checked against its image's grid and the classes."""
    what = f"final label of {record['id']}"
    data, label_affine = read_volume(record["final"], what)
    check_same_grid(data.shape, label_affine, shape, affine, what)
    check_values(data, range(num_classes), what)
    return np.asarray(data).reshape(shape)


def _scribble_case(record: Mapping, output_dir: Path, convention: ScribbleConvention, num_classes: int,
                   unlabelled: int) -> dict | None:  # fmt: skip
    """``{"image", "patient", "scribble", "supervision": "full" | "weak"}``, or None (nothing scribbled)."""
    image = nib.load(str(record["image"]))
    shape, affine = image.shape[:3], image.affine
    target = output_dir / f"{record['id']}_scribble.nii.gz"
    case = {"image": str(record["image"]), "patient": str(record["id"])}
    if record.get("final"):
        label = _final_label(record, shape, affine, num_classes)
        return {**case, "scribble": _save(label, affine, target), "supervision": "full"}
    data, label_affine = read_volume(record["scribbles"], f"scribbles of {record['id']}")
    check_same_grid(data.shape, label_affine, shape, affine, f"scribbles of {record['id']}")
    seeds = convention.to_dataset(np.asarray(data).reshape(shape), unlabelled)
    if not (seeds != unlabelled).any():
        logger.warning("the scribbles of %s annotate no voxel; image left out", record["id"])
        return None
    return {**case, "scribble": _save(seeds, affine, target), "supervision": "weak"}


def _box_case(record: Mapping, output_dir: Path, num_classes: int, class_names: Sequence[str],
              box_dims: int) -> dict:  # fmt: skip
    """``{"image", "patient", "box_file", "supervision": "full" | "boxes"}`` of a record with a final label or boxes.

    Raises:
        LabelCheckError: an unusable label or box mask; a box JSON that is not readable or names an unknown class.
    """
    image = nib.load(str(record["image"]))
    shape, affine = image.shape[:3], image.affine
    case = {"image": str(record["image"]), "patient": str(record["id"])}
    if record.get("final"):
        boxes = tight_box_json(_final_label(record, shape, affine, num_classes), num_classes, box_dims)
        return {**case, "box_file": _save_json(boxes, output_dir / f"{record['id']}_boxes.json"), "supervision": "full"}
    what, source = f"boxes of {record['id']}", Path(str(record["boxes"]))
    if source.suffix == ".json":
        boxes = check_box_json(source, record["image"], class_names, what)
        box_file = _save_json(boxes, output_dir / f"{record['id']}_boxes.json")
    else:
        mask = check_box_mask(source, record["image"], num_classes, box_dims, what)
        box_file = _save(mask, affine, output_dir / f"{record['id']}_boxes.nii.gz")
    return {**case, "box_file": box_file, "supervision": "boxes"}


def choose_supervision(records: Sequence[Mapping], supervision: str = "auto") -> str:
    """``"scribbles"`` or ``"boxes"``: ``supervision`` itself, or for ``"auto"`` the recipe that trains on more images.

    An image counts for a recipe when it has a label of one of its tags (:data:`_TAGS`; a final label
    counts for both); a tie goes to the scribble recipe.

    Raises:
        ValueError: ``supervision`` not in :data:`SUPERVISIONS`.
    """
    if supervision not in SUPERVISIONS:
        raise ValueError(f"supervision must be one of {SUPERVISIONS}, got {supervision!r}")
    if supervision != "auto":
        return supervision
    covered = {kind: sum(any(r.get(tag) for tag in tags) for r in records) for kind, tags in _TAGS.items()}
    return "boxes" if covered["boxes"] > covered["scribbles"] else "scribbles"


def _left_out(records: Sequence[Mapping], supervision: str) -> list[str]:
    """Ids of the images annotated, but only with labels that the ``supervision`` recipe does not read."""
    other = "boxes" if supervision == "scribbles" else "scribbles"
    return [str(r["id"]) for r in records if r.get(other) and not any(r.get(t) for t in _TAGS[supervision])]


def make_label_datalist(
    records: Sequence[Mapping],
    output_dir: str | Path,
    convention: ScribbleConvention,
    num_classes: int,
    unlabelled: int,
    output_json: str | Path | None = None,
    supervision: str = "auto",
    class_names: Sequence[str] | None = None,
    box_dims: int = 2,
) -> dict:
    """Training cases (and their scribble or box files under ``output_dir``) from the datastore's records.

    Args:
        records: ``[{"id", "image", "scribbles"?, "final"?, "boxes"?}, ...]`` (paths; a tag may be absent).
        output_dir: folder of the converted scribble and box files.
        convention: the meaning of the stored scribble values.
        num_classes: ``K`` of the bundle.
        unlabelled: the bundle's ``scribble_unlabelled``, written where a voxel is not annotated.
        output_json: where to write the datalist (``None``: not written).
        supervision: one of :data:`SUPERVISIONS` (see the module).
        class_names: the bundle's ``K`` class names, for box JSON naming classes (``None``: indices only).
        box_dims: 2 (boxes per slice) or 3 (per volume, with the whole-volume profile): how box masks are
            checked and full labels boxed; the box run's ``box_dims`` must be the same.

    Returns:
        ``{"training": [case, ...], "validation": [], "supervision": "scribbles" | "boxes", "left_out": [ids]}``,
        a case ``{"image", "patient", "supervision", "scribble"}`` (scribble datalist, ``supervision`` ``"full"``
        or ``"weak"``) or ``{..., "box_file"}`` (box datalist, ``"full"`` or ``"boxes"``).

    Raises:
        ValueError: no record has anything the chosen recipe trains on (the message says what was found), a
            bad ``supervision`` or ``unlabelled``, or a stored label is unusable
            (:class:`~wss_monai.label.checks.LabelCheckError`, naming the image).
    """
    if unlabelled in range(num_classes) or unlabelled == UNLABELLED:
        raise ValueError(f"unlabelled must not be a class index in range({num_classes}), got {unlabelled}")
    kind = choose_supervision(records, supervision)
    names = list(class_names) if class_names is not None else [str(k) for k in range(num_classes)]
    output_dir, usable = Path(output_dir), [r for r in records if any(r.get(t) for t in _TAGS[kind])]
    if kind == "boxes":
        cases = [_box_case(r, output_dir, num_classes, names, box_dims) for r in usable]
    else:
        cases = [_scribble_case(r, output_dir, convention, num_classes, unlabelled) for r in usable]
    training, left_out = [c for c in cases if c is not None], _left_out(records, kind)
    other = "boxes" if kind == "scribbles" else "scribbles"
    if left_out:
        logger.warning("images %s have %s only, which the %s recipe does not read: left out of this training "
                       "(supervision=%s trains from them)", left_out, other, kind, other)  # fmt: skip
    if not training:
        found = f"; images {left_out} have {other} only (supervision={other} trains from them)" if left_out else ""
        raise ValueError(
            f"nothing to train on with the {kind} recipe among {len(records)} images: save scribbles (tag "
            f"'scribbles'), boxes (tag 'boxes') or a full label (tag 'final') first{found}"
        )
    counts = {s: sum(c["supervision"] == s for c in training) for s in ("full", "weak", "boxes")}
    logger.info("training cases from the datastore (%s recipe): %d with scribbles, %d with boxes, %d with full "
                "labels", kind, counts["weak"], counts["boxes"], counts["full"])  # fmt: skip
    datalist = {"training": training, "validation": [], "supervision": kind, "left_out": left_out}
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


def require_box_files(cases: Sequence[Mapping]) -> list[Mapping]:
    """``cases`` unchanged when every one names its ``box_file`` (what ``configs/label/datastore_boxes.yaml`` reads).

    Raises:
        ValueError: a case without ``box_file`` (a scribble datalist given to the box recipe), named.
    """
    missing = [str(c.get("patient", c.get("image"))) for c in cases if not c.get("box_file")]
    if missing:
        raise ValueError(f"training cases {missing[:10]} have no box_file: the datalist was not written for the box "
                         "recipe (make_label_datalist with supervision 'boxes')")  # fmt: skip
    return list(cases)
