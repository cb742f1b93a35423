"""Reader for the raw ATLAS stroke-lesion layouts (R1.1 and 2.0 BIDS) and a seeded, patient-level split.

ATLAS (Liew et al., "A large, open source dataset of stroke anatomical brain images and manual lesion
segmentations", Scientific Data 2018; ATLAS v2.0, Scientific Data 2022): T1-weighted MRI in MNI space,
197 x 233 x 189 at 1 mm, one lesion mask per case (the label is binary: 0 background, 1 lesion).

**R1.1**::

    <dataset_dir>/Site1/031768/t01/031768_t1w_deface_stx.nii.gz        image
    <dataset_dir>/Site1/031768/t01/031768_LesionSmooth_stx.nii.gz       lesion mask
    <dataset_dir>/Site1/031768/t01/031768_LesionSmooth_1_stx.nii.gz     a second mask of the same case, ...

A case with several ``*LesionSmooth*`` masks has their union (OR) as label: the reader writes it
once as ``<label_dir>/<site>_<id>_<t0x>_lesion.nii.gz`` (uint8, the first mask's affine), where
``label_dir`` defaults to ``atlas_labels/`` next to the datalist JSON. Every mask is binarised (> 0).
Time points ``t0x`` of one subject are one patient for the split.

**2.0 (BIDS)**::

    <dataset_dir>/Training/R001/sub-r001s001/ses-1/anat/sub-r001s001_ses-1_space-MNI152NLin2009aSym_T1w.nii.gz
    <dataset_dir>/Training/R001/sub-r001s001/ses-1/anat/sub-r001s001_ses-1_space-MNI152NLin2009aSym_label-L_desc-T1lesion_mask.nii.gz

Every ``anat/*_T1w.nii.gz`` under ``dataset_dir`` with its ``*_label-L_desc-T1lesion_mask.nii.gz`` is a
case; the ``sub-*`` folder is the patient. The 2.0 masks are used as they are (values checked).

``layout="auto"`` takes BIDS when ``dataset_dir`` holds ``sub-*/ses-*/anat`` folders, R1.1 otherwise.

Example:
    >>> import tempfile
    >>> from wss_monai.data.atlas_phantoms import make_atlas_phantoms
    >>> root = make_atlas_phantoms(tempfile.mkdtemp(), num_cases=2, seed=0, shape=(32, 32, 12), layout="bids")
    >>> [c["patient"] for c in find_atlas_cases(root)]
    ['sub-r001s001', 'sub-r001s002']

Command line::

    python -m wss_monai.data.atlas --dataset_dir /data/ATLAS_R1.1 --output atlas.json --num_validation 0.2
"""

from __future__ import annotations

import argparse
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from wss_monai.data.acdc import add_datalist_arguments, make_split_datalist
from wss_monai.data.isles import validate_multichannel_cases

__all__ = ["ATLAS_LAYOUTS", "find_atlas_cases", "find_atlas_inputs", "fuse_lesion_masks", "make_atlas_datalist", "main"]

logger = logging.getLogger(__name__)

ATLAS_LAYOUTS = ("auto", "r1.1", "bids")
R11_IMAGE = "_t1w_deface_stx.nii.gz"
BIDS_IMAGE = "_T1w.nii.gz"
BIDS_MASK = "_label-L_desc-T1lesion_mask.nii.gz"


def _detect(root: Path) -> str:
    return "bids" if next(root.rglob("sub-*/ses-*/anat"), None) is not None else "r1.1"


def fuse_lesion_masks(masks: Sequence[str | Path], output: str | Path) -> Path:
    """Write the union of binary lesion masks (each > 0) as uint8 with the first mask's affine.

    Raises:
        ValueError: masks of different shapes (naming the files) or holding NaN.
    """
    first = nib.load(str(masks[0]))
    union = np.zeros(first.shape, bool)
    for mask in masks:
        image = nib.load(str(mask))
        if image.shape != first.shape:
            raise ValueError(f"lesion mask {mask} has shape {image.shape}, {masks[0]} {first.shape}")
        data = np.asarray(image.dataobj)
        if np.isnan(data).any():
            raise ValueError(f"lesion mask {mask} holds NaN values")
        union |= data > 0
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(union.astype(np.uint8), first.affine), str(output))
    return output


def _r11_cases(root: Path, label_dir: Path) -> list[dict]:
    cases = []
    for image in sorted(root.rglob(f"*{R11_IMAGE}")):
        session = image.parent
        if not re.fullmatch(r"t0\d+", session.name):
            continue
        subject, site = session.parent, session.parent.parent
        masks = sorted(session.glob("*LesionSmooth*.nii.gz"))
        if not masks:
            raise FileNotFoundError(f"no *LesionSmooth*.nii.gz lesion mask next to {image}")
        patient = f"{site.name}_{subject.name}"
        label = fuse_lesion_masks(masks, label_dir / f"{patient}_{session.name}_lesion.nii.gz")
        cases.append(
            {"image": str(image), "label": str(label), "patient": patient, "case": f"{patient}_{session.name}"}
        )
    return cases


