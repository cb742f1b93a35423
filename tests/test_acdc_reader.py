"""Reader of the raw ACDC layout, patient-level split and datalist writer (on a tiny fake tree)."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from wss_monai.data.acdc import find_acdc_cases, main, make_acdc_datalist, split_by_patient


def _save(path: Path, array: np.ndarray) -> None:
    nib.save(nib.Nifti1Image(array, np.diag([1.5, 1.5, 10.0, 1.0])), str(path))


def make_fake_acdc(
    root: Path, num_patients: int = 4, frames=("frame01", "frame12"), subset="training", scribbles: bool = True
) -> Path:
    """Tiny ACDC tree: 4x4x2 volumes, a _4d file and an Info.cfg per patient."""
    label = np.zeros((4, 4, 2), np.uint8)
    label[1, 1], label[1, 2], label[2, 2] = 1, 2, 3
    scribble = np.full((4, 4, 2), 4, np.uint8)
    scribble[0, 0, 0], scribble[2, 2, 1] = 0, 3
    for k in range(1, num_patients + 1):
        folder = root / subset / f"patient{k:03d}"
        folder.mkdir(parents=True)
        for frame in frames:
            stem = folder / f"patient{k:03d}_{frame}"
            _save(Path(f"{stem}.nii.gz"), np.random.default_rng(k).random((4, 4, 2)).astype(np.float32))
            _save(Path(f"{stem}_gt.nii.gz"), label)
            if scribbles:
                _save(Path(f"{stem}_scribble.nii.gz"), scribble)
        _save(folder / f"patient{k:03d}_4d.nii.gz", np.zeros((4, 4, 2, 3), np.float32))
        (folder / "Info.cfg").write_text("ED: 1\nES: 12\n")
    return root


def test_find_cases_sorted_skips_4d_and_info(tmp_path):
    make_fake_acdc(tmp_path, num_patients=3, frames=("frame12", "frame01"))
    cases = find_acdc_cases(tmp_path)
    assert [(c["patient"], c["frame"]) for c in cases] == [
        (f"patient{k:03d}", f) for k in (1, 2, 3) for f in ("frame01", "frame12")
    ]
    for case in cases:
        assert set(case) == {"image", "label", "patient", "frame"}
        assert Path(case["image"]).is_absolute()
        assert case["image"].endswith(f"{case['patient']}_{case['frame']}.nii.gz")
        assert case["label"] == case["image"].replace(".nii.gz", "_gt.nii.gz")
        assert "_4d" not in case["image"]


def test_find_cases_with_scribbles(tmp_path):
    make_fake_acdc(tmp_path, num_patients=2)
    cases = find_acdc_cases(tmp_path, with_scribbles=True)
    assert len(cases) == 4
    assert all(c["scribble"] == c["image"].replace(".nii.gz", "_scribble.nii.gz") for c in cases)


def test_testing_subset(tmp_path):
    make_fake_acdc(tmp_path, num_patients=2, subset="testing", scribbles=False)
    assert len(find_acdc_cases(tmp_path, subset="testing")) == 4
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "training"))):
        find_acdc_cases(tmp_path)
    with pytest.raises(ValueError, match="subset"):
        find_acdc_cases(tmp_path, subset="validation")


def test_missing_dataset_dir_and_empty_subset(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        find_acdc_cases(missing)
    (tmp_path / "training" / "notes").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no patientNNN folder"):
        find_acdc_cases(tmp_path)


def test_missing_gt_names_the_file(tmp_path):
    make_fake_acdc(tmp_path, num_patients=2)
    gt = tmp_path / "training" / "patient002" / "patient002_frame12_gt.nii.gz"
    gt.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(gt))):
        find_acdc_cases(tmp_path)


def test_missing_scribble_names_the_file(tmp_path):
    make_fake_acdc(tmp_path, num_patients=2)
    scribble = tmp_path / "training" / "patient001" / "patient001_frame01_scribble.nii.gz"
    scribble.unlink()
    assert len(find_acdc_cases(tmp_path)) == 4  # not needed without scribbles
    with pytest.raises(FileNotFoundError, match=re.escape(str(scribble))):
        find_acdc_cases(tmp_path, with_scribbles=True)


def _cases(num_patients: int) -> list[dict]:
    return [
        {"image": f"p{k}_{f}", "patient": f"patient{k:03d}", "frame": f}
        for k in range(num_patients)
        for f in ("frame01", "frame12")
    ]


def _patients(cases) -> set[str]:
    return {c["patient"] for c in cases}


@pytest.mark.parametrize("num_validation, expected", [(3, 3), (0.25, 5), (0.01, 1), (0, 0)])
def test_split_is_by_patient(num_validation, expected):
    cases = _cases(20)
    original = [dict(c) for c in cases]
    split = split_by_patient(cases, num_validation=num_validation, seed=0)
    training, validation = _patients(split["training"]), _patients(split["validation"])
    assert len(validation) == expected
    assert not training & validation
    assert training | validation == _patients(cases)
    assert len(split["training"]) + len(split["validation"]) == len(cases)
    for part in split.values():  # both frames of a patient travel together
        assert all(sum(c["patient"] == p for c in part) == 2 for p in _patients(part))
    assert cases == original


def test_split_seeded():
    cases = _cases(20)
    first = split_by_patient(cases, 5, seed=7)
    assert split_by_patient(cases, 5, seed=7) == first
    others = [_patients(split_by_patient(cases, 5, seed=s)["validation"]) for s in range(8, 12)]
    assert any(other != _patients(first["validation"]) for other in others)


@pytest.mark.parametrize(
    "bad, message",
    [
        (4, "training set empty"),
        (5, "training set empty"),
        (-1, ">= 0"),
        (1.0, r"\(0, 1\)"),
        (1.5, r"\(0, 1\)"),
        (0.0, r"\(0, 1\)"),
        (True, "num_validation"),
        ("2", "num_validation"),
    ],
)
def test_split_bad_num_validation(bad, message):
    with pytest.raises(ValueError, match=message):
        split_by_patient(_cases(4), bad, seed=0)


def test_held_out_test_patients_never_touch_training_or_validation():
    cases = _cases(20)
    without = split_by_patient(cases, 4, seed=3)
    split = split_by_patient(cases, 3, seed=3, num_test=5)
    training, validation, test = (_patients(split[k]) for k in ("training", "validation", "test"))
    assert (len(training), len(validation), len(test)) == (12, 3, 5)
    assert not training & validation and not training & test and not validation & test
    assert validation <= _patients(without["validation"])  # the first patients of the same permutation
    assert not test & _patients(without["validation"])  # test patients come from the end of it
    assert split_by_patient(cases, 4, seed=3, num_test=0) == without  # no test: the split of before
    assert "test" not in without


@pytest.mark.parametrize(
    "num_test, message", [(-1, "num_test must be an int >= 0"), (1.5, "num_test must be an int"), (17, "empty")]
)
def test_bad_num_test(num_test, message):
    with pytest.raises(ValueError, match=message):
        split_by_patient(_cases(20), 3, seed=0, num_test=num_test)


def test_split_empty_cases():
    with pytest.raises(ValueError, match="empty"):
        split_by_patient([], 1, seed=0)


def test_datalist_json_round_trip(tmp_path):
    make_fake_acdc(tmp_path / "acdc", num_patients=8)
    output = tmp_path / "out" / "datalist.json"
    datalist = make_acdc_datalist(
        tmp_path / "acdc", output_json=output, num_validation=0.25, seed=3, with_scribbles=True
    )
    assert json.loads(output.read_text()) == datalist
    assert datalist["seed"] == 3 and datalist["num_validation"] == 0.25
    assert datalist["dataset_dir"] == str((tmp_path / "acdc").resolve())
    assert len(_patients(datalist["validation"])) == 2 and len(datalist["training"]) == 12
    assert all("scribble" in c for c in datalist["training"] + datalist["validation"])
    assert output.read_text().startswith('{\n  "training"')  # indent 2


def test_datalist_excludes_empty_scribbles_and_raises_on_bad_labels(tmp_path, caplog):
    make_fake_acdc(tmp_path, num_patients=4)
    empty = tmp_path / "training" / "patient003" / "patient003_frame01_scribble.nii.gz"
    _save(empty, np.full((4, 4, 2), 4, np.uint8))
    with caplog.at_level(logging.WARNING):
        datalist = make_acdc_datalist(tmp_path, num_validation=1, with_scribbles=True)
    images = [c["image"] for c in datalist["training"] + datalist["validation"]]
    assert len(images) == 7 and str(empty).replace("_scribble", "") not in images
    assert str(empty) in caplog.text
    # without scribbles nothing is excluded; with check=False nothing is even loaded
    assert len(sum((make_acdc_datalist(tmp_path, num_validation=1)[k] for k in ("training", "validation")), [])) == 8
    _save(tmp_path / "training" / "patient002" / "patient002_frame12_gt.nii.gz", np.full((4, 4, 2), 7, np.uint8))
    with pytest.raises(ValueError, match=r"patient002_frame12_gt.*\[7\]"):
        make_acdc_datalist(tmp_path, num_validation=1)
    assert make_acdc_datalist(tmp_path, num_validation=1, check=False)["validation"]


def test_cli_writes_json(tmp_path):
    make_fake_acdc(tmp_path / "acdc", num_patients=5)
    output = tmp_path / "datalist.json"
    main(
        [
            "--dataset_dir",
            str(tmp_path / "acdc"),
            "--output",
            str(output),
            "--num_validation",
            "2",
            "--seed",
            "1",
            "--with_scribbles",
        ]
    )
    datalist = json.loads(output.read_text())
    assert datalist["num_validation"] == 2 and datalist["seed"] == 1
    assert len(_patients(datalist["validation"])) == 2
    assert all("scribble" in c for c in datalist["training"])
    main(["--dataset_dir", str(tmp_path / "acdc"), "--output", str(output), "--num_validation", "0.4", "--no_check"])
    assert json.loads(output.read_text())["num_validation"] == 0.4


def test_package_exports():
    import wss_monai.data as data

    assert data.make_acdc_datalist is make_acdc_datalist
    for name in data.__all__:
        assert callable(getattr(data, name))
    with pytest.raises(AttributeError, match="no_such_name"):
        data.no_such_name  # noqa: B018
