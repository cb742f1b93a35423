"""Small-lesion phantoms (ISLES, WMH and ATLAS layouts): determinism, lesion statistics, geometry, readers."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from wss_monai.data.atlas import find_atlas_cases
from wss_monai.data.atlas_phantoms import main as atlas_main
from wss_monai.data.atlas_phantoms import make_atlas_phantoms
from wss_monai.data.isles import find_isles_cases
from wss_monai.data.lesion_phantoms import main, make_isles_phantoms, make_wmh_phantoms
from wss_monai.data.wmh import find_wmh_cases

NUM_CASES, NUM_SUBJECTS, SEED = 6, 4, 5
FULL = np.ones((3, 3, 3), bool)  # 26-connectivity, as in the WMH evaluation


def _data(path) -> np.ndarray:
    return np.asanyarray(nib.load(str(path)).dataobj)


@pytest.fixture(scope="module")
def isles_root(tmp_path_factory) -> Path:
    return make_isles_phantoms(tmp_path_factory.mktemp("isles"), num_cases=NUM_CASES, seed=SEED)


@pytest.fixture(scope="module")
def wmh_root(tmp_path_factory) -> Path:
    return make_wmh_phantoms(tmp_path_factory.mktemp("wmh"), num_subjects=NUM_SUBJECTS, seed=SEED)


@pytest.fixture(scope="module")
def isles_cases(isles_root) -> list[dict]:
    return find_isles_cases(isles_root)


@pytest.fixture(scope="module")
def wmh_cases(wmh_root) -> list[dict]:
    return find_wmh_cases(wmh_root)


def _files(case: dict) -> list[str]:
    return [*case["image"], case["label"]]


def test_deterministic_by_seed(isles_root, isles_cases, wmh_root, wmh_cases, tmp_path):
    isles_again = make_isles_phantoms(tmp_path / "isles", num_cases=3, seed=SEED)  # case k ignores num_cases
    wmh_again = make_wmh_phantoms(tmp_path / "wmh", num_subjects=2, seed=SEED)
    first_two = [c for c in wmh_cases if c["patient"] in ("Utrecht_0", "Singapore_1")]
    for root, again, cases in ((isles_root, isles_again, isles_cases[:3]), (wmh_root, wmh_again, first_two)):
        for path in (p for case in cases for p in _files(case)):
            copy = again / Path(path).relative_to(root)
            a, b = _data(path), _data(copy)
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
            assert nib.load(path).affine.tolist() == nib.load(copy).affine.tolist()
    other = find_wmh_cases(make_wmh_phantoms(tmp_path / "other", num_subjects=1, seed=SEED + 1))[0]
    assert other["patient"] == first_two[1]["patient"] == "Utrecht_0"
    assert not np.array_equal(_data(other["label"]), _data(first_two[1]["label"]))
    other = find_isles_cases(make_isles_phantoms(tmp_path / "other_isles", num_cases=1, seed=SEED + 1))[0]
    assert _data(other["label"]).shape != _data(isles_cases[0]["label"]).shape or not np.array_equal(
        _data(other["label"]), _data(isles_cases[0]["label"])
    )


def test_geometry_dtypes_and_finite(isles_cases, wmh_cases):
    for case in isles_cases + wmh_cases:
        images = [nib.load(p) for p in case["image"]]
        label = nib.load(case["label"])
        for image in images:
            assert image.shape == label.shape and np.array_equal(image.affine, label.affine)
            assert image.get_data_dtype() == np.float32 and np.isfinite(image.get_fdata()).all()
        assert label.get_data_dtype() == np.uint8
    for case in isles_cases:
        shape = nib.load(case["label"]).shape
        assert shape[:2] == (64, 64) and 2 <= shape[2] <= 8 and case["label"].endswith(".nii")
        assert np.allclose(nib.load(case["label"]).affine[:3, :3], np.diag([0.9, 0.9, 5.0]))
        assert set(np.unique(_data(case["label"])).tolist()) == {0, 1}
    for case in wmh_cases:
        assert nib.load(case["label"]).shape == (64, 64, 24)
        assert np.allclose(nib.load(case["label"]).affine[:3, :3], np.diag([1.0, 1.0, 3.0]))


def test_foreground_fraction_small(isles_cases, wmh_cases):
    for case in isles_cases + wmh_cases:
        label = _data(case["label"])
        assert 0.0005 <= np.mean(label == 1) <= 0.01, case["label"]
        assert np.mean(label > 0) <= 0.01, case["label"]


def test_lesions_numerous_small_and_varied(isles_cases, wmh_cases):
    counts, sizes = [], []
    for case in wmh_cases:
        components, count = ndimage.label(_data(case["label"]) == 1, FULL)
        assert count >= 5, case["patient"]
        counts.append(count)
        sizes.append(np.bincount(components.ravel())[1:])
    assert len(set(counts)) > 1  # varying counts per subject
    sizes = np.concatenate(sizes)
    assert np.median(sizes) <= 20 and sizes.max() < 0.002 * 64 * 64 * 24 and len(set(sizes.tolist())) > 10
    isles_counts = [ndimage.label(_data(c["label"]), FULL)[1] for c in isles_cases]
    assert min(isles_counts) >= 3 and len(set(isles_counts)) > 1


def test_wmh_label2_present_and_apart_from_lesions(wmh_cases):
    for case in wmh_cases:
        label = _data(case["label"])
        other = label == 2
        assert other.any(), case["patient"]
        assert not (ndimage.binary_dilation(other, FULL) & (label == 1)).any()  # not even touching


def test_wmh_contrast(wmh_cases):
    for case in wmh_cases:  # lesions bright on FLAIR, dark on T1, against the white matter around them
        flair, t1 = (_data(p) for p in case["image"])
        label = _data(case["label"])
        lesion = label == 1
        ring = ndimage.binary_dilation(lesion, FULL, iterations=3) & ~ndimage.binary_dilation(label > 0, FULL)
        white = ring & (t1 > 0.8 * np.median(t1[ring]))  # drops the dark CSF next to the ventricles
        assert flair[lesion].mean() > 1.2 * np.median(flair[white])
        assert t1[lesion].mean() < 0.95 * np.median(t1[white])


def test_isles_lesions_visible_in_perfusion(isles_cases):
    pooled = {k: [] for k in ("ct", "ct_ring", "cbf", "cbv", "mtt", "tmax", "far")}
    for case in isles_cases:
        ct, cbf, cbv, mtt, tmax = (_data(p) for p in case["image"])
        lesion = _data(case["label"]) > 0
        tissue = (ct > 15) & (ct < 60)  # parenchyma
        near = ndimage.binary_dilation(lesion, np.ones((5, 5, 1), bool))
        ring = near & ~ndimage.binary_dilation(lesion, np.ones((3, 3, 1), bool)) & tissue
        far = tissue & ~ndimage.binary_dilation(lesion, np.ones((15, 15, 3), bool))
        assert cbf[lesion].mean() < 0.6 * cbf[far].mean() and cbv[lesion].mean() < 0.85 * cbv[far].mean()
        assert mtt[lesion].mean() > 1.5 * mtt[far].mean()
        assert tmax[lesion].mean() > 6.0 > 3.0 > tmax[far].mean()
        pooled["ct"].append(ct[lesion])
        pooled["ct_ring"].append(ct[ring])
    ct_drop = np.concatenate(pooled["ct_ring"]).mean() - np.concatenate(pooled["ct"]).mean()
    assert 1.0 < ct_drop < 10.0  # weakly visible in CT (a few HU)


def test_isles_patients_with_two_slabs(isles_root, isles_cases):
    patients = json.loads((isles_root / "phantom_patients.json").read_text())
    assert list(patients) == [c["case"] for c in isles_cases]
    for patient in patients.values():  # slabs of one patient are consecutive cases on one z axis
        same = [c for c, p in patients.items() if p == patient]
        assert len(same) in (1, 2) and int(same[-1][5:]) - int(same[0][5:]) == len(same) - 1
    pairs = [[c for c, p in patients.items() if p == patient] for patient in set(patients.values())]
    for first, second in (sorted(pair, key=lambda c: int(c[5:])) for pair in pairs if len(pair) == 2):
        a, b = (nib.load(next(c for c in isles_cases if c["case"] == x)["label"]) for x in (first, second))
        assert np.isclose(b.affine[2, 3] - a.affine[2, 3], a.shape[2] * 5.0)
        assert np.allclose(a.affine[:2], b.affine[:2])


def _changed(plain: dict, mimicked: dict) -> list[np.ndarray]:
    """Per image channel, the voxels that differ between a case without and with mimics."""
    return [~np.isclose(_data(a), _data(b), rtol=1e-4, atol=1e-4) for a, b in zip(plain["image"], mimicked["image"])]


def test_isles_mimics_are_unlabelled_old_infarcts_far_from_lesions(isles_root, isles_cases, tmp_path):
    root = make_isles_phantoms(tmp_path / "mimics", num_cases=NUM_CASES, seed=SEED, mimics=(3, 3))
    mimicked = find_isles_cases(root)
    for plain, case in zip(isles_cases, mimicked):
        label = _data(case["label"])
        assert np.array_equal(label, _data(plain["label"]))  # same labels, same lesion images
        ct_changed, cbf_changed, _, _, tmax_changed = _changed(plain, case)
        assert cbf_changed.any() and not tmax_changed.any()  # no perfusion delay in an old infarct
        in_plane = ndimage.distance_transform_edt(label == 0, sampling=(1.0, 1.0, 1e3))  # same-slice distance
        assert in_plane[cbf_changed | ct_changed].min() >= 3.0  # mimics (>= 6 voxels away) blurred by <= 3
        ct, cbf = _data(case["image"][0]), _data(case["image"][1])
        core = cbf_changed & (cbf < 0.7 * _data(plain["image"][1]))
        assert core.any() and (ct[core] < _data(plain["image"][0])[core] - 5.0).mean() > 0.5  # hypodense
        assert 1 <= ndimage.label(cbf_changed, FULL)[1] <= 3


def test_wmh_mimics_are_flair_bright_grey_matter_spots(wmh_root, wmh_cases, tmp_path):
    root = make_wmh_phantoms(tmp_path / "mimics", num_subjects=NUM_SUBJECTS, seed=SEED, mimics=(2, 6))
    counts = []
    for plain, case in zip(wmh_cases, find_wmh_cases(root)):
        label = _data(case["label"])
        assert np.array_equal(label, _data(plain["label"]))
        flair_changed, t1_changed = _changed(plain, case)
        assert flair_changed.any() and not t1_changed.any()  # bright on FLAIR only
        assert (_data(case["image"][0])[flair_changed] > _data(plain["image"][0])[flair_changed]).all()
        in_plane = ndimage.distance_transform_edt(label == 0, sampling=(1.0, 1.0, 1e3))
        assert in_plane[flair_changed].min() >= 2.5  # mimics (>= 5 voxels away) blurred by < 3
        counts.append(ndimage.label(flair_changed, FULL)[1])
    assert max(counts) <= 6 and len(set(counts)) > 1


def test_sites_and_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="num_cases must be an integer >= 1"):
        make_isles_phantoms(tmp_path, num_cases=0)
    with pytest.raises(ValueError, match=r"shape must be two sizes >= 32 \(X, Y\), not \(16, 64\)"):
        make_isles_phantoms(tmp_path, shape=(16, 64))
    with pytest.raises(ValueError, match="num_slices"):
        make_isles_phantoms(tmp_path, num_slices=(5, 2))
    with pytest.raises(ValueError, match="spacing"):
        make_wmh_phantoms(tmp_path, spacing=(1.0, 0.0, 3.0))
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        make_wmh_phantoms(tmp_path, seed=-1)
    with pytest.raises(ValueError, match=r"Z >= 8, not \(64, 64, 4\)"):
        make_wmh_phantoms(tmp_path, shape=(64, 64, 4))
    for sites in ((), ("A", "A"), "Utrecht", ("../up",), ("/abs",)):
        with pytest.raises(ValueError, match="sites must"):
            make_wmh_phantoms(tmp_path, sites=sites)
    for mimics in ((2, 1), (-1, 2), (1,), (0.5, 2), "ab"):
        with pytest.raises(ValueError, match=r"mimics must be \(min, max\) integers"):
            make_isles_phantoms(tmp_path, mimics=mimics)
    assert not any(tmp_path.iterdir())


def test_cli(tmp_path):
    root = main(["--kind", "wmh", "--output_dir", str(tmp_path / "w"), "--num_cases", "2", "--sites", "GE3T"])
    assert [c["patient"] for c in find_wmh_cases(root)] == ["GE3T_0", "GE3T_1"]
    root = main(["--kind", "isles", "--output_dir", str(tmp_path / "i"), "--num_cases", "2"])
    assert len(find_isles_cases(root)) == 2
    mimicked = main(["--kind", "isles", "--output_dir", str(tmp_path / "m"), "--num_cases", "2", "--mimics", "2", "2"])
    for plain, case in zip(find_isles_cases(root), find_isles_cases(mimicked)):
        assert np.array_equal(_data(plain["label"]), _data(case["label"]))
        assert not np.array_equal(_data(plain["image"][1]), _data(case["image"][1]))


def test_docstring_example_runs():
    import doctest

    import wss_monai.data.lesion_phantoms as module

    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def _atlas_lesions(root: Path) -> list[np.ndarray]:
    """Each case's lesion mask as the ATLAS reader fuses it (its ``LesionSmooth`` masks OR-ed)."""
    return [_data(case["label"]) > 0 for case in find_atlas_cases(root, label_dir=root / "fused")]