def _bids_cases(root: Path) -> list[dict]:
    cases = []
    for image in sorted(root.rglob(f"anat/*{BIDS_IMAGE}")):
        mask = image.with_name(image.name[: -len(BIDS_IMAGE)] + BIDS_MASK)
        if not mask.is_file():
            raise FileNotFoundError(f"lesion mask missing for {image}: {mask}")
        subject = next((p.name for p in image.parents if p.name.startswith("sub-")), None)
        if subject is None:
            raise ValueError(f"{image} is not inside a sub-* folder")
        case = image.name[: -len(BIDS_IMAGE)]
        cases.append({"image": str(image), "label": str(mask), "patient": subject, "case": case})
    return cases


def find_atlas_cases(dataset_dir: str | Path, layout: str = "auto", label_dir: str | Path | None = None) -> list[dict]:
    """The ATLAS cases under ``dataset_dir``: ``[{"image", "label", "patient", "case"}, ...]``, absolute paths.

    Args:
        dataset_dir: the release folder (R1.1: holding ``Site*/``; 2.0: holding ``Training/`` or ``sub-*``).
        layout: one of :data:`ATLAS_LAYOUTS`.
        label_dir: R1.1 only, where the fused masks are written (``None``: ``atlas_labels/`` in the current
            directory; :func:`make_atlas_datalist` passes a folder next to its JSON).

    Raises:
        FileNotFoundError: ``dataset_dir`` missing, no case found, or a case without its mask (named).
        ValueError: unknown ``layout``, masks that do not agree in shape.
    """
    if layout not in ATLAS_LAYOUTS:
        raise ValueError(f"layout must be one of {ATLAS_LAYOUTS}, not {layout!r}")
    root = Path(dataset_dir).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"ATLAS dataset_dir does not exist: {root}")
    layout = _detect(root) if layout == "auto" else layout
    if layout == "bids":
        cases = _bids_cases(root)
        expected = f"sub-*/ses-*/anat/*{BIDS_IMAGE}"
    else:
        cases = _r11_cases(root, Path(label_dir if label_dir is not None else "atlas_labels").resolve())
        expected = f"Site*/<id>/t0*/*{R11_IMAGE}"
    if not cases:
        raise FileNotFoundError(f"no ATLAS {layout} case ({expected}) under {root}")
    logger.info(
        "found %d ATLAS %s cases of %d patients under %s", len(cases), layout, len({c["patient"] for c in cases}), root
    )
    return cases


def find_atlas_inputs(input_dir: str | Path) -> list[dict]:
    """Images to segment: every ``*_t1w_deface_stx.nii.gz`` (R1.1) or ``*_T1w.nii.gz`` (2.0) under ``input_dir``."""
    root = Path(input_dir).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"input_dir does not exist: {root}")
    files = sorted({*root.rglob(f"*{R11_IMAGE}"), *root.rglob(f"*{BIDS_IMAGE}")})
    if not files:
        raise FileNotFoundError(f"no *{R11_IMAGE} or *{BIDS_IMAGE} under input_dir {root}")
    return [{"image": str(p)} for p in files]


def make_atlas_datalist(
    dataset_dir: str | Path,
    output_json: str | Path | None = None,
    num_validation: int | float = 0.2,
    seed: int = 0,
    layout: str = "auto",
    check: bool = True,
) -> dict:
    """Find, check (grids, values in {0, 1}) and split the ATLAS cases by patient, and write the datalist JSON.

    R1.1's fused masks go to ``atlas_labels/`` next to ``output_json`` (or in the current directory).
    """
    label_dir = None if output_json is None else Path(output_json).parent / "atlas_labels"
    cases = find_atlas_cases(dataset_dir, layout=layout, label_dir=label_dir)
    if check:
        cases = validate_multichannel_cases(cases, num_classes=2)
    return make_split_datalist(cases, dataset_dir, output_json, num_validation, seed, modalities=["T1w"])


def main(argv: Sequence[str] | None = None) -> dict:
    """Command line: ``python -m wss_monai.data.atlas --dataset_dir DIR --output FILE [--layout r1.1|bids]``."""
    parser = argparse.ArgumentParser(prog="python -m wss_monai.data.atlas", description=__doc__.splitlines()[0])
    add_datalist_arguments(parser, "the ATLAS R1.1 or 2.0 release folder", unit="patients")
    parser.add_argument("--layout", default="auto", choices=ATLAS_LAYOUTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return make_atlas_datalist(
        args.dataset_dir, args.output, args.num_validation, args.seed, layout=args.layout, check=not args.no_check
    )


if __name__ == "__main__":
    main()
