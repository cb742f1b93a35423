"""Input checks: every bad case fails with the file and the offending values in the message."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from wss_monai.data.checks import EmptyScribbleError, assert_finite, check_case, validate_cases

AFFINE = np.diag([1.5, 1.5, 10.0, 1.0])


def _save(path: Path, array: np.ndarray, affine: np.ndarray = AFFINE) -> str:
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return str(path)


@pytest.fixture
def case(tmp_path) -> dict:
    """A valid 4x5x2 case: all four classes in the label, a scribble agreeing with it."""
    label = np.zeros((4, 5, 2), np.uint8)
    label[1, 1], label[1, 2], label[2, 2] = 1, 2, 3
    scribble = np.full((4, 5, 2), 4, np.uint8)
    scribble[0, 0, 0], scribble[1, 1, 1], scribble[2, 2, 0] = 0, 1, 3
    image = np.random.default_rng(0).random((4, 5, 2)).astype(np.float32)
    return {
        "image": _save(tmp_path / "p_frame01.nii.gz", image),
        "label": _save(tmp_path / "p_frame01_gt.nii.gz", label),
        "scribble": _save(tmp_path / "p_frame01_scribble.nii.gz", scribble),
        "patient": "p",
    }


def test_valid_case_has_no_warning(case):
    assert check_case(case, num_classes=4) == []
    assert validate_cases([case, case], num_classes=4) == [case, case]


def test_shape_mismatch(case, tmp_path):
    case["label"] = _save(tmp_path / "wide_gt.nii.gz", np.zeros((4, 6, 2), np.uint8))
    with pytest.raises(ValueError, match=r"shape mismatch.*p_frame01\.nii\.gz.*\(4, 5, 2\).*wide_gt.*\(4, 6, 2\)"):
        check_case(case, num_classes=4)


def test_affine_mismatch(case, tmp_path):
    shifted = AFFINE.copy()
    shifted[0, 3] = 0.5
    case["label"] = _save(tmp_path / "shifted_gt.nii.gz", np.zeros((4, 5, 2), np.uint8), shifted)
    with pytest.raises(ValueError, match=r"affine mismatch.*shifted_gt.*differ by up to 0\.5"):
        check_case(case, num_classes=4)
    no_scribble = {**case, "scribble": None}
    assert check_case(no_scribble, num_classes=4, atol=0.6) == [f"label {case['label']} lacks the classes [1, 2, 3]"]


def test_label_values_out_of_range(case, tmp_path):
    label = np.zeros((4, 5, 2), np.uint8)
    label[0, 0, 0], label[1, 1, 1] = 5, 7
    case["label"] = _save(tmp_path / "bad_gt.nii.gz", label)
    with pytest.raises(ValueError, match=r"bad_gt\.nii\.gz has values \[5, 7\] outside range\(4\)"):
        check_case(case, num_classes=4)
    assert check_case({**case, "scribble": None}, num_classes=8)  # fine with 8 classes (warnings only)


def test_image_not_finite(case, tmp_path):
    image = np.zeros((4, 5, 2), np.float32)
    image[0, 0, 0], image[1, 0, 0], image[2, 0, 1] = np.nan, np.inf, -np.inf
    case["image"] = _save(tmp_path / "nan.nii.gz", image)
    with pytest.raises(ValueError, match=r"image .*nan\.nii\.gz contains 3 NaN/inf values"):
        check_case(case, num_classes=4)


def test_scribble_values_out_of_range(case, tmp_path):
    scribble = np.full((4, 5, 2), 4, np.uint8)
    scribble[0, 0, 0], scribble[0, 1, 0] = 9, 0
    case["scribble"] = _save(tmp_path / "bad_scribble.nii.gz", scribble)
    with pytest.raises(ValueError, match=r"bad_scribble\.nii\.gz has values \[9\].*unlabelled value 4"):
        check_case(case, num_classes=4)
    scribble[0, 0, 0] = 0
    case["scribble"] = _save(tmp_path / "other_marker.nii.gz", scribble)
    with pytest.raises(ValueError, match=r"other_marker\.nii\.gz has values \[4\]"):
        check_case(case, num_classes=4, scribble_unlabelled=255)


def test_scribble_shape_and_affine_mismatch(case, tmp_path):
    scribble = np.full((4, 5, 3), 4, np.uint8)
    scribble[0, 0, 0] = 0
    case["scribble"] = _save(tmp_path / "thick_scribble.nii.gz", scribble)
    with pytest.raises(ValueError, match=r"image/scribble shape mismatch.*\(4, 5, 2\).*thick_scribble.*\(4, 5, 3\)"):
        check_case(case, num_classes=4)
    tilted = AFFINE.copy()
    tilted[0, 1] = 0.25
    case["scribble"] = _save(tmp_path / "tilted_scribble.nii.gz", scribble[..., :2], tilted)
    with pytest.raises(ValueError, match=r"image/scribble affine mismatch.*tilted_scribble.*0\.25"):
        check_case(case, num_classes=4)


def test_warnings_for_absent_classes_and_disagreeing_scribble(case, tmp_path):
    scribble = np.full((4, 5, 2), 4, np.uint8)
    scribble[0, 0, 0], scribble[0, 1, 0] = 2, 0  # one of two strokes voxels on background labelled MYO
    case["scribble"] = _save(tmp_path / "wrong_scribble.nii.gz", scribble)
    warnings = check_case(case, num_classes=4)
    assert len(warnings) == 1 and re.search(r"wrong_scribble.*disagrees.*50\.0%", warnings[0])


def test_empty_scribble(case, tmp_path, caplog):
    empty = _save(tmp_path / "empty_scribble.nii.gz", np.full((4, 5, 2), 4, np.uint8))
    bad = {**case, "scribble": empty}
    with pytest.raises(EmptyScribbleError, match=r"empty_scribble\.nii\.gz is empty"):
        check_case(bad, num_classes=4)
    assert issubclass(EmptyScribbleError, ValueError)
    with caplog.at_level(logging.WARNING, logger="wss_monai.data.checks"):
        kept = validate_cases([case, bad, case], num_classes=4)
    assert kept == [case, case]
    assert re.search(r"excluding .*empty_scribble\.nii\.gz", caplog.text)
    with pytest.raises(EmptyScribbleError, match="empty_scribble"):
        validate_cases([case, bad], num_classes=4, on_empty_scribble="raise")
    with pytest.raises(ValueError, match="on_empty_scribble.*'drop'"):
        validate_cases([case], num_classes=4, on_empty_scribble="drop")


def test_validate_cases_propagates_other_errors(case, tmp_path):
    label = np.full((4, 5, 2), 4, np.uint8)
    bad = {**case, "label": _save(tmp_path / "four_gt.nii.gz", label)}
    with pytest.raises(ValueError, match=r"four_gt.*\[4\]"):
        validate_cases([case, bad], num_classes=4)


def test_missing_key_and_file(case):
    with pytest.raises(ValueError, match=r"missing the keys \['label'\]"):
        check_case({"image": case["image"]}, num_classes=4)
    with pytest.raises(FileNotFoundError):
        check_case({**case, "label": case["label"] + ".missing"}, num_classes=4)


def test_assert_finite():
    assert_finite(np.zeros(3), "x")
    assert_finite(np.arange(3), "integers")
    assert_finite(torch.ones(2, 2, requires_grad=True), "t")
    with pytest.raises(ValueError, match=r"^logits contains 2 NaN/inf values$"):
        assert_finite(np.array([1.0, np.nan, -np.inf]), "logits")
    with pytest.raises(ValueError, match=r"^probs contains 1 NaN/inf values$"):
        assert_finite(torch.tensor([0.5, float("nan")], requires_grad=True), "probs")
