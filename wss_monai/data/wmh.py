"""Reader for the raw WMH 2017 layout, its patient-level split, and the handling of label 2.

Raw layout (Kuijf et al., "Standardized assessment of automatic segmentation of white matter
hyperintensities and results of the WMH segmentation challenge", IEEE TMI 2019)::

    <dataset_dir>/<site>/<id>/pre/FLAIR.nii.gz     image channel 0 (bias-corrected)
    <dataset_dir>/<site>/<id>/pre/T1.nii.gz        image channel 1 (registered to the FLAIR)
    <dataset_dir>/<site>/<id>/wmh.nii.gz           0 background, 1 WMH, 2 other pathology
    <dataset_dir>/<site>/<id>/orig/...             skipped

Sites are e.g. ``Utrecht``, ``Singapore``, ``GE3T`` (or, in the full release,
``Amsterdam/GE3T``, ``Amsterdam/GE1T5``, ...): every folder holding ``pre/FLAIR.nii.gz``, at any
depth, is a subject, and its site is the name of its parent folder.

**Label 2 must be ignored, not treated as background.** It marks other pathologies (e.g.
infarcts) that the challenge excludes from every metric: its voxels are removed from both the
prediction and the reference before scoring. A loss or metric that reads label 2 as background
(or as a second lesion class) trains and scores something the challenge does not. Use
:class:`SplitIgnoreLabeld` after loading (and after any interpolating spatial transform) to turn
``wmh.nii.gz`` into a binary lesion label plus a boolean ``"ignore"`` mask. Losses must leave the
masked voxels out of both the sum and the normalisation, e.g. by writing the loss's ignore value
into the target there (``torch.where(ignore, UNLABELLED, label)`` for
:class:`wss_monai.losses.partial_ce.PartialCrossEntropyLoss`, which ignores
:data:`wss_monai.constants.UNLABELLED`); metrics take it as ``ignore_mask`` of
:func:`wss_monai.metrics.lesion.lesion_metrics`. :func:`wmh_ignore_mask` gives the mask of a plain
array.

Example:
    >>> from wss_monai.data.lesion_phantoms import make_wmh_phantoms
    >>> import tempfile
    >>> root = make_wmh_phantoms(tempfile.mkdtemp(), num_subjects=2, seed=0)
    >>> [(c["site"], c["patient"]) for c in find_wmh_cases(root)]
    [('Singapore', 'Singapore_1'), ('Utrecht', 'Utrecht_0')]

Command line::

    python -m wss_monai.data.wmh --dataset_dir /data/wmh2017 --output wmh.json --num_validation 0.2
"""

from __future__ import annotations

import argparse
import logging
import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends

from wss_monai.data.acdc import add_datalist_arguments, make_split_datalist
from wss_monai.data.isles import validate_multichannel_cases

__all__ = [
    "WMH_IGNORE_LABEL",
    "WMH_LESION_LABEL",
    "SplitIgnoreLabel",
    "SplitIgnoreLabeld",
    "find_wmh_cases",
    "make_wmh_datalist",
    "wmh_ignore_mask",
    "main",
]

logger = logging.getLogger(__name__)

WMH_LESION_LABEL = 1
"""Value of the white matter hyperintensities in ``wmh.nii.gz``."""
WMH_IGNORE_LABEL = 2
"""Value of the other pathologies in ``wmh.nii.gz``: to be ignored by losses and metrics."""
MODALITIES = ("FLAIR", "T1")


def _subject_key(folder: Path) -> tuple:
    """Sort subjects by site path, then numerically by id when the id is a number."""
    return (str(folder.parent), (0, int(folder.name), "") if folder.name.isdigit() else (1, 0, folder.name))


