"""Reader for the raw ACDC layout and a seeded, patient-level train/validation split.

Raw layout (Bernard et al., "Deep learning techniques for automatic MRI cardiac multi-structures
segmentation and diagnosis: is the problem solved?", IEEE TMI 2018)::

    <dataset_dir>/training/patient001/patient001_frame01.nii.gz            image (ED)
    <dataset_dir>/training/patient001/patient001_frame01_gt.nii.gz         0 bg, 1 RV, 2 MYO, 3 LV
    <dataset_dir>/training/patient001/patient001_frame01_scribble.nii.gz   optional scribbles
    <dataset_dir>/training/patient001/patient001_4d.nii.gz                 skipped
    <dataset_dir>/training/patient001/Info.cfg                             skipped

Example:
    >>> from wss_monai.data.phantoms import make_cardiac_phantoms
    >>> import tempfile
    >>> root = make_cardiac_phantoms(tempfile.mkdtemp(), num_patients=4, shape=(48, 48))
    >>> datalist = make_acdc_datalist(root, num_validation=1, seed=0, with_scribbles=True)
    >>> len(datalist["training"]), len(datalist["validation"])
    (6, 2)

Command line::

    python -m wss_monai.data.acdc --dataset_dir /data/acdc --output acdc.json --num_validation 0.2
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from wss_monai.data.checks import validate_cases
from wss_monai.utils.atomic import write_text_atomic
from wss_monai.utils.distributed import is_main_process

__all__ = [
    "add_datalist_arguments",
    "count_or_fraction",
    "find_acdc_cases",
    "make_acdc_datalist",
    "make_split_datalist",
    "split_by_patient",
    "write_datalist",
    "main",
]

logger = logging.getLogger(__name__)

_PATIENT_DIR = re.compile(r"^patient\d+$")
_FRAME_IMAGE = re.compile(r"^(?P<patient>patient\d+)_(?P<frame>frame\d+)(?P<ext>\.nii(?:\.gz)?)$")
SUBSETS = ("training", "testing")


def find_acdc_cases(dataset_dir: str | Path, subset: str = "training", with_scribbles: bool = False) -> list[dict]:
    """List the frames of an ACDC subset, one dictionary per (patient, frame).

    The 4D cine volume (``patientNNN_4d.nii.gz``), ``Info.cfg`` and any other file that is not a
    frame image are skipped.

    Args:
        dataset_dir: folder holding ``training/`` (and optionally ``testing/``).
        subset: ``"training"`` or ``"testing"``.
        with_scribbles: also return the ``patientNNN_frameYY_scribble.nii.gz`` path of every frame.

    Returns:
        ``[{"image": str, "label": str, "patient": "patient001", "frame": "frame01"
        [, "scribble": str]}, ...]`` with absolute paths, sorted by patient then frame.

    Raises:
        ValueError: ``subset`` is not one of ``"training"``, ``"testing"``.
        FileNotFoundError: ``dataset_dir`` or ``dataset_dir/subset`` does not exist or holds no
            ``patientNNN`` folder, or a frame lacks its ``_gt`` (or, with ``with_scribbles``,
            its ``_scribble``) file.
    """
    if subset not in SUBSETS:
        raise ValueError(f"subset must be one of {SUBSETS}, not {subset!r}")
    root = Path(dataset_dir).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"ACDC dataset_dir does not exist: {root}")
    subset_dir = root / subset
    if not subset_dir.is_dir():
        raise FileNotFoundError(f"no {subset!r} folder in the ACDC dataset_dir: {subset_dir}")
    patient_dirs = sorted(p for p in subset_dir.iterdir() if p.is_dir() and _PATIENT_DIR.match(p.name))
    if not patient_dirs:
        raise FileNotFoundError(f"no patientNNN folder under {subset_dir}")

    cases = []
    for patient_dir in patient_dirs:
        frames = []
        for path in patient_dir.iterdir():
            match = _FRAME_IMAGE.match(path.name)
            if match is None or match["patient"] != patient_dir.name:
                continue
            stem, ext = f"{match['patient']}_{match['frame']}", match["ext"]
            label = patient_dir / f"{stem}_gt{ext}"
            if not label.is_file():
                raise FileNotFoundError(f"ground truth missing for {path}: {label}")
            case = {"image": str(path), "label": str(label), "patient": match["patient"], "frame": match["frame"]}
            if with_scribbles:
                scribble = patient_dir / f"{stem}_scribble{ext}"
                if not scribble.is_file():
                    raise FileNotFoundError(f"scribble missing for {path}: {scribble}")
                case["scribble"] = str(scribble)
            frames.append(case)
        if not frames:
            logger.warning("no patientNNN_frameYY image in %s; patient skipped", patient_dir)
        cases.extend(sorted(frames, key=lambda c: c["frame"]))
    logger.info("found %d frames of %d patients in %s", len(cases), len({c["patient"] for c in cases}), subset_dir)
    return cases


def _num_validation_patients(num_validation: int | float, num_patients: int) -> int:
    """Turn a patient count or fraction into a count, checking that both splits are usable."""
    numeric = isinstance(num_validation, (int, float, np.integer, np.floating))
    if isinstance(num_validation, (bool, np.bool_)) or not numeric:
        raise ValueError(f"num_validation must be an int (patients) or a float in (0, 1), not {num_validation!r}")
    if isinstance(num_validation, (int, np.integer)):
        count = int(num_validation)
        if count < 0:
            raise ValueError(f"num_validation must be >= 0 patients, not {count}")
    else:
        if not 0.0 < float(num_validation) < 1.0:
            raise ValueError(f"num_validation as a fraction must be in (0, 1), not {num_validation}")
        count = max(1, int(round(float(num_validation) * num_patients)))
    if count >= num_patients:
        raise ValueError(
            f"num_validation={num_validation} takes {count} of {num_patients} patients and leaves the "
            "training set empty"
        )
    return count


def split_by_patient(cases: Sequence[dict], num_validation: int | float, seed: int, num_test: int = 0) -> dict:
    """Seeded split of cases into training, validation and (optionally) test by patient (frames stay together).

    The patients are shuffled once with ``seed``: the first ``num_validation`` are validation, the
    last ``num_test`` are test, the rest training. ``num_test = 0`` gives the same training and
    validation sets as before test sets existed, and a test set never takes a validation patient.

    Args:
        cases: dictionaries with a ``"patient"`` key (as returned by :func:`find_acdc_cases`).
        num_validation: number of validation patients (int, ``0`` allowed) or a fraction of the
            patients (float in ``(0, 1)``, rounded, at least one patient).
        seed: seed of ``numpy.random.default_rng``; the same seed gives the same split.
        num_test: number of held-out test patients (int >= 0), never trained or validated on.

    Returns:
        ``{"training": [...], "validation": [...]}`` plus ``"test"`` when ``num_test > 0``, each
        keeping the input order of the cases.

    Raises:
        ValueError: no cases, a case without ``"patient"``, or ``num_validation`` / ``num_test``
            out of range or leaving no training patient.
    """
    if len(cases) == 0:
        raise ValueError("cases is empty; nothing to split")
    missing = [i for i, case in enumerate(cases) if "patient" not in case]
    if missing:
        raise ValueError(f"cases at positions {missing[:10]} have no 'patient' key")
    patients = sorted({case["patient"] for case in cases})
    count = _num_validation_patients(num_validation, len(patients))
    if isinstance(num_test, (bool, np.bool_)) or not isinstance(num_test, (int, np.integer)) or num_test < 0:
        raise ValueError(f"num_test must be an int >= 0 (test patients), not {num_test!r}")
    if count + num_test >= len(patients):
        raise ValueError(
            f"num_validation={num_validation} ({count} patients) and num_test={num_test} take "
            f"{count + num_test} of {len(patients)} patients and leave the training set empty"
        )
    order = np.random.default_rng(seed).permutation(len(patients))
    validation_patients = {patients[i] for i in order[:count]}
    test_patients = {patients[i] for i in order[len(patients) - num_test :]} if num_test else set()
    held_out = validation_patients | test_patients
    split = {
        "training": [dict(c) for c in cases if c["patient"] not in held_out],
        "validation": [dict(c) for c in cases if c["patient"] in validation_patients],
    }
    if num_test:
        split["test"] = [dict(c) for c in cases if c["patient"] in test_patients]
    logger.info(
        "split %d patients (seed %s): %d training, %d validation, %d test",
        len(patients),
        seed,
        len(patients) - count - num_test,
        count,
        num_test,
    )
    return split


def make_acdc_datalist(
    dataset_dir: str | Path,
    output_json: str | Path | None = None,
    num_validation: int | float = 0.25,
    seed: int = 0,
    with_scribbles: bool = False,
    check: bool = True,
    num_classes: int = 4,
    scribble_unlabelled: int = 4,
    num_test: int = 0,
) -> dict:
    """Find, check and split the ACDC training frames, and write the datalist JSON.

    Args:
        dataset_dir: folder holding ``training/``.
        output_json: where to write the datalist (indent 2); nothing is written when ``None``.
        num_validation: validation patients, a count (int) or a fraction (float in ``(0, 1)``).
        seed: seed of the patient-level split.
        with_scribbles: add the ``"scribble"`` path to every case (the file must exist).
        check: load every case and validate it with :func:`wss_monai.data.checks.validate_cases`;
            cases with an empty scribble are dropped with a logged warning, other problems raise.
        num_classes: number of label classes (ACDC: 4).
        scribble_unlabelled: value of non-annotated voxels in the scribble files.
        num_test: held-out test patients (see :func:`split_by_patient`).

    Returns:
        ``{"training": [...], "validation": [...], "seed": int, "num_validation": int | float,
        "dataset_dir": str}``, plus ``"test"`` and ``"num_test"`` when ``num_test > 0`` and
        ``"scribble_unlabelled"`` when ``with_scribbles``.
    """
    cases = find_acdc_cases(dataset_dir, subset="training", with_scribbles=with_scribbles)
    if check:
        cases = validate_cases(
            cases, num_classes=num_classes, scribble_unlabelled=scribble_unlabelled, on_empty_scribble="exclude"
        )
    extra = {"scribble_unlabelled": scribble_unlabelled} if with_scribbles else {}
    return make_split_datalist(cases, dataset_dir, output_json, num_validation, seed, num_test=num_test, **extra)


def make_split_datalist(
    cases: Sequence[dict],
    dataset_dir: str | Path,
    output_json: str | Path | None,
    num_validation: int | float,
    seed: int,
    num_test: int = 0,
    **extra,
) -> dict:
    """Splits ``cases`` by patient (:func:`split_by_patient`) and records how, then writes the JSON.

    Returns:
        ``{"training": [...], "validation": [...], "seed": int, "num_validation": int | float,
        "dataset_dir": str, **extra}`` (plus ``"test"`` and ``"num_test"`` when ``num_test > 0``);
        written to ``output_json`` unless it is ``None``.
    """
    datalist = split_by_patient(cases, num_validation=num_validation, seed=seed, num_test=num_test)
    datalist["seed"] = int(seed)
    datalist["num_validation"] = num_validation.item() if hasattr(num_validation, "item") else num_validation
    if num_test:
        datalist["num_test"] = int(num_test)
    datalist["dataset_dir"] = str(Path(dataset_dir).expanduser().resolve())
    datalist.update(extra)
    if output_json is not None:
        write_datalist(datalist, output_json)
    return datalist


def write_datalist(datalist: dict, output_json: str | Path) -> Path:
    """Writes a datalist as indented JSON, creating the folder; returns the path (only rank 0 writes if distributed).

    The file is replaced atomically: a reader, or a run killed meanwhile, never sees half of it.
    """
    output_json = Path(output_json)
    if not is_main_process():
        return output_json
    write_text_atomic(json.dumps(datalist, indent=2) + "\n", output_json)
    logger.info("wrote %s", output_json)
    return output_json


def add_datalist_arguments(parser: argparse.ArgumentParser, dataset_help: str, unit: str = "patients") -> None:
    """The options every datalist command shares: dataset folder, output, split size, seed, checks."""
    parser.add_argument("--dataset_dir", required=True, help=dataset_help)
    parser.add_argument("--output", default=None, help="datalist JSON to write")
    parser.add_argument(
        "--num_validation", type=count_or_fraction, default=0.25, help=f"{unit} (int) or fraction (float)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no_check", action="store_true", help="skip loading and checking every case")


def count_or_fraction(text: str) -> int | float:
    """``"20"`` -> 20 patients, ``"0.2"`` -> a fraction."""
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a patient count or a fraction, not {text!r}") from None


def main(argv: Sequence[str] | None = None) -> dict:
    """Command line: ``python -m wss_monai.data.acdc --dataset_dir DIR --output FILE``."""
    parser = argparse.ArgumentParser(
        prog="python -m wss_monai.data.acdc", description="Write a patient-level ACDC datalist JSON."
    )
    add_datalist_arguments(parser, "folder holding training/")
    parser.add_argument("--with_scribbles", action="store_true", help="add the _scribble.nii.gz files")
    parser.add_argument("--num_test", type=int, default=0, help="held-out test patients")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return make_acdc_datalist(
        args.dataset_dir,
        output_json=args.output,
        num_validation=args.num_validation,
        seed=args.seed,
        with_scribbles=args.with_scribbles,
        check=not args.no_check,
        num_test=args.num_test,
    )


if __name__ == "__main__":
    main()
