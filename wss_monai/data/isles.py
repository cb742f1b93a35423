"""Reader for the raw ISLES 2018 layout and a seeded, patient-level train/validation split.

Raw layout (Hakim et al., "Predicting infarct core from computed tomography perfusion in acute
ischemia with machine learning: lessons from the ISLES challenge", Stroke 2021; ISLES 2018)::

    <dataset_dir>/TRAINING/case_1/SMIR.Brain.XX.O.CT.345562/SMIR.Brain.XX.O.CT.345562.nii
    <dataset_dir>/TRAINING/case_1/SMIR.Brain.XX.O.CT_CBF.345563/SMIR.Brain.XX.O.CT_CBF.345563.nii
    <dataset_dir>/TRAINING/case_1/SMIR.Brain.XX.O.CT_CBV.<id>/...nii
    <dataset_dir>/TRAINING/case_1/SMIR.Brain.XX.O.CT_MTT.<id>/...nii
    <dataset_dir>/TRAINING/case_1/SMIR.Brain.XX.O.CT_Tmax.<id>/...nii
    <dataset_dir>/TRAINING/case_1/SMIR.Brain.XX.O.CT_4DPWI.<id>/...nii      skipped (4D source)
    <dataset_dir>/TRAINING/case_1/SMIR.Brain.XX.O.OT.<id>/...nii            label: 0 bg, 1 infarct core
    <dataset_dir>/TESTING/case_1/...                                        same, without OT

Every case is one slab of 2-16 axial slices; the perfusion maps of a case share its grid and are
returned as the channels of one ``"image"`` (load them with ``LoadImaged(keys="image")`` followed
by ``EnsureChannelFirstd``, which stacks a list of files on the channel axis).

**Patients.** The 94 training slabs come from fewer patients: when a stroke did not fit in one
slab, a second slab of the same patient was released as a separate case, usually with the next
case id. The data do not say which cases pair up, so by default every case is its own patient,
and a split may then put two slabs of one patient on both sides (a leak). Pass ``patient_map``
(case -> patient, e.g. from the organisers' metadata or from your own inspection of the slabs)
to keep such slabs together; cases missing from the map stay their own patient.

Example:
    >>> from wss_monai.data.lesion_phantoms import make_isles_phantoms
    >>> import json, tempfile
    >>> root = make_isles_phantoms(tempfile.mkdtemp(), num_cases=4, seed=0)
    >>> cases = find_isles_cases(root)
    >>> [len(c["image"]) for c in cases], cases[0]["patient"]
    ([5, 5, 5, 5], 'case_1')
    >>> patient_map = json.loads((root / "phantom_patients.json").read_text())
    >>> datalist = make_isles_datalist(root, num_validation=1, seed=0, patient_map=patient_map)
    >>> sorted(datalist)
    ['dataset_dir', 'modalities', 'num_validation', 'seed', 'training', 'validation']

Command line::

    python -m wss_monai.data.isles --dataset_dir /data/isles2018 --output isles.json \\
        --num_validation 0.2 [--patient_map pairs.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from wss_monai.data.acdc import add_datalist_arguments, make_split_datalist
from wss_monai.data.checks import check_case

__all__ = [
    "ISLES_MODALITIES",
    "find_isles_cases",
    "make_isles_datalist",
    "validate_multichannel_cases",
    "main",
]

logger = logging.getLogger(__name__)

ISLES_MODALITIES = ("CT", "CT_CBF", "CT_CBV", "CT_MTT", "CT_Tmax")
"""Default channel order: the plain CT and the four perfusion maps."""
LABEL_MODALITY = "OT"
SUBSETS = ("TRAINING", "TESTING")

_CASE_DIR = re.compile(r"^case_(?P<number>\d+)$")
_MODALITY_DIR = re.compile(r"^SMIR\.Brain\.XX\.O\.(?P<modality>[A-Za-z0-9_]+)\.(?P<id>\d+)$")
_NIFTI = (".nii", ".nii.gz")


def _check_modalities(modalities: Sequence[str]) -> tuple[str, ...]:
    if isinstance(modalities, str) or not isinstance(modalities, Sequence):
        raise ValueError(f"modalities must be a sequence of modality names, not {modalities!r}")
    modalities = tuple(modalities)
    if not modalities:
        raise ValueError("modalities must name at least one modality, got ()")
    bad = [m for m in modalities if not isinstance(m, str) or not re.fullmatch(r"[A-Za-z0-9_]+", m)]
    if bad:
        raise ValueError(f"modalities must be names such as 'CT_CBF', got {bad}")
    if LABEL_MODALITY in modalities:
        raise ValueError(f"modalities must not include the label {LABEL_MODALITY!r}, got {modalities}")
    duplicates = sorted({m for m in modalities if modalities.count(m) > 1})
    if duplicates:
        raise ValueError(f"modalities must not repeat a name, got {modalities} (repeated: {duplicates})")
    return modalities


def _normalise_patient_map(patient_map: Mapping | None) -> dict[str, str]:
    """Keys ``"case_12"``, ``"12"`` or ``12`` all become ``"case_12"``; values become strings."""
    if patient_map is None:
        return {}
    if not isinstance(patient_map, Mapping):
        raise ValueError(f"patient_map must be a mapping case -> patient, not {type(patient_map).__name__}")
    normalised = {}
    for key, patient in patient_map.items():
        text = str(key)
        if re.fullmatch(r"\d+", text):
            text = f"case_{int(text)}"
        if not _CASE_DIR.match(text):
            raise ValueError(f"patient_map keys must be case ids such as 'case_12' or 12, got {key!r}")
        text = f"case_{int(_CASE_DIR.match(text)['number'])}"  # "case_012" -> "case_12"
        if text in normalised and normalised[text] != str(patient):
            raise ValueError(f"patient_map gives {text} two patients: {normalised[text]!r} and {patient!r}")
        normalised[text] = str(patient)
    return normalised


def _modality_file(folder: Path) -> Path:
    """The NIfTI file of a ``SMIR.Brain.XX.O.<modality>.<id>`` folder (preferably named like it)."""
    for ext in _NIFTI:
        named = folder / f"{folder.name}{ext}"
        if named.is_file():
            return named
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(_NIFTI))
    if not files:
        raise FileNotFoundError(f"no .nii or .nii.gz file in {folder}")
    if len(files) > 1:
        raise ValueError(f"several NIfTI files in {folder} and none named {folder.name}.nii: {[p.name for p in files]}")
    return files[0]


def find_isles_cases(
    dataset_dir: str | Path,
    subset: str = "TRAINING",
    modalities: Sequence[str] = ISLES_MODALITIES,
    patient_map: Mapping[str | int, str] | None = None,
) -> list[dict]:
    """List the slabs (cases) of an ISLES 2018 subset, one dictionary per ``case_N`` folder.

    Folders of other modalities (e.g. ``CT_4DPWI``) and anything that is not a ``case_N`` folder
    are skipped.

    Args:
        dataset_dir: folder holding ``TRAINING/`` (and optionally ``TESTING/``).
        subset: ``"TRAINING"`` or ``"TESTING"`` (no ``OT`` label, so no ``"label"`` key).
        modalities: channels of ``"image"``, in this order; every case must have all of them.
        patient_map: ``{case: patient}`` with cases as ``"case_12"`` or ``12``; slabs mapped to
            the same patient stay on one side of :func:`wss_monai.data.acdc.split_by_patient`. Cases not in the map
            are their own patient (``"patient" == "case_N"``), which is the default for all.

    Returns:
        ``[{"image": [str, ...], "label": str, "patient": str, "case": "case_1"}, ...]`` with
        absolute paths, one image path per modality, sorted by case number.

    Raises:
        ValueError: ``subset`` or ``modalities`` invalid, a ``patient_map`` key that names no
            case found, a case with two folders of one modality or an ambiguous folder content.
        FileNotFoundError: ``dataset_dir`` or ``dataset_dir/subset`` does not exist or holds no
            ``case_N`` folder, or a case lacks a modality or its ``OT`` folder, or a modality
            folder holds no NIfTI file (the message names the folder and what is missing).
    """
    if subset not in SUBSETS:
        raise ValueError(f"subset must be one of {SUBSETS}, not {subset!r}")
    modalities = _check_modalities(modalities)
    mapping = _normalise_patient_map(patient_map)
    root = Path(dataset_dir).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"ISLES dataset_dir does not exist: {root}")
    subset_dir = root / subset
    if not subset_dir.is_dir():
        raise FileNotFoundError(f"no {subset!r} folder in the ISLES dataset_dir: {subset_dir}")
    case_dirs = sorted(
        (p for p in subset_dir.iterdir() if p.is_dir() and _CASE_DIR.match(p.name)),
        key=lambda p: int(_CASE_DIR.match(p.name)["number"]),
    )
    if not case_dirs:
        raise FileNotFoundError(f"no case_N folder under {subset_dir}")
    wanted = (*modalities, LABEL_MODALITY) if subset == "TRAINING" else modalities

    cases = []
    for case_dir in case_dirs:
        folders: dict[str, Path] = {}
        for folder in case_dir.iterdir():
            match = _MODALITY_DIR.match(folder.name)
            if not folder.is_dir() or match is None or match["modality"] not in wanted:
                continue
            if match["modality"] in folders:
                raise ValueError(
                    f"two {match['modality']} folders in {case_dir}: {folders[match['modality']].name}, {folder.name}"
                )
            folders[match["modality"]] = folder
        missing = [m for m in wanted if m not in folders]
        if missing:
            raise FileNotFoundError(
                f"{case_dir} lacks the folders SMIR.Brain.XX.O.<modality>.<id> of {missing}"
                + (" (OT is the label)" if LABEL_MODALITY in missing else "")
            )
        name = f"case_{int(_CASE_DIR.match(case_dir.name)['number'])}"
        case = {"image": [str(_modality_file(folders[m])) for m in modalities]}
        if subset == "TRAINING":
            case["label"] = str(_modality_file(folders[LABEL_MODALITY]))
        case["patient"] = mapping.get(name, name)
        case["case"] = name
        cases.append(case)
    unknown = sorted(set(mapping) - {c["case"] for c in cases})
    if unknown:
        raise ValueError(f"patient_map names cases not found under {subset_dir}: {unknown[:10]}")
    logger.info("found %d cases of %d patients in %s", len(cases), len({c["patient"] for c in cases}), subset_dir)
    return cases


def validate_multichannel_cases(cases: Sequence[dict], num_classes: int, atol: float = 1e-3) -> list[dict]:
    """Check every channel of every case against its label with :func:`wss_monai.data.checks.check_case`.

    Args:
        cases: ``{"image": [path, ...] | path, "label": path}`` dictionaries.
        num_classes: label values must lie in ``range(num_classes)``.
        atol: largest absolute difference allowed between the affines of a channel and the label.

    Returns:
        The cases, unchanged (warnings, such as classes absent from a label, are logged once per case).

    Raises:
        ValueError: a case without ``"image"`` or ``"label"``, a channel that differs from the label in
            shape or affine, holds NaN/inf, or label values out of range (the message names the file).
        FileNotFoundError: a file does not exist.
    """
    for case in cases:
        missing = [key for key in ("image", "label") if key not in case]
        if missing:
            raise ValueError(f"case is missing the keys {missing}: {case}")
        channels = [case["image"]] if isinstance(case["image"], (str, Path)) else list(case["image"])
        warnings: list[str] = []
        for channel in channels:
            for warning in check_case(
                {"image": channel, "label": case["label"]}, num_classes, scribble_unlabelled=None, atol=atol
            ):
                if warning not in warnings:
                    warnings.append(warning)
        for warning in warnings:
            logger.warning(warning)
    logger.info("validated %d multi-channel cases", len(cases))
    return list(cases)


def make_isles_datalist(
    dataset_dir: str | Path,
    output_json: str | Path | None = None,
    num_validation: int | float = 0.25,
    seed: int = 0,
    modalities: Sequence[str] = ISLES_MODALITIES,
    patient_map: Mapping[str | int, str] | None = None,
    check: bool = True,
) -> dict:
    """Find, check and split the ISLES 2018 training cases by patient, and write the datalist JSON.

    Args:
        dataset_dir: folder holding ``TRAINING/``.
        output_json: where to write the datalist (indent 2); nothing is written when ``None``.
        num_validation: validation patients, a count (int) or a fraction (float in ``(0, 1)``).
        seed: seed of the patient-level split.
        modalities: channels of ``"image"``, in this order.
        patient_map: ``{case: patient}`` grouping slabs of one patient (see the module docstring);
            ``None``: one patient per case.
        check: load every channel and label and check their grids and values
            (:func:`validate_multichannel_cases`, labels in ``{0, 1}``).

    Returns:
        ``{"training": [...], "validation": [...], "seed": int, "num_validation": int | float,
        "dataset_dir": str, "modalities": [str, ...]}``.
    """
    cases = find_isles_cases(dataset_dir, subset="TRAINING", modalities=modalities, patient_map=patient_map)
    if check:
        cases = validate_multichannel_cases(cases, num_classes=2)
    return make_split_datalist(cases, dataset_dir, output_json, num_validation, seed, modalities=list(modalities))


def main(argv: Sequence[str] | None = None) -> dict:
    """Command line: ``python -m wss_monai.data.isles --dataset_dir DIR --output FILE``."""
    parser = argparse.ArgumentParser(
        prog="python -m wss_monai.data.isles", description="Write a patient-level ISLES 2018 datalist JSON."
    )
    add_datalist_arguments(parser, "folder holding TRAINING/", unit="patients")
    parser.add_argument("--modalities", nargs="+", default=list(ISLES_MODALITIES), help="channels, in order")
    parser.add_argument("--patient_map", default=None, help='JSON file {"case_1": "patientA", ...}')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    patient_map = None
    if args.patient_map is not None:
        path = Path(args.patient_map)
        if not path.is_file():
            raise FileNotFoundError(f"patient_map file does not exist: {path}")
        patient_map = json.loads(path.read_text())
    return make_isles_datalist(
        args.dataset_dir,
        output_json=args.output,
        num_validation=args.num_validation,
        seed=args.seed,
        modalities=args.modalities,
        patient_map=patient_map,
        check=not args.no_check,
    )


if __name__ == "__main__":
    main()
