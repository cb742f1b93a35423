import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import RandFlipd

from wss_monai.data import VolumeSliceDataset, reference_size_bounds
from wss_monai.transforms import CheckFinited, CheckLabelsd


def _volume(depth=3, patient="p1"):
    image = torch.arange(2 * 2 * depth, dtype=torch.float32).reshape(1, 2, 2, depth)
    scribble = torch.full((1, 2, 2, depth), -1.0)
    scribble[0, 0, 0, 0] = 1
    scribble[0, 1, 1, depth - 1] = 0
    bounds = torch.arange(2 * 2 * depth, dtype=torch.float32).reshape(2, 2, depth)
    return {"image": image, "scribble": scribble, "bounds": bounds, "patient": patient}


def test_slices_cut_the_last_axis_and_carry_their_indices():
    ds = VolumeSliceDataset(
        [_volume(3), _volume(2, "p2")], image_keys=["image", "scribble"], slice_keys=["bounds"], volume_keys=["patient"]
    )
    assert len(ds) == 5
    item = ds[4]
    assert item["volume_index"] == 1 and item["slice_index"] == 1 and item["patient"] == "p2"
    assert torch.equal(item["image"], _volume(2)["image"][..., 1]) and item["image"].shape == (1, 2, 2)
    assert torch.equal(item["bounds"], _volume(2)["bounds"][..., 1]) and item["bounds"].shape == (2, 2)


def test_slices_without_annotation_can_be_skipped():
    ds = VolumeSliceDataset([_volume(3)], image_keys=["image", "scribble"], skip_empty_key="scribble")
    assert [ds[i]["slice_index"] for i in range(len(ds))] == [0, 2]


def test_slice_transform_is_seeded():
    def draws(seed):
        ds = VolumeSliceDataset(
            [_volume(3)], image_keys=["image"], transform=RandFlipd("image", prob=0.5, spatial_axis=0)
        )
        ds.set_random_state(seed)
        return [ds[i % 3]["image"].flatten().tolist() for i in range(12)]

    assert draws(1) == draws(1)
    assert draws(1) != draws(2)


def test_slice_dataset_errors():
    with pytest.raises(KeyError, match=r"volume 0 \(p1\) lacks keys \['label'\]"):
        VolumeSliceDataset([_volume()], image_keys=["image", "label"])
    bad = _volume()
    bad["bounds"] = bad["bounds"][..., :2]
    with pytest.raises(ValueError, match="'bounds' of volume 0 has 2 slices, expected 3"):
        VolumeSliceDataset([bad], image_keys=["image"], slice_keys=["bounds"])
    empty = _volume()
    empty["scribble"][:] = -1
    with pytest.raises(ValueError, match="no slice to train on"):
        VolumeSliceDataset([empty], image_keys=["image", "scribble"], skip_empty_key="scribble")


def test_reference_size_bounds_from_one_patient(tmp_path):
    label = np.zeros((8, 8, 2), np.uint8)
    label[:2, :5, 0] = 1  # 10 voxels
    label[:4, :5, 1] = 1  # 20 voxels
    other = np.zeros((8, 8, 2), np.uint8)
    other[:, :, :] = 1  # another patient: must not count
    cases = []
    for patient, array in (("p1", label), ("p2", other)):
        path = tmp_path / f"{patient}_gt.nii.gz"
        nib.save(nib.Nifti1Image(array, np.eye(4)), path)
        cases.append({"label": str(path), "patient": patient})
    bounds = reference_size_bounds(cases, num_classes=3, spatial_size=None, margin=0.1)
    np.testing.assert_allclose(bounds[1], [9.0, 22.0])
    np.testing.assert_allclose(bounds[2], [0.0, 0.0])
    with pytest.raises(ValueError, match="no case of patient 'p9'"):
        reference_size_bounds(cases, 3, patient="p9")


def test_check_labels_names_the_file_and_values():
    affine = torch.eye(4)
    image = MetaTensor(torch.zeros(1, 4, 4, 2), affine=affine, meta={"filename_or_obj": "/d/img.nii.gz"})
    label = MetaTensor(torch.zeros(1, 4, 4, 2), affine=affine, meta={"filename_or_obj": "/d/gt.nii.gz"})
    label[0, 0, 0, 0] = 7
    with pytest.raises(ValueError, match=r"gt.nii.gz\) holds values \[7.0\] outside the classes 0..3"):
        CheckLabelsd("label", num_classes=4)({"image": image, "label": label})
    small = MetaTensor(torch.zeros(1, 4, 3, 2), affine=affine, meta={"filename_or_obj": "/d/gt.nii.gz"})
    with pytest.raises(
        ValueError, match=r"gt.nii.gz\) has spatial shape \(4, 3, 2\) but 'image' \(/d/img.nii.gz\) has \(4, 4, 2\)"
    ):
        CheckLabelsd("label", num_classes=4)({"image": image, "label": small})
    shifted = MetaTensor(torch.zeros(1, 4, 4, 2), affine=torch.diag(torch.tensor([1.0, 1.0, 2.0, 1.0])))
    with pytest.raises(ValueError, match="different affines \\(max difference 1 mm\\)"):
        CheckLabelsd("label", num_classes=4)({"image": image, "label": shifted})
    good = {"image": image, "label": MetaTensor(torch.ones(1, 4, 4, 2), affine=affine)}
    assert CheckLabelsd("label", num_classes=4)(good)["label"] is good["label"]


def test_check_finite():
    data = {"image": torch.tensor([[1.0, float("inf"), float("nan")]])}
    with pytest.raises(ValueError, match="'image' holds 2 NaN/inf values out of 3"):
        CheckFinited("image")(data)
    assert CheckFinited("image")({"image": torch.ones(2)})["image"].sum() == 2


def test_random_volume_transforms_run_once_per_volume():
    from monai.data import CacheDataset

    from wss_monai.transforms import StrokeScribbled

    label = torch.zeros(1, 16, 16, 2)
    label[0, 4:12, 4:12] = 1
    calls = []

    class CountingStrokes(StrokeScribbled):  # random: CacheDataset re-runs it on every access
        def __call__(self, data):
            calls.append(1)
            return super().__call__(data)

    counting = CountingStrokes(keys="label", num_classes=2, length_fraction=0.3).set_random_state(0)
    volumes = CacheDataset([{"image": label.clone(), "label": label}], transform=counting, cache_rate=1.0)
    ds = VolumeSliceDataset(volumes, image_keys=["image", "scribble"])
    first = [ds[i]["scribble"].clone() for i in range(len(ds))]
    again = [ds[i]["scribble"] for i in range(len(ds))]
    assert len(calls) == 1  # drawn once, when the dataset was built
    assert all(torch.equal(a, b) for a, b in zip(first, again))  # the weak labels do not change
