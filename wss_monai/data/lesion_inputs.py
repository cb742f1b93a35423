"""Unlabelled inputs of the lesion bundles: subjects to segment, without their label files."""

from __future__ import annotations

import logging
from pathlib import Path

__all__ = ["find_wmh_inputs"]

logger = logging.getLogger(__name__)


def find_wmh_inputs(input_dir: str | Path, modalities: tuple[str, ...] = ("FLAIR", "T1")) -> list[dict]:
    """The subjects of a WMH 2017-style folder to segment: ``<site>/<id>/pre/{FLAIR,T1}.nii.gz`` at any depth.

    Unlike :func:`wss_monai.data.wmh.find_wmh_cases`, no ``wmh.nii.gz`` label is needed.

    Args:
        input_dir: folder holding the subjects.
        modalities: image channels, in order; the first one locates the subjects.

    Returns:
        ``[{"image": [FLAIR, T1], "patient": "<site>_<id>"}, ...]`` with absolute paths, sorted by path.

    Raises:
        FileNotFoundError: ``input_dir`` does not exist, holds no ``*/pre/<first>.nii.gz``, or a
            subject lacks another modality (the message names the file).

    Example:
        >>> import tempfile
        >>> from wss_monai.data.lesion_phantoms import make_wmh_phantoms
        >>> root = make_wmh_phantoms(tempfile.mkdtemp(), num_subjects=2, seed=0)
        >>> [c["patient"] for c in find_wmh_inputs(root)]
        ['Singapore_1', 'Utrecht_0']
    """
    root = Path(input_dir).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"input_dir does not exist: {root}")
    firsts = sorted(root.rglob(f"pre/{modalities[0]}.nii.gz"))
    if not firsts:
        raise FileNotFoundError(f"no <site>/<id>/pre/{modalities[0]}.nii.gz under input_dir {root}")
    subjects = []
    for first in firsts:
        files = [first.parent / f"{m}.nii.gz" for m in modalities]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise FileNotFoundError(f"{modalities} expected for the subject of {first}; missing: {missing}")
        subject = first.parent.parent
        subjects.append({"image": [str(f) for f in files], "patient": f"{subject.parent.name}_{subject.name}"})
    logger.info("%d subjects to segment under %s", len(subjects), root)
    return subjects
