"""Reader for the raw PROMISE12 layout (MetaImage) and a seeded, patient-level train/validation split.

Raw layout (Litjens et al., "Evaluation of prostate segmentation algorithms for MRI: the PROMISE12
challenge", Medical Image Analysis 2014), at any depth under ``dataset_dir`` (the release splits
the 50 training cases over ``TrainingData_Part1..3``)::

    <dataset_dir>/.../Case00.mhd + Case00.raw                          T2 image
    <dataset_dir>/.../Case00_segmentation.mhd + Case00_segmentation.raw 0 background, 1 prostate

Cases have 15-54 axial slices, in-plane spacing 0.27-0.75 mm and 2.2-4 mm between slices
(anisotropic): the bundle resizes in-plane only, labels with nearest neighbour. Files are read with
SimpleITK (:class:`wss_monai.data.SimpleITKReader`).

Example:
    >>> import tempfile
    >>> from wss_monai.data.prostate_phantoms import make_promise12_phantoms
    >>> root = make_promise12_phantoms(tempfile.mkdtemp(), num_cases=3, seed=0, shape=(32, 32), num_slices=(4, 5))
    >>> [c["patient"] for c in find_promise12_cases(root)]
    ['Case00', 'Case01', 'Case02']

Command line::

    python -m wss_monai.data.promise12 --dataset_dir /data/promise12 --output promise12.json --num_validation 0.2
"""

from __future__ import annotations

import argparse
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from wss_monai.data.acdc import add_datalist_arguments, make_split_datalist

__all__ = ["check_promise12_case", "find_promise12_cases", "find_promise12_inputs", "make_promise12_datalist", "main"]

logger = logging.getLogger(__name__)

_CASE = re.compile(r"^Case(?P<number>\d+)\.mhd$")


def find_promise12_cases(dataset_dir: str | Path) -> list[dict]:
    """The ``CaseXX.mhd`` files found at any depth under ``dataset_dir``, each with its segmentation.

    Returns:
        ``[{"image": path, "label": path, "patient": "CaseXX"}, ...]`` sorted by case number.

    Raises:
        FileNotFoundError: ``dataset_dir`` missing, no ``CaseXX.mhd`` found, or a case without its
            ``CaseXX_segmentation.mhd`` (the message names the file).
        ValueError: two files give the same case.
    """
    root = Path(dataset_dir).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"PROMISE12 dataset_dir does not exist: {root}")
    images = sorted(
        (p for p in root.rglob("Case*.mhd") if _CASE.match(p.name)), key=lambda p: int(_CASE.match(p.name)["number"])
    )
    if not images:
        raise FileNotFoundError(f"no CaseXX.mhd under {root}")
    cases, seen = [], {}
    for image in images:
        label = image.with_name(image.name.replace(".mhd", "_segmentation.mhd"))
        if not label.is_file():
            raise FileNotFoundError(f"segmentation missing for {image}: {label}")
        patient = image.stem
        if patient in seen:
            raise ValueError(f"two files give the case {patient!r}: {seen[patient]} and {image}")
        seen[patient] = image
        cases.append({"image": str(image), "label": str(label), "patient": patient})
    logger.info("found %d PROMISE12 cases under %s", len(cases), root)
    return cases


def find_promise12_inputs(input_dir: str | Path) -> list[dict]:
    """Images to segment: every ``*.mhd`` / ``*.nii`` / ``*.nii.gz`` under ``input_dir`` but the segmentations."""
    root = Path(input_dir).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"input_dir does not exist: {root}")
    files = sorted(
        p for pattern in ("*.mhd", "*.nii", "*.nii.gz") for p in root.rglob(pattern) if "_segmentation" not in p.name
    )
    if not files:
        raise FileNotFoundError(f"no .mhd, .nii or .nii.gz image under input_dir {root}")
    return [{"image": str(p)} for p in files]


def check_promise12_case(case: dict, atol: float = 1e-3) -> None:
    """Load a case and check it: readable files, same grid (size, spacing, origin, direction), finite image,
    label values in {0, 1}.

    Raises:
        ValueError: naming the file and what is wrong (a missing ``.raw`` file or a broken header included).
    """
    import SimpleITK as sitk

    loaded = {}
    for key in ("image", "label"):
        try:
            loaded[key] = sitk.ReadImage(case[key])
        except RuntimeError as error:
            raise ValueError(
                f"cannot read PROMISE12 {key} {case[key]}: {str(error).strip().splitlines()[-1]}"
            ) from error
    image, label = loaded["image"], loaded["label"]
    if image.GetSize() != label.GetSize():
        raise ValueError(
            f"label {case['label']} has size {label.GetSize()}, its image {case['image']} {image.GetSize()}"
        )
    for what in ("GetSpacing", "GetOrigin", "GetDirection"):
        a, b = np.asarray(getattr(image, what)()), np.asarray(getattr(label, what)())
        if np.abs(a - b).max() > atol:
            raise ValueError(
                f"label {case['label']} and image {case['image']} differ in {what[3:].lower()}: {b} vs {a}"
            )
    if not np.isfinite(sitk.GetArrayViewFromImage(image)).all():
        raise ValueError(f"image {case['image']} holds NaN/inf values")
    values = np.unique(sitk.GetArrayViewFromImage(label))
    bad = values[~np.isin(values, (0, 1))]
    if bad.size:
        raise ValueError(f"label {case['label']} has values {bad[:10].tolist()} outside range(2)")


def make_promise12_datalist(
    dataset_dir: str | Path,
    output_json: str | Path | None = None,
    num_validation: int | float = 0.2,
    seed: int = 0,
    check: bool = True,
) -> dict:
    """Find, check and split the PROMISE12 training cases by patient (one case each), and write the datalist JSON."""
    cases = find_promise12_cases(dataset_dir)
    if check:
        for case in cases:
            check_promise12_case(case)
    return make_split_datalist(cases, dataset_dir, output_json, num_validation, seed)


def main(argv: Sequence[str] | None = None) -> dict:
    """Command line: ``python -m wss_monai.data.promise12 --dataset_dir DIR --output FILE``."""
    parser = argparse.ArgumentParser(prog="python -m wss_monai.data.promise12", description=__doc__.splitlines()[0])
    add_datalist_arguments(parser, "folder holding the CaseXX.mhd files (any depth)", unit="cases")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return make_promise12_datalist(
        args.dataset_dir, args.output, num_validation=args.num_validation, seed=args.seed, check=not args.no_check
    )


if __name__ == "__main__":
    main()
