"""Synthetic cardiac phantoms: determinism, anatomy, scribbles, and acceptance by the reader."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from wss_monai.data.acdc import find_acdc_cases, make_acdc_datalist
from wss_monai.data.checks import check_case
from wss_monai.data.phantoms import main, make_cardiac_phantoms

NUM_PATIENTS = 4
PLUS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool)[..., None]  # in-plane 4-neighbourhood


def _data(path) -> np.ndarray:
    return np.asanyarray(nib.load(str(path)).dataobj)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return make_cardiac_phantoms(tmp_path_factory.mktemp("phantoms"), num_patients=NUM_PATIENTS, seed=3)


@pytest.fixture(scope="module")
def cases(root) -> list[dict]:
    return find_acdc_cases(root, with_scribbles=True)


def test_layout(root, cases):
    folder = root / "training" / "patient001"
    assert (folder / "patient001_4d.nii.gz").is_file() and (folder / "Info.cfg").is_file()
    assert len(cases) == 2 * NUM_PATIENTS
    for patient in range(NUM_PATIENTS):
        ed, es = cases[2 * patient : 2 * patient + 2]
        assert ed["frame"] == "frame01" and int(es["frame"][5:]) > 1
        assert f"ES: {int(es['frame'][5:])}" in (Path(ed["image"]).parent / "Info.cfg").read_text()


def test_deterministic_by_seed(root, cases, tmp_path):
    again = make_cardiac_phantoms(tmp_path / "again", num_patients=2, seed=3)  # patient k ignores num_patients
    other = make_cardiac_phantoms(tmp_path / "other", num_patients=2, seed=4)
    for case in cases[:4]:
        for key in ("image", "label", "scribble"):
            relative = Path(case[key]).relative_to(root)
            assert np.array_equal(_data(case[key]), _data(again / relative))
            assert nib.load(case[key]).affine.tolist() == nib.load(again / relative).affine.tolist()
    other_images = [c["image"] for c in find_acdc_cases(other)]
    assert not any(
        _data(a).shape == _data(b).shape and np.allclose(_data(a), _data(b))
        for a, b in zip(other_images, [c["image"] for c in cases])
    )


def test_patients_differ(cases):
    labels = [_data(c["label"]) for c in cases if c["frame"] == "frame01"]
    sizes = {tuple(int((label == k).sum()) for k in (1, 2, 3)) for label in labels}
    assert len(sizes) == len(labels)


def test_files_dtypes_and_geometry(cases):
    for case in cases:
        image, label, scribble = (nib.load(case[k]) for k in ("image", "label", "scribble"))
        assert image.get_data_dtype() == np.float32
        assert label.get_data_dtype() == np.uint8 and scribble.get_data_dtype() == np.uint8
        assert image.shape[:2] == (96, 96) and 6 <= image.shape[2] <= 10
        assert image.shape == label.shape == scribble.shape
        assert np.array_equal(image.affine, label.affine) and np.array_equal(image.affine, scribble.affine)
        assert np.allclose(image.affine[:3, :3], np.diag([1.5, 1.5, 10.0]))
        assert np.abs(image.affine[:3, 3]).max() > 1.0


def test_images_finite_in_unit_range(cases):
    for case in cases:
        image = _data(case["image"])
        assert np.isfinite(image).all() and image.min() >= 0.0 and image.max() <= 1.0
        assert image.std() > 0.1


def test_labels_anatomy(cases):
    for case in cases:
        label = _data(case["label"])
        assert set(np.unique(label)) == {0, 1, 2, 3}
        lv = label == 3
        # every LV voxel's in-plane 4-neighbours are LV or MYO: the ring is closed
        neighbours = ndimage.binary_dilation(lv, structure=PLUS)
        assert np.isin(label[neighbours], (2, 3)).all()
        rv_per_slice = (label == 1).any(axis=(0, 1))
        assert rv_per_slice[0] and not rv_per_slice[-1]  # RV at the base, absent at the apex
        lv_area = lv.sum(axis=(0, 1))
        assert lv_area[0] > lv_area[-1]  # LV shrinks towards the apex


def test_es_has_smaller_cavity_thicker_wall(cases):
    for ed, es in zip(cases[::2], cases[1::2]):
        ed_label, es_label = _data(ed["label"]), _data(es["label"])
        assert (es_label == 3).sum() < 0.8 * (ed_label == 3).sum()
        # wall thickness ~ area / mid-line length; the ES wall is thicker on the mid-ventricular slice
        z = ed_label.shape[2] // 2
        thickness = [(lab[..., z] == 2).sum() / np.sqrt((lab[..., z] >= 2).sum()) for lab in (ed_label, es_label)]
        assert thickness[1] > thickness[0]


def test_intensities_rv_and_lv_both_bright(cases):
    for case in cases[::2]:
        image, label = _data(case["image"]), _data(case["label"])
        lv, rv, myo, background = (image[label == k] for k in (3, 1, 2, 0))
        # no threshold separates RV from LV: most RV voxels fall within the LV's 5-95 % range
        low, high = np.percentile(lv, [5, 95])
        assert np.mean((rv >= low) & (rv <= high)) > 0.5
        assert np.median(myo) < min(np.median(lv), np.median(rv)) - 0.25
        # nor the ventricles from the background: some background (aorta) is as bright as blood
        assert np.mean(background > np.median(lv) - 0.1) > 0.001


def test_scribbles(cases):
    for case in cases:
        label, scribble = _data(case["label"]), _data(case["scribble"])
        annotated = scribble != 4
        assert set(np.unique(scribble)) == {0, 1, 2, 3, 4}
        assert np.array_equal(scribble[annotated], label[annotated])
        assert 0.005 < annotated.mean() < 0.04
        slices = annotated.any(axis=(0, 1))
        assert 1 <= (~slices).sum() <= max(1, round(0.3 * slices.size))
        interior = ndimage.binary_erosion(annotated, structure=PLUS)
        assert interior.sum() < 0.1 * annotated.sum()  # thin strokes, not blobs


def test_reader_and_checks_accept(root, cases):
    for case in cases:
        assert check_case(case, num_classes=4, scribble_unlabelled=4) == []
    datalist = make_acdc_datalist(root, num_validation=1, seed=0, with_scribbles=True)
    assert len(datalist["training"]) == 2 * (NUM_PATIENTS - 1) and len(datalist["validation"]) == 2


def test_without_scribbles_and_other_marker(tmp_path):
    root = make_cardiac_phantoms(tmp_path, num_patients=1, shape=(48, 40), num_slices=(4, 4), with_scribbles=False)
    folder = root / "training" / "patient001"
    assert not list(folder.glob("*_scribble.nii.gz"))
    assert _data(folder / "patient001_frame01.nii.gz").shape == (48, 40, 4)
    root = make_cardiac_phantoms(tmp_path / "marker", num_patients=1, scribble_unlabelled=255)
    scribble = _data(next((root / "training" / "patient001").glob("*frame01_scribble.nii.gz")))
    assert set(np.unique(scribble)) == {0, 1, 2, 3, 255}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_patients": 0}, "num_patients"),
        ({"shape": (16, 96)}, "shape"),
        ({"num_slices": (5, 4)}, "num_slices"),
        ({"spacing": (1.5, 0, 10)}, "spacing"),
        ({"scribble_unlabelled": 2}, "scribble_unlabelled"),
        ({"noise": -0.1}, "noise"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_cardiac_phantoms(tmp_path, **kwargs)


def test_cli(tmp_path):
    root = main(["--output_dir", str(tmp_path), "--num_patients", "2", "--seed", "1", "--size", "48", "56"])
    assert len(find_acdc_cases(root)) == 4
    assert _data(root / "training" / "patient002" / "patient002_frame01_gt.nii.gz").shape[:2] == (48, 56)
