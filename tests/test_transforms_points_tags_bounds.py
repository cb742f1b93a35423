"""Point discs, image tags, size bounds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from wss_monai.constants import UNLABELLED
from wss_monai.transforms import (
    ImageTags,
    ImageTagsd,
    RandomPointDiscs,
    RandomPointDiscsd,
    SizeBounds,
    SizeBoundsd,
    common_size_bounds,
)


def blocks(depth: int = 0) -> np.ndarray:
    """10 x 10 label: class 1 = 20 voxels (4 x 5), class 2 = 6 voxels (2 x 3), class 3 absent.

    3D (``depth`` slices): slice z keeps class 1 in rows [0, 4 - z) (sizes 20, 15, 10, ...) and
    class 2 only in slice 0.
    """
    if not depth:
        label = np.zeros((1, 10, 10), dtype=np.int64)
        label[0, :4, :5] = 1
        label[0, 6:8, 6:9] = 2
        return label
    label = np.zeros((1, 10, 10, depth), dtype=np.int64)
    for z in range(depth):
        label[0, : 4 - z, :5, z] = 1
    label[0, 6:8, 6:9, 0] = 2
    return label


def disc_matches_some_centre(weak: np.ndarray, mask: np.ndarray, k: int, radius: float) -> bool:
    """The annotation of class k equals {p in mask : |p - c| <= radius} for some centre c in mask."""
    grid = np.indices(mask.shape)
    for c in np.argwhere(mask):
        dist = np.sqrt(sum((g - ci) ** 2 for g, ci in zip(grid, c)))
        if np.array_equal(weak == k, (dist <= radius) & mask):
            return True
    return False


# --------------------------------------------------------------------------- points


def test_points_disc_covering_the_class_and_single_voxels():
    label = np.zeros((1, 9, 9), dtype=np.int64)
    label[0, 2:7, 2:7] = 1
    weak = RandomPointDiscs(num_classes=2, radius=10).set_random_state(0)(label)
    assert (weak == 1).sum() == 25 and (weak == 0).sum() == 56 and (weak == UNLABELLED).sum() == 0
    weak = RandomPointDiscs(num_classes=2, radius=0, num_points=3).set_random_state(0)(label)
    assert (weak == 1).sum() == 3 and (weak == 0).sum() == 3
    label[0, 0, 0] = 1  # fewer voxels than points: all of them
    weak = RandomPointDiscs(num_classes=2, radius=0, num_points=30, include_background=False)(label)
    assert (weak == 1).sum() == 26 and (weak == 0).sum() == 0


@pytest.mark.parametrize("seed", range(4))
def test_points_disc_is_a_clipped_disc(seed):
    label = np.zeros((1, 14, 14), dtype=np.int64)
    label[0, 2:7, 2:12] = 1  # 5 x 10 block: discs of radius 2 get clipped near its edges
    weak = RandomPointDiscs(num_classes=2, radius=2, include_background=False).set_random_state(seed)(label)
    assert 6 <= (weak[0] == 1).sum() <= 13  # 13 = full radius-2 disc; 6 = corner quarter
    assert disc_matches_some_centre(weak[0], label[0] == 1, 1, 2)


def test_points_exact_counts_when_the_clipping_decides():
    label = np.zeros((1, 7, 7), dtype=np.int64)
    label[0, 5, 2:5] = 1  # a 3-voxel line: any radius-2 disc centred on it covers all of it
    label[0, 0, 0] = 2  # a single voxel
    weak = RandomPointDiscs(num_classes=3, radius=2, include_background=False).set_random_state(0)(label)
    assert np.argwhere(weak[0] == 1).tolist() == [[5, 2], [5, 3], [5, 4]]
    assert np.argwhere(weak[0] == 2).tolist() == [[0, 0]]
    cube = np.zeros((1, 6, 6, 6), dtype=np.int64)
    cube[0, 1:4, 1:4, 1:4] = 1  # diameter sqrt(12) < 4: a radius-4 ball covers the 27 voxels
    weak = RandomPointDiscs(num_classes=2, radius=4, spatial_dims=3, include_background=False)
    out = weak.set_random_state(1)(cube)
    assert (out == 1).sum() == 27 and (out == UNLABELLED).sum() == 6**3 - 27


def test_points_3d_ball_and_per_slice():
    label = np.zeros((1, 9, 9, 9), dtype=np.int64)
    label[0, 1:8, 1:8, 1:8] = 1
    weak = RandomPointDiscs(num_classes=2, radius=1, spatial_dims=3, include_background=False)
    out = weak.set_random_state(2)(label)
    assert disc_matches_some_centre(out[0], label[0] == 1, 1, 1)
    assert (out == 1).sum() in (4, 5, 6, 7)  # a 6-neighbourhood ball, possibly clipped
    per_slice = RandomPointDiscs(num_classes=2, radius=0, spatial_dims=2).set_random_state(0)(label)
    for z in range(9):
        assert (per_slice[..., z] == 0).sum() == 1
        assert (per_slice[..., z] == 1).sum() == int((label[..., z] == 1).any())


def test_points_seeded_and_dict():
    label = blocks(depth=3)
    a = RandomPointDiscs(num_classes=4, radius=1).set_random_state(5)(label)
    b = RandomPointDiscsd(keys="label", num_classes=4, radius=1).set_random_state(5)({"label": label})["points"]
    c = RandomPointDiscs(num_classes=4, radius=1).set_random_state(6)(label)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    on = a != UNLABELLED
    assert np.all(a[on] == label[on])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"radius": -1}, r"radius must be a number in \[0, inf\), got -1"),
        ({"num_points": 0}, r"num_points must be an integer >= 1, got 0"),
        ({"spatial_dims": "3"}, r"spatial_dims must be 2 or 3, got '3'"),
        ({"unlabelled": 0}, r"unlabelled must not be a class index in \[0, 3\], got 0"),
    ],
)
def test_points_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RandomPointDiscs(num_classes=4, **kwargs)


# --------------------------------------------------------------------------- tags


def test_tags_whole_and_per_slice():
    assert ImageTags(num_classes=4)(blocks()).tolist() == [1.0, 1.0, 1.0, 0.0]
    label = blocks(depth=5)  # class 1 absent from slice 4, class 2 only in slice 0
    whole = ImageTags(num_classes=4, spatial_dims=3)(label)
    assert whole.shape == (4,) and whole.tolist() == [1.0, 1.0, 1.0, 0.0]
    per_slice = ImageTags(num_classes=4, spatial_dims=2)(label)
    assert per_slice.shape == (4, 5) and per_slice.dtype == np.float32
    np.testing.assert_array_equal(per_slice[1], [1, 1, 1, 1, 0])
    np.testing.assert_array_equal(per_slice[2], [1, 0, 0, 0, 0])


def test_tags_types():
    meta = MetaTensor(torch.as_tensor(blocks()), meta={"filename_or_obj": "x.nii.gz"})
    out = ImageTagsd(keys="label", num_classes=4)({"label": meta})["tags"]
    assert type(out) is torch.Tensor and out.dtype == torch.float32 and out.tolist() == [1, 1, 1, 0]


# --------------------------------------------------------------------------- bounds


def test_bounds_hand_computed_2d():
    label = blocks()
    individual = SizeBounds(num_classes=4, mode="individual", margin=0.1)(label)
    np.testing.assert_allclose(individual, [[74 * 0.9, 74 * 1.1], [18, 22], [5.4, 6.6], [0, 0]], rtol=1e-6)
    tags = SizeBounds(num_classes=4, mode="tags")(label)
    np.testing.assert_array_equal(tags, [[1, 100], [1, 100], [1, 100], [0, 0]])
    common = [[10, 90], [60, 2000], [5, 50], [7, 8]]
    out = SizeBounds(num_classes=4, mode="common", common_bounds=common)(label)
    np.testing.assert_array_equal(out, [[10, 90], [60, 2000], [5, 50], [0, 0]])
    assert out.dtype == np.float32 and out.shape == (4, 2)


def test_bounds_per_slice_and_whole_volume():
    label = blocks(depth=3)  # class 1: 20, 15, 10 voxels; class 2: 6, 0, 0
    per_slice = SizeBounds(num_classes=3, mode="individual", margin=0.5, spatial_dims=2)(label)
    assert per_slice.shape == (3, 2, 3)
    np.testing.assert_allclose(per_slice[1], [[10, 7.5, 5], [30, 22.5, 15]])
    np.testing.assert_allclose(per_slice[2], [[3, 0, 0], [9, 0, 0]])
    tags = SizeBounds(num_classes=3, mode="tags", spatial_dims=2)(label)
    np.testing.assert_array_equal(tags[2], [[1, 0, 0], [100, 0, 0]])
    whole = SizeBounds(num_classes=3, mode="tags", spatial_dims=3)(label)
    np.testing.assert_array_equal(whole, [[1, 300], [1, 300], [1, 300]])
    out = SizeBoundsd(keys="label", num_classes=3, mode="individual", spatial_dims=3)(
        {"label": torch.as_tensor(label)}
    )["bounds"]
    assert isinstance(out, torch.Tensor)
    np.testing.assert_allclose(out[1].numpy(), [45 * 0.9, 45 * 1.1], rtol=1e-6)


def test_common_size_bounds_hand_computed():
    label = blocks(depth=3)  # class 1 sizes 20, 15, 10; class 2: 6; class 3 never present
    bounds = common_size_bounds([label, blocks()], num_classes=4, margin=0.1, spatial_dims=2)
    np.testing.assert_allclose(bounds[1:], [[9, 22], [5.4, 6.6], [0, 0]], rtol=1e-6)
    volume = common_size_bounds(label, num_classes=4, margin=0.0, spatial_dims=3)
    np.testing.assert_allclose(volume[1:], [[45, 45], [6, 6], [0, 0]])
    assert bounds.dtype == np.float32 and bounds.shape == (4, 2)
    with pytest.raises(ValueError, match=r"labels must contain at least one label array, got 0"):
        common_size_bounds([], num_classes=4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mode": "box"}, r"mode must be one of \('tags', 'common', 'individual'\), got 'box'"),
        ({"mode": "common"}, r"common_bounds is required with mode='common', got None"),
        ({"mode": "common", "common_bounds": [[0, 1]]}, r"common_bounds must have shape \(3, 2\), got \(1, 2\)"),
        (
            {"mode": "common", "common_bounds": [[0, 1], [5, 2], [0, 0]]},
            r"common_bounds rows must satisfy 0 <= lower <= upper, got \[\[5.0, 2.0\]\] for classes \[1\]",
        ),
        ({"margin": 1.5}, r"margin must be a number in \[0, 1\], got 1.5"),
    ],
)
def test_bounds_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SizeBounds(num_classes=3, **kwargs)


def test_tags_and_bounds_bad_inputs():
    with pytest.raises(ValueError, match=r"label must have shape \(1, H, W\[, D\]\), got \(3, 4\)"):
        ImageTags(num_classes=4)(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"label values must lie in \[0, 3\], got \[5\]"):
        SizeBounds(num_classes=4)(np.full((1, 3, 3), 5))
    with pytest.raises(ValueError, match=r"label values must lie in \[0, 1\], got \[0.5\]"):
        SizeBounds(num_classes=2)(torch.tensor([[[0.0, 0.5]]]))