def find_wmh_cases(dataset_dir: str | Path) -> list[dict]:
    """List the WMH 2017 subjects found at any depth under ``dataset_dir``.

    A subject is a folder holding ``pre/FLAIR.nii.gz``; it must also hold ``pre/T1.nii.gz`` and
    ``wmh.nii.gz``.

    Args:
        dataset_dir: folder holding the site folders (or a single site folder).

    Returns:
        ``[{"image": [FLAIR, T1], "label": wmh, "patient": "<site>_<id>", "site": str}, ...]``
        with absolute paths, sorted by site folder then (numeric) subject id.

    Raises:
        FileNotFoundError: ``dataset_dir`` does not exist or holds no ``*/pre/FLAIR.nii.gz``, or a
            subject lacks ``pre/T1.nii.gz`` or ``wmh.nii.gz`` (the message names the file).
        ValueError: two subject folders give the same ``"<site>_<id>"``.
    """
    root = Path(dataset_dir).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"WMH dataset_dir does not exist: {root}")
    subjects = sorted({flair.parent.parent for flair in root.rglob("pre/FLAIR.nii.gz")}, key=_subject_key)
    if not subjects:
        raise FileNotFoundError(f"no <site>/<id>/pre/FLAIR.nii.gz under {root}")
    cases, seen = [], {}
    for subject in subjects:
        flair, t1, label = subject / "pre" / "FLAIR.nii.gz", subject / "pre" / "T1.nii.gz", subject / "wmh.nii.gz"
        for path, what in ((t1, "T1 image"), (label, "label")):
            if not path.is_file():
                raise FileNotFoundError(f"{what} missing for {flair}: {path}")
        site = subject.parent.name
        patient = f"{site}_{subject.name}"
        if patient in seen:
            raise ValueError(f"two subject folders give the patient {patient!r}: {seen[patient]} and {subject}")
        seen[patient] = subject
        cases.append({"image": [str(flair), str(t1)], "label": str(label), "patient": patient, "site": site})
    sites = sorted({c["site"] for c in cases})
    logger.info("found %d WMH subjects of the sites %s under %s", len(cases), sites, root)
    return cases


def make_wmh_datalist(
    dataset_dir: str | Path,
    output_json: str | Path | None = None,
    num_validation: int | float = 0.25,
    seed: int = 0,
    check: bool = True,
) -> dict:
    """Find, check and split the WMH 2017 subjects by patient, and write the datalist JSON.

    Args:
        dataset_dir: folder holding the site folders.
        output_json: where to write the datalist (indent 2); nothing is written when ``None``.
        num_validation: validation subjects, a count (int) or a fraction (float in ``(0, 1)``).
        seed: seed of the subject-level split (not stratified by site).
        check: load every FLAIR, T1 and label and check their grids and values (labels in
            ``{0, 1, 2}``) with :func:`wss_monai.data.isles.validate_multichannel_cases`.

    Returns:
        ``{"training": [...], "validation": [...], "seed": int, "num_validation": int | float,
        "dataset_dir": str, "modalities": ["FLAIR", "T1"], "ignore_label": 2}``.
    """
    cases = find_wmh_cases(dataset_dir)
    if check:
        cases = validate_multichannel_cases(cases, num_classes=3)
    return make_split_datalist(
        cases,
        dataset_dir,
        output_json,
        num_validation,
        seed,
        modalities=list(MODALITIES),
        ignore_label=WMH_IGNORE_LABEL,
    )


def _to_numpy(label: Any, name: str) -> np.ndarray:
    if isinstance(label, torch.Tensor):
        return label.detach().cpu().numpy()
    if isinstance(label, np.ndarray):
        return label
    raise ValueError(f"{name} must be a numpy array or a torch tensor, got {type(label).__name__}")


def wmh_ignore_mask(label: np.ndarray | torch.Tensor) -> np.ndarray:
    """Boolean map of the WMH voxels to ignore (label 2, other pathology), any shape.

    Args:
        label: a WMH label map (numpy array or torch tensor) holding only 0, 1 and 2.

    Returns:
        ``label == 2`` as a numpy bool array of the same shape.

    Raises:
        ValueError: values other than 0, 1, 2 (e.g. after a linear interpolation of the label).

    Example:
        >>> import numpy as np
        >>> wmh_ignore_mask(np.array([[0, 1], [2, 2]])).tolist()
        [[False, False], [True, True]]
    """
    array = _to_numpy(label, "label")
    values = np.unique(array)
    bad = values[~np.isin(values, (0, WMH_LESION_LABEL, WMH_IGNORE_LABEL))]
    if bad.size:
        raise ValueError(
            f"a WMH label holds only 0, 1 and 2, got also {bad[:10].tolist()}; resample labels with nearest neighbour"
        )
    return np.asarray(array == WMH_IGNORE_LABEL, dtype=bool)


