"""Reader of the raw ISLES 2018 layout, patient map, patient-level split and datalist writer."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from wss_monai.data.isles import ISLES_MODALITIES, find_isles_cases, main, make_isles_datalist
from wss_monai.data.lesion_phantoms import make_isles_phantoms

AFFINE = np.diag([0.9, 0.9, 5.0, 1.0])


def _save(path: Path, array: np.ndarray, affine: np.ndarray = AFFINE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), str(path))


def make_fake_isles(root: Path, numbers=(1, 2, 10), subset: str = "TRAINING", with_4dpwi: bool = True) -> Path:
    """Tiny ISLES tree: 4x4x2 maps (each filled with its modality index), an OT and a 4D PWI folder."""
    label = np.zeros((4, 4, 2), np.uint8)
    label[1:3, 1, 0] = 1
    for number in numbers:
        case = root / subset / f"case_{number}"
        names = [*ISLES_MODALITIES, "OT"] if subset == "TRAINING" else list(ISLES_MODALITIES)
        if with_4dpwi:
            names.append("CT_4DPWI")
        for index, name in enumerate(names):
            stem = f"SMIR.Brain.XX.O.{name}.{1000 * number + index}"
            if name == "OT":
                data = label
            elif name == "CT_4DPWI":
                data = np.zeros((4, 4, 2, 3), np.float32)
            else:
                data = np.full((4, 4, 2), index, np.float32)
            _save(case / stem / f"{stem}.nii", data)
    (root / subset / "README.txt").write_text("not a case\n")
    (root / subset / "notes").mkdir(exist_ok=True)
    return root


def _folder(root: Path, number: int, modality: str) -> Path:
    (folder,) = (root / "TRAINING" / f"case_{number}").glob(f"SMIR.Brain.XX.O.{modality}.*")
    return folder


def test_find_cases_sorted_with_channels_in_order(tmp_path):
    make_fake_isles(tmp_path)
    cases = find_isles_cases(tmp_path)
    assert [c["case"] for c in cases] == ["case_1", "case_2", "case_10"]  # numeric, not lexical
    for case in cases:
        assert set(case) == {"image", "label", "patient", "case"}
        assert case["patient"] == case["case"]
        assert len(case["image"]) == 5 and all(Path(p).is_absolute() for p in case["image"])
        modalities = [re.search(r"SMIR\.Brain\.XX\.O\.(\w+)\.\d+\.nii$", p)[1] for p in case["image"]]
        assert modalities == list(ISLES_MODALITIES)
        values = [float(np.asanyarray(nib.load(p).dataobj).max()) for p in case["image"]]
        assert values == [0.0, 1.0, 2.0, 3.0, 4.0]
        assert ".OT." in case["label"] and "4DPWI" not in "".join(case["image"])


def test_modalities_choose_and_order_the_channels(tmp_path):
    make_fake_isles(tmp_path, numbers=(3,))
    (case,) = find_isles_cases(tmp_path, modalities=("CT_Tmax", "CT"))
    assert [float(np.asanyarray(nib.load(p).dataobj).max()) for p in case["image"]] == [4.0, 0.0]
    (case,) = find_isles_cases(tmp_path, modalities=["CT_4DPWI"])
    assert "CT_4DPWI" in case["image"][0]


@pytest.mark.parametrize(
    "modalities, message",
    [((), "at least one"), ("CT", "sequence"), (("CT", "CT"), "repeat"), (("CT", "OT"), "label"), (("C T",), "names")],
)
def test_bad_modalities(tmp_path, modalities, message):
    make_fake_isles(tmp_path, numbers=(1,))
    with pytest.raises(ValueError, match=message):
        find_isles_cases(tmp_path, modalities=modalities)


@pytest.mark.parametrize("modality", ["CT_CBF", "OT"])
def test_missing_modality_or_label_names_the_folder(tmp_path, modality):
    make_fake_isles(tmp_path)
    folder = _folder(tmp_path, 2, modality)
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    case_dir = tmp_path / "TRAINING" / "case_2"
    with pytest.raises(FileNotFoundError, match=rf"{re.escape(str(case_dir))} lacks .*'{modality}'"):
        find_isles_cases(tmp_path)
    if modality == "CT_CBF":  # not needed when not asked for
        assert len(find_isles_cases(tmp_path, modalities=("CT", "CT_Tmax"))) == 3


def test_modality_folder_without_nifti_names_the_folder(tmp_path):
    make_fake_isles(tmp_path, numbers=(1,))
    folder = _folder(tmp_path, 1, "CT_MTT")
    nifti = next(folder.glob("*.nii"))
    nifti.rename(folder / "readme.txt")
    with pytest.raises(FileNotFoundError, match=rf"no \.nii or \.nii\.gz file in {re.escape(str(folder))}"):
        find_isles_cases(tmp_path)
    _save(folder / "other_name.nii.gz", np.zeros((4, 4, 2), np.float32))  # a single file, named otherwise
    assert find_isles_cases(tmp_path)[0]["image"][3] == str(folder / "other_name.nii.gz")


def test_duplicate_modality_folder_raises(tmp_path):
    make_fake_isles(tmp_path, numbers=(1,))
    stem = "SMIR.Brain.XX.O.CT_CBV.99999"
    _save(tmp_path / "TRAINING" / "case_1" / stem / f"{stem}.nii", np.zeros((4, 4, 2), np.float32))
    with pytest.raises(ValueError, match="two CT_CBV folders"):
        find_isles_cases(tmp_path)


def test_missing_dirs_and_testing_subset(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nowhere"))):
        find_isles_cases(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "TRAINING"))):
        find_isles_cases(tmp_path)
    (tmp_path / "TRAINING" / "notes").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no case_N folder"):
        find_isles_cases(tmp_path)
    with pytest.raises(ValueError, match="subset"):
        find_isles_cases(tmp_path, subset="training")
    make_fake_isles(tmp_path, numbers=(4, 5), subset="TESTING")
    cases = find_isles_cases(tmp_path, subset="TESTING")
    assert [c["case"] for c in cases] == ["case_4", "case_5"] and all("label" not in c for c in cases)


def test_patient_map_groups_slabs(tmp_path):
    make_fake_isles(tmp_path, numbers=range(1, 9))
    patient_map = {"case_1": "A", 2: "A", "3": "B", "case_4": "B"}  # keys as names, ints or digit strings
    cases = find_isles_cases(tmp_path, patient_map=patient_map)
    assert [c["patient"] for c in cases] == ["A", "A", "B", "B", "case_5", "case_6", "case_7", "case_8"]
    for seed in range(6):
        datalist = make_isles_datalist(tmp_path, num_validation=2, seed=seed, patient_map=patient_map)
        training = {c["patient"] for c in datalist["training"]}
        validation = {c["patient"] for c in datalist["validation"]}
        assert not training & validation and len(validation) == 2
        for part in ("training", "validation"):
            names = {c["case"] for c in datalist[part]}
            assert {"case_1", "case_2"} <= names or not {"case_1", "case_2"} & names
            assert {"case_3", "case_4"} <= names or not {"case_3", "case_4"} & names


@pytest.mark.parametrize(
    "patient_map, message",
    [({"case_99": "A"}, r"not found .*\['case_99'\]"), ({"slab1": "A"}, "case ids"), ([("case_1", "A")], "mapping")],
)
def test_bad_patient_map(tmp_path, patient_map, message):
    make_fake_isles(tmp_path, numbers=(1, 2))
    with pytest.raises(ValueError, match=message):
        find_isles_cases(tmp_path, patient_map=patient_map)


def test_datalist_json_and_check(tmp_path):
    make_fake_isles(tmp_path / "isles", numbers=range(1, 9))
    output = tmp_path / "out" / "isles.json"
    datalist = make_isles_datalist(tmp_path / "isles", output_json=output, num_validation=0.25, seed=3)
    assert json.loads(output.read_text()) == datalist
    assert datalist["seed"] == 3 and datalist["num_validation"] == 0.25
    assert datalist["modalities"] == list(ISLES_MODALITIES)
    assert len(datalist["validation"]) == 2 and len(datalist["training"]) == 6
    label = _folder(tmp_path / "isles", 5, "OT")
    label_file = next(label.glob("*.nii"))
    _save(label_file, np.zeros((4, 4, 3), np.uint8))  # wrong grid
    with pytest.raises(ValueError, match=rf"shape mismatch: .* {re.escape(str(label_file))} has shape \(4, 4, 3\)"):
        make_isles_datalist(tmp_path / "isles")
    assert make_isles_datalist(tmp_path / "isles", check=False)["training"]


def test_phantom_tree_and_its_patient_map(tmp_path):
    root = make_isles_phantoms(tmp_path, num_cases=5, seed=2, shape=(32, 32), num_slices=(2, 3))
    patient_map = json.loads((root / "phantom_patients.json").read_text())
    cases = find_isles_cases(root, patient_map=patient_map)
    assert [c["case"] for c in cases] == [f"case_{k}" for k in range(1, 6)]
    assert [c["patient"] for c in cases] == [patient_map[c["case"]] for c in cases]
    datalist = make_isles_datalist(root, num_validation=1, seed=0, patient_map=patient_map)  # checks the files
    training = {c["patient"] for c in datalist["training"]}
    assert not training & {c["patient"] for c in datalist["validation"]}


def test_cli_writes_json(tmp_path):
    make_fake_isles(tmp_path / "isles", numbers=range(1, 6))
    (tmp_path / "map.json").write_text(json.dumps({"case_1": "P", "case_2": "P"}))
    output = tmp_path / "isles.json"
    argv = ["--dataset_dir", str(tmp_path / "isles"), "--output", str(output), "--num_validation", "1"]
    datalist = main([*argv, "--patient_map", str(tmp_path / "map.json"), "--modalities", "CT_CBF", "CT"])
    assert json.loads(output.read_text()) == datalist
    assert datalist["modalities"] == ["CT_CBF", "CT"] and len(datalist["training"][0]["image"]) == 2
    assert sum(c["patient"] == "P" for c in datalist["training"] + datalist["validation"]) == 2
    with pytest.raises(FileNotFoundError, match="nope.json"):
        main([*argv, "--patient_map", str(tmp_path / "nope.json")])


def test_docstring_example_runs():
    import doctest

    import wss_monai.data.isles as module

    assert doctest.testmod(module).failed == 0
