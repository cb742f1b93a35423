"""Reader of the raw WMH 2017 layout, patient-level split, and the handling of label 2 (ignored)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from wss_monai.data.lesion_phantoms import make_wmh_phantoms
from wss_monai.data.wmh import (
    SplitIgnoreLabel,
    SplitIgnoreLabeld,
    find_wmh_cases,
    main,
    make_wmh_datalist,
    wmh_ignore_mask,
)

AFFINE = np.diag([1.0, 1.0, 3.0, 1.0])
SUBJECTS = ("Utrecht/0", "Utrecht/11", "Utrecht/2", "Singapore/50", "Amsterdam/GE3T/100")


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, AFFINE), str(path))


def make_fake_wmh(root: Path, subjects=SUBJECTS) -> Path:
    """Tiny WMH tree: 4x4x2 FLAIR (ones), T1 (twos), wmh (0/1/2), an orig/ folder and a stray folder."""
    label = np.zeros((4, 4, 2), np.uint8)
    label[1, 1, 0], label[2, 2, 1] = 1, 2
    for subject in subjects:
        folder = root / subject
        _save(folder / "pre" / "FLAIR.nii.gz", np.ones((4, 4, 2), np.float32))
        _save(folder / "pre" / "T1.nii.gz", np.full((4, 4, 2), 2.0, np.float32))
        _save(folder / "orig" / "FLAIR.nii.gz", np.ones((4, 4, 2), np.float32))
        _save(folder / "wmh.nii.gz", label)
    (root / "Utrecht" / "docs").mkdir(parents=True, exist_ok=True)
    return root


def test_find_cases_any_depth_sorted(tmp_path):
    make_fake_wmh(tmp_path)
    cases = find_wmh_cases(tmp_path)
    assert [c["patient"] for c in cases] == ["GE3T_100", "Singapore_50", "Utrecht_0", "Utrecht_2", "Utrecht_11"]
    assert [c["site"] for c in cases] == ["GE3T", "Singapore", "Utrecht", "Utrecht", "Utrecht"]
    for case in cases:
        assert set(case) == {"image", "label", "patient", "site"}
        flair, t1 = case["image"]
        assert Path(flair).is_absolute() and flair.endswith("/pre/FLAIR.nii.gz") and t1.endswith("/pre/T1.nii.gz")
        assert case["label"] == str(Path(flair).parent.parent / "wmh.nii.gz")
        assert float(np.asanyarray(nib.load(t1).dataobj).max()) == 2.0  # channel order: FLAIR, T1
    assert len(find_wmh_cases(tmp_path / "Utrecht")) == 3  # a single site folder works too


@pytest.mark.parametrize("relative, what", [("pre/T1.nii.gz", "T1 image"), ("wmh.nii.gz", "label")])
def test_missing_file_is_named(tmp_path, relative, what):
    make_fake_wmh(tmp_path)
    missing = tmp_path / "Singapore" / "50" / relative
    missing.unlink()
    with pytest.raises(FileNotFoundError, match=rf"{what} missing for .*: {re.escape(str(missing))}"):
        find_wmh_cases(tmp_path)


def test_missing_dirs_and_duplicate_patients(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nowhere"))):
        find_wmh_cases(tmp_path / "nowhere")
    (tmp_path / "Utrecht" / "0" / "orig").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no <site>/<id>/pre/FLAIR.nii.gz"):
        find_wmh_cases(tmp_path)
    make_fake_wmh(tmp_path, subjects=("training/Utrecht/0", "test/Utrecht/0"))
    with pytest.raises(ValueError, match="two subject folders give the patient 'Utrecht_0'"):
        find_wmh_cases(tmp_path)


def test_datalist_split_by_patient_and_json(tmp_path):
    make_fake_wmh(tmp_path / "wmh")
    output = tmp_path / "out" / "wmh.json"
    datalist = make_wmh_datalist(tmp_path / "wmh", output_json=output, num_validation=2, seed=1)
    assert json.loads(output.read_text()) == datalist
    assert datalist["seed"] == 1 and datalist["ignore_label"] == 2 and datalist["modalities"] == ["FLAIR", "T1"]
    training, validation = ({c["patient"] for c in datalist[k]} for k in ("training", "validation"))
    assert len(validation) == 2 and len(training) == 3 and not training & validation
    bad = tmp_path / "wmh" / "Utrecht" / "2" / "wmh.nii.gz"
    _save(bad, np.full((4, 4, 2), 3, np.uint8))
    with pytest.raises(ValueError, match=rf"{re.escape(str(bad))} has values \[3\] outside range\(3\)"):
        make_wmh_datalist(tmp_path / "wmh")
    assert make_wmh_datalist(tmp_path / "wmh", check=False)["training"]


def test_phantom_tree_with_nested_site(tmp_path):
    root = make_wmh_phantoms(tmp_path, num_subjects=3, seed=0, shape=(32, 32, 8), sites=("Utrecht", "Amsterdam/GE3T"))
    cases = find_wmh_cases(root)
    assert [c["patient"] for c in cases] == ["GE3T_1", "Utrecht_0", "Utrecht_2"]
    datalist = make_wmh_datalist(root, num_validation=1, seed=0)  # loads and checks every file
    assert len(datalist["training"]) == 2


def _hand_label() -> np.ndarray:
    label = np.zeros((1, 3, 3, 2), np.uint8)
    label[0, 0, 0, 0] = 1
    label[0, 1, :, 1] = 2
    label[0, 2, 2, 0] = 1
    return label


def test_wmh_ignore_mask():
    label = _hand_label()
    mask = wmh_ignore_mask(label)
    assert mask.dtype == bool and mask.shape == label.shape
    assert np.array_equal(np.argwhere(mask), [[0, 1, 0, 1], [0, 1, 1, 1], [0, 1, 2, 1]])
    assert np.array_equal(wmh_ignore_mask(torch.as_tensor(label.astype(np.float32))), mask)
    with pytest.raises(ValueError, match=r"only 0, 1 and 2, got also \[0.5, 3.0\]"):
        wmh_ignore_mask(np.array([0.0, 0.5, 3.0]))
    with pytest.raises(ValueError, match="numpy array or a torch tensor"):
        wmh_ignore_mask([0, 1, 2])


def test_split_ignore_label_numpy_torch_metatensor():
    label = _hand_label()
    original = label.copy()
    out = SplitIgnoreLabeld(keys="label")({"label": label, "image": "untouched"})
    assert set(out) == {"label", "ignore", "image"} and out["image"] == "untouched"
    expected = original.copy()
    expected[expected == 2] = 0
    assert np.array_equal(out["label"], expected) and out["label"].dtype == np.uint8
    assert out["ignore"].dtype == bool and np.array_equal(out["ignore"], original == 2)
    assert np.array_equal(label, original)  # input not mutated
    assert not (out["label"].astype(bool) & out["ignore"]).any()

    meta = MetaTensor(torch.as_tensor(original.astype(np.float32)), affine=torch.diag(torch.tensor([1.0, 1, 3, 1])))
    label_t, mask_t = SplitIgnoreLabel(ignore_value=2)(meta)
    assert isinstance(label_t, MetaTensor) and isinstance(mask_t, MetaTensor) and mask_t.dtype == torch.bool
    assert torch.equal(label_t.affine, meta.affine)
    assert np.array_equal(label_t.numpy(), expected) and np.array_equal(mask_t.numpy(), original == 2)
    assert np.array_equal(meta.numpy(), original)


def test_split_ignore_label_several_keys_and_errors():
    label = _hand_label()
    out = SplitIgnoreLabeld(keys=["a", "b"], ignore_value=1, mask_key=["mask_a", "mask_b"])({"a": label, "b": label})
    assert np.array_equal(out["mask_b"], label == 1) and not (out["a"] == 1).any() and (out["a"] == 2).any()
    with pytest.raises(ValueError, match=r"one key per label key, got keys=\['a', 'b'\] and mask_key='ignore'"):
        SplitIgnoreLabeld(keys=["a", "b"])
    with pytest.raises(ValueError, match=r"differ from the label keys, got \['label'\]"):
        SplitIgnoreLabeld(keys="label", mask_key="label")
    for bad in (0, float("nan"), True, "2"):
        with pytest.raises(ValueError, match="ignore_value must be a finite number other than 0"):
            SplitIgnoreLabel(ignore_value=bad)
    with pytest.raises(KeyError):
        SplitIgnoreLabeld(keys="label")({"image": label})
    assert SplitIgnoreLabeld(keys="label", allow_missing_keys=True)({"image": 1}) == {"image": 1}


def test_cli_writes_json(tmp_path):
    make_fake_wmh(tmp_path / "wmh")
    output = tmp_path / "wmh.json"
    datalist = main(["--dataset_dir", str(tmp_path / "wmh"), "--output", str(output), "--num_validation", "0.4"])
    assert json.loads(output.read_text()) == datalist and len(datalist["validation"]) == 2


def test_docstring_examples_run():
    import doctest

    import wss_monai.data.wmh as module

    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