class SplitIgnoreLabel(Transform):
    """Move the voxels of ``ignore_value`` out of a label map into a boolean mask.

    Returns ``(label_out, mask)``: ``mask = (label == ignore_value)`` and ``label_out`` is a copy
    of ``label`` with those voxels set to 0. Both keep the input's shape and array type (numpy,
    torch or ``MetaTensor`` with its metadata); ``label_out`` keeps its dtype, ``mask`` is bool.
    The input is not modified.

    Args:
        ignore_value: label value to move out (WMH: 2, other pathology); must not be 0.

    Example:
        >>> import numpy as np
        >>> label, ignore = SplitIgnoreLabel()(np.array([[0, 1, 2, 2]]))
        >>> label.tolist(), ignore.tolist()
        ([[0, 1, 0, 0]], [[False, False, True, True]])
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, ignore_value: int | float = WMH_IGNORE_LABEL) -> None:
        valid = isinstance(ignore_value, numbers.Real) and not isinstance(ignore_value, bool)
        if not valid or not np.isfinite(ignore_value) or ignore_value == 0:
            raise ValueError(f"ignore_value must be a finite number other than 0 (background), got {ignore_value!r}")
        self.ignore_value = ignore_value

    def __call__(self, label: Any) -> tuple[Any, Any]:
        """Args: label: label map of any shape. Returns: ``(label without ignore_value, bool mask)``."""
        if isinstance(label, torch.Tensor):
            mask = label == self.ignore_value
            out = label.clone()
            out[mask] = 0
            return out, mask
        array = _to_numpy(label, "label")
        mask = array == self.ignore_value
        out = array.copy()
        out[mask] = 0
        return out, mask


class SplitIgnoreLabeld(MapTransform):
    """Dictionary wrapper of :class:`SplitIgnoreLabel`: ``d[key], d[mask_key] = SplitIgnoreLabel(...)(d[key])``.

    Place it after the label is loaded and resampled (nearest neighbour) and before random crops,
    adding ``mask_key`` to the keys of the crops so that the mask follows the label.

    Args:
        keys: label keys (WMH: ``"label"``).
        ignore_value: label value to move out (WMH: 2, other pathology).
        mask_key: key of the boolean mask; with several keys, one mask key per key.
        allow_missing_keys: skip missing keys instead of raising ``KeyError``.

    Example:
        >>> import numpy as np
        >>> d = SplitIgnoreLabeld(keys="label")({"label": np.array([[0, 2, 1]])})
        >>> d["label"].tolist(), d["ignore"].tolist()
        ([[0, 0, 1]], [[False, True, False]])
    """

    backend = SplitIgnoreLabel.backend

    def __init__(
        self,
        keys: KeysCollection = "label",
        ignore_value: int | float = WMH_IGNORE_LABEL,
        mask_key: str | Sequence[str] = "ignore",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        mask_keys = (mask_key,) if isinstance(mask_key, str) else tuple(mask_key)
        if len(mask_keys) != len(self.keys):
            raise ValueError(
                f"mask_key must give one key per label key, got keys={list(self.keys)} and mask_key={mask_key!r}"
            )
        clash = sorted(set(mask_keys) & set(self.keys))
        if clash:
            raise ValueError(f"mask_key must differ from the label keys, got {clash} in both")
        self.mask_keys = mask_keys
        self.splitter = SplitIgnoreLabel(ignore_value)

    def __call__(self, data: Any) -> dict:
        d = dict(data)
        for key, mask_key in self.key_iterator(d, self.mask_keys):
            d[key], d[mask_key] = self.splitter(d[key])
        return d


def main(argv: Sequence[str] | None = None) -> dict:
    """Command line: ``python -m wss_monai.data.wmh --dataset_dir DIR --output FILE``."""
    parser = argparse.ArgumentParser(
        prog="python -m wss_monai.data.wmh", description="Write a patient-level WMH 2017 datalist JSON."
    )
    add_datalist_arguments(parser, "folder holding the site folders", unit="subjects")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return make_wmh_datalist(
        args.dataset_dir,
        output_json=args.output,
        num_validation=args.num_validation,
        seed=args.seed,
        check=not args.no_check,
    )


if __name__ == "__main__":
    main()