def test_atlas_lesion_scale_widens_the_lesions(tmp_path):
    kwargs = {"num_cases": 3, "seed": 0, "shape": (32, 32, 14)}
    default = make_atlas_phantoms(tmp_path / "default", **kwargs)
    same = make_atlas_phantoms(tmp_path / "same", lesion_scale=1.0, **kwargs)
    wide = make_atlas_phantoms(tmp_path / "wide", lesion_scale=2.0, **kwargs)
    for a, b in zip(sorted(default.rglob("*.nii.gz")), sorted(same.rglob("*.nii.gz"))):
        assert a.name == b.name and np.array_equal(_data(a), _data(b))  # scale 1: the default draws exactly
    sizes = {}
    for name, root in (("default", default), ("wide", wide)):
        masks = _atlas_lesions(root)
        labelled = [ndimage.label(m, FULL) for m in masks]
        sizes[name] = np.mean([np.bincount(c.ravel())[1:].mean() for c, _ in labelled])
        assert all(1 <= n <= 3 for _, n in labelled)  # the count of lesions stays that of the default kind
    # twice the semi-axes: about 2³ = 8 times the voxels per lesion (clipped to the hemisphere)
    assert sizes["wide"] > 4 * sizes["default"]
    with pytest.raises(ValueError, match=r"lesion_scale must be a number > 0, not 0"):
        make_atlas_phantoms(tmp_path / "bad", lesion_scale=0, **kwargs)
    root = atlas_main(["--output_dir", str(tmp_path / "cli"), "--num_cases", "1", "--shape", "32", "32", "14",
                       "--lesion_scale", "2"])  # fmt: skip
    assert np.array_equal(_atlas_lesions(root)[0], _atlas_lesions(wide)[0])
