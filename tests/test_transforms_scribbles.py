"""Scribble generators (erosion and skeleton strokes) and real scribble files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from scipy import ndimage
from skimage.morphology import skeletonize

from wss_monai.constants import UNLABELLED
from wss_monai.transforms import (
    ErosionScribble,
    ErosionScribbled,
    RemapUnlabelled,
    RemapUnlabelledd,
    ShortenScribble,
    ShortenScribbled,
    StrokeScribble,
    StrokeScribbled,
)
from wss_monai.transforms.scribbles import box_erosion


def square(size: int = 20, lo: int = 4, hi: int = 16) -> np.ndarray:
    """(1, size, size) label with class 1 on [lo, hi)²."""
    label = np.zeros((1, size, size), dtype=np.int64)
    label[0, lo:hi, lo:hi] = 1
    return label


def heart(size: int = 40, depth: int = 0) -> np.ndarray:
    """ACDC-like label: LV disc (3) inside a MYO ring (2), RV crescent (1); 2D, or 3D of ``depth`` slices.

    The last slice of a 3D label has no RV, to test per-slice behaviour with absent classes.
    """
    yy, xx = np.mgrid[:size, :size]
    c = size / 2
    r = np.hypot(yy - c, xx - c + 3)
    rv = (np.hypot(yy - c, xx - c - 6) < 0.3 * size) & (r >= 0.3 * size)
    slices = []
    for z in range(max(depth, 1)):
        lab = np.zeros((size, size), dtype=np.int64)
        lab[r < 0.25 * size - z] = 2
        lab[r < 0.15 * size - z] = 3
        if not (depth and z == depth - 1):
            lab[rv] = 1
        slices.append(lab)
    return np.stack(slices, -1)[None] if depth else slices[0][None]


def annotated_agree(weak: np.ndarray, label: np.ndarray) -> bool:
    on = weak != UNLABELLED
    return bool(np.all(weak[on] == label[on])) and bool(np.all(weak[~on] == UNLABELLED))


# --------------------------------------------------------------------------- erosion


def test_box_erosion_equals_scipy_box():
    rng = np.random.default_rng(0)
    for ndim in (2, 3):
        mask = ndimage.binary_dilation(rng.random((11,) * ndim) > 0.9, iterations=2)
        for size in (1, 2, 3, 4, 5):
            for border in (0, 1):
                expected = ndimage.binary_erosion(mask, np.ones((size,) * ndim, bool), border_value=border)
                np.testing.assert_array_equal(box_erosion(mask, size, border), expected)


def test_erosion_square_kernel_3_hand_computed():
    weak = ErosionScribble(num_classes=2, kernel_size=3)(square())
    expected = np.full((20, 20), -1.0, np.float32)
    expected[:, :] = 0  # background minus the 1-px ring around the square (border counts as bg)
    expected[3:17, 3:17] = -1
    expected[5:15, 5:15] = 1  # 12 x 12 square eroded by 3 x 3: inner 10 x 10
    np.testing.assert_array_equal(weak[0], expected)
    assert weak.dtype == np.float32 and weak.shape == (1, 20, 20)


def test_erosion_even_kernel_follows_scipy_origin():
    # side 4 covers offsets -2..+1: rows p with p-2 >= 4 and p+1 <= 15 survive
    weak = ErosionScribble(num_classes=2, kernel_size=4, include_background=False)(square())
    expected = np.zeros((20, 20), bool)
    expected[6:15, 6:15] = True
    np.testing.assert_array_equal(weak[0] == 1, expected)


def test_erosion_falls_back_to_smaller_kernels():
    label = np.zeros((1, 15, 15), dtype=np.int64)
    label[0, 2:5, 2:5] = 1  # 3 x 3: empty for sides 10..4, centre pixel for side 3
    label[0, 10, 10] = 2  # single voxel: only side 1 (the mask itself) keeps it
    weak = ErosionScribble(num_classes=3, kernel_size=10)(label)
    assert np.argwhere(weak[0] == 1).tolist() == [[3, 3]]
    assert np.argwhere(weak[0] == 2).tolist() == [[10, 10]]
    assert (weak == 0).sum() > 0


def test_erosion_include_background_false():
    weak = ErosionScribble(num_classes=2, kernel_size=3, include_background=False)(square())
    assert set(np.unique(weak).tolist()) == {-1.0, 1.0}


def test_erosion_per_slice_equals_2d_calls_and_3d_differs():
    label = heart(depth=3)
    t2 = ErosionScribble(num_classes=4, kernel_size=5, spatial_dims=2)
    weak = t2(label)
    for z in range(3):
        np.testing.assert_array_equal(weak[..., z], t2(label[..., z]))
    cube = np.zeros((1, 10, 10, 7), dtype=np.int64)
    cube[0, 2:8, 2:8, 1:6] = 1
    weak3 = ErosionScribble(num_classes=2, kernel_size=3, spatial_dims=3, include_background=False)(cube)
    expected = np.zeros((10, 10, 7), bool)
    expected[3:7, 3:7, 2:5] = True
    np.testing.assert_array_equal(weak3[0] == 1, expected)


def test_erosion_every_present_class_kept_and_agrees():
    for label, dims in ((heart(), 2), (heart(depth=4), 2), (heart(depth=4), 3)):
        weak = ErosionScribble(num_classes=4, spatial_dims=dims)(label)
        assert annotated_agree(weak, label)
        if dims == 2 and label.ndim == 4:
            for z in range(label.shape[-1]):
                assert set(np.unique(weak[..., z])) - {-1} == set(np.unique(label[..., z]))


def test_erosion_dict_and_unlabelled_value():
    out = ErosionScribbled(keys="label", num_classes=2, kernel_size=3, unlabelled=255)({"label": square()})
    assert set(np.unique(out["scribble"]).tolist()) == {0.0, 1.0, 255.0}
    with pytest.raises(ValueError, match=r"output_key can only be used with a single key"):
        ErosionScribbled(keys=["a", "b"], num_classes=2)
    out = ErosionScribbled(keys=["a", "b"], num_classes=2, output_key=None)({"a": square(), "b": square()})
    assert out["a"].dtype == np.float32 and out["b"].dtype == np.float32


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_classes": 1}, r"num_classes must be an integer >= 2, got 1"),
        ({"num_classes": 2, "kernel_size": 0}, r"kernel_size must be an integer >= 1, got 0"),
        ({"num_classes": 2, "kernel_size": 2.5}, r"kernel_size must be an integer >= 1, got 2.5"),
        ({"num_classes": 2, "spatial_dims": 4}, r"spatial_dims must be 2 or 3, got 4"),
        ({"num_classes": 3, "unlabelled": 2}, r"unlabelled must not be a class index in \[0, 2\], got 2"),
    ],
)
def test_erosion_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ErosionScribble(**kwargs)


# --------------------------------------------------------------------------- strokes


def bar() -> np.ndarray:
    label = np.zeros((1, 12, 20), dtype=np.int64)
    label[0, 3:8, 2:18] = 1
    return label


def test_stroke_full_fraction_is_the_skeleton_of_the_eroded_class():
    label = bar()
    weak = StrokeScribble(num_classes=2, length_fraction=1.0).set_random_state(0)(label)
    expected = skeletonize(ndimage.binary_erosion(label[0] == 1))
    np.testing.assert_array_equal(weak[0] == 1, expected)
    rows = np.argwhere(weak[0] == 1)[:, 0]
    assert np.bincount(rows).argmax() == 5 and (rows == 5).sum() >= 10  # the bar's middle row


def test_stroke_background_lies_in_the_band():
    label = bar()
    m = 2
    weak = StrokeScribble(num_classes=2, background_margin=m).set_random_state(0)(label)
    distance = ndimage.distance_transform_edt(label[0] == 0)
    on = weak[0] == 0
    assert on.sum() > 10
    assert distance[on].min() >= m and distance[on].max() <= 2 * m


def test_stroke_half_fraction_is_contiguous_on_a_line():
    label = np.zeros((1, 9, 30), dtype=np.int64)
    label[0, 3:6, 2:28] = 1  # eroded: a single row 4, cols 3..26, its own skeleton (24 px)
    for seed in range(5):
        weak = StrokeScribble(num_classes=2, length_fraction=0.5, include_background=False).set_random_state(seed)(
            label
        )
        cols = np.sort(np.argwhere(weak[0] == 1)[:, 1])
        assert np.all(np.argwhere(weak[0] == 1)[:, 0] == 4)
        assert len(cols) == 12 and np.all(np.diff(cols) == 1)


def test_stroke_click_is_one_voxel_per_class_per_slice():
    label = heart(depth=4)
    weak = StrokeScribble(num_classes=4, length_fraction=0.0).set_random_state(1)(label)
    for z in range(4):
        for k in range(4):
            assert (weak[..., z] == k).sum() == int((label[..., z] == k).any())
    weak3 = StrokeScribble(num_classes=4, length_fraction=0.0, spatial_dims=3).set_random_state(1)(label)
    assert [int((weak3 == k).sum()) for k in range(4)] == [1, 1, 1, 1]


def test_stroke_width_dilates_click_inside_the_class():
    weak = StrokeScribble(num_classes=2, length_fraction=0.0, width=3, include_background=False)
    out = weak.set_random_state(0)(bar())
    on = np.argwhere(out[0] == 1)
    assert len(on) == 9 and np.ptp(on, axis=0).tolist() == [2, 2]


def test_stroke_grows_monotonically_and_nests_with_the_fraction():
    label = heart()
    previous = None
    for fraction in (0.0, 0.1, 0.3, 0.6, 0.9, 1.0):
        weak = StrokeScribble(num_classes=4, length_fraction=fraction).set_random_state(7)(label)
        assert annotated_agree(weak, label)
        on = weak != UNLABELLED
        if previous is not None:
            assert on.sum() >= previous.sum() and np.all(on[previous])
        previous = on


def test_stroke_shortened_ring_stays_connected():
    label = heart()
    for seed in range(4):
        weak = StrokeScribble(num_classes=4, length_fraction=0.3).set_random_state(seed)(label)
        _, pieces = ndimage.label(weak[0] == 2, structure=np.ones((3, 3)))
        assert pieces == 1


def test_stroke_seeded_and_seed_dependent():
    label = heart(depth=3)
    a = StrokeScribble(num_classes=4, length_fraction=0.4).set_random_state(3)(label)
    b = StrokeScribble(num_classes=4, length_fraction=0.4).set_random_state(3)(label)
    c = StrokeScribble(num_classes=4, length_fraction=0.4).set_random_state(4)(label)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    d = StrokeScribbled(keys="label", num_classes=4, length_fraction=0.4).set_random_state(3)({"label": label})
    np.testing.assert_array_equal(d["scribble"], a)


@pytest.mark.parametrize("dims, width", [(2, 1), (2, 3), (3, 1), (3, 2)])
def test_stroke_subset_of_the_label_2d_3d(dims, width):
    for label in (heart(), heart(depth=4)):
        for fraction in (0.0, 0.5, 1.0):
            t = StrokeScribble(num_classes=4, length_fraction=fraction, width=width, spatial_dims=dims)
            weak = t.set_random_state(0)(label)
            assert annotated_agree(weak, label)
            assert set(np.unique(weak)) - {-1} == set(np.unique(label))


def test_stroke_tiny_3d_class_without_skeleton_still_gets_a_voxel():
    label = np.zeros((1, 8, 8, 8), dtype=np.int64)
    label[0, 3:5, 3:5, 3:5] = 1  # skimage's 3D skeleton of a 2x2x2 cube is empty
    weak = StrokeScribble(num_classes=2, spatial_dims=3).set_random_state(0)(label)
    assert (weak == 1).sum() >= 1 and annotated_agree(weak, label)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"length_fraction": 1.5}, r"length_fraction must be a number in \[0, 1\], got 1.5"),
        ({"length_fraction": -0.1}, r"length_fraction must be a number in \[0, 1\], got -0.1"),
        ({"width": 0}, r"width must be an integer >= 1, got 0"),
        ({"background_margin": 0}, r"background_margin must be a number in \(0, inf\), got 0"),
        ({"spatial_dims": 1}, r"spatial_dims must be 2 or 3, got 1"),
    ],
)
def test_stroke_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        StrokeScribble(num_classes=4, **kwargs)


# --------------------------------------------------------------------------- scribble files


def test_remap_unlabelled_values_and_types():
    scribble = np.array([[[4, 0, 4], [1, 4, 3]]], dtype=np.uint8)
    expected = [[[-1.0, 0.0, -1.0], [1.0, -1.0, 3.0]]]
    out = RemapUnlabelled()(scribble)
    assert out.dtype == np.float32 and out.tolist() == expected
    assert scribble.tolist() == [[[4, 0, 4], [1, 4, 3]]]
    tensor = torch.as_tensor(scribble)
    out_t = RemapUnlabelled()(tensor)
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float32 and out_t.tolist() == expected


def test_remap_unlabelled_errors_name_the_file():
    bad = MetaTensor(torch.tensor([[[4, 5], [0, 7]]]), meta={"filename_or_obj": "/data/p01_scribble.nii.gz"})
    with pytest.raises(ValueError, match=r"scribble '/data/p01_scribble.nii.gz' values must be 4 .* got \[5, 7\]"):
        RemapUnlabelledd(keys="scribble")({"scribble": bad})
    empty = MetaTensor(torch.full((1, 2, 2), 4), meta={"filename_or_obj": "p02.nii.gz"})
    with pytest.raises(ValueError, match=r"scribble 'p02.nii.gz' contains no annotated voxel"):
        RemapUnlabelledd(keys="scribble")({"scribble": empty})
    out = RemapUnlabelledd(keys="scribble", allow_empty=True)({"scribble": empty})
    assert isinstance(out["scribble"], MetaTensor) and bool((out["scribble"] == -1).all())
    assert out["scribble"].meta["filename_or_obj"] == "p02.nii.gz"
    meta_dict = {"scribble": np.full((1, 2, 2), 4), "scribble_meta_dict": {"filename_or_obj": "p03.nii.gz"}}
    with pytest.raises(ValueError, match=r"scribble 'p03.nii.gz' contains no annotated voxel"):
        RemapUnlabelledd(keys="scribble")(meta_dict)
    with pytest.raises(ValueError, match=r"^scribble contains no annotated voxel"):
        RemapUnlabelled()(np.full((1, 2, 2), 4))
    with pytest.raises(ValueError, match=r"scribble must have shape \(1, H, W\[, D\]\), got \(2, 2\)"):
        RemapUnlabelled()(np.zeros((2, 2)))


def test_remap_unlabelled_bad_arguments():
    with pytest.raises(ValueError, match=r"unlabelled_value must not be a class index in \[0, 3\], got 2"):
        RemapUnlabelled(unlabelled_value=2)
    with pytest.raises(ValueError, match=r"num_classes must be an integer >= 2, got 0"):
        RemapUnlabelled(num_classes=0)


def _two_class_scribble() -> np.ndarray:
    """(1, 16, 16, 2) weak map: a 12-voxel line of class 1, two lines of class 2 (5 and 7 voxels), the rest -1."""
    weak = np.full((1, 16, 16, 2), -1.0, dtype=np.float32)
    weak[0, 3, 2:14, 0] = 1
    weak[0, 10, 1:6, 0] = 2
    weak[0, 10, 8:15, 0] = 2
    weak[0, 5, 2:14, 1] = 1
    return weak


def test_shorten_full_fraction_is_the_identity():
    weak = _two_class_scribble()
    out = ShortenScribble(num_classes=3, length_fraction=1.0, unlabelled=-1).set_random_state(0)(weak)
    np.testing.assert_array_equal(out, weak)


def test_shorten_half_keeps_half_of_every_stroke_contiguous_and_inside():
    weak = _two_class_scribble()
    out = ShortenScribble(num_classes=3, length_fraction=0.5, unlabelled=-1).set_random_state(3)(weak)
    assert np.all(weak[out >= 0] == out[out >= 0])  # a subset of the original strokes, same classes
    row = out[0, 3, :, 0] == 1
    assert row.sum() == 6 and np.ptp(np.flatnonzero(row)) == 5  # round(0.5 * 12) = 6, one stretch
    left, right = out[0, 10, 1:6, 0] == 2, out[0, 10, 8:15, 0] == 2
    assert (left.sum(), right.sum()) == (2, 4)  # round(2.5) = 2 (half to even), round(3.5) = 4
    assert (out[..., 1] == 1).sum() == 6  # slices are shortened on their own


def test_shorten_click_keeps_one_voxel_per_class_and_slice():
    weak = _two_class_scribble()
    out = ShortenScribble(num_classes=3, length_fraction=0.0, unlabelled=-1).set_random_state(1)(weak)
    assert [int((out[..., 0] == k).sum()) for k in (0, 1, 2)] == [0, 1, 1]
    assert [int((out[..., 1] == k).sum()) for k in (0, 1, 2)] == [0, 1, 0]


def test_shorten_nests_with_the_fraction_for_a_seed():
    weak = _two_class_scribble()
    kept = [
        ShortenScribble(num_classes=3, length_fraction=f, unlabelled=-1).set_random_state(5)(weak) >= 0
        for f in (0.0, 0.25, 0.5, 0.75)
    ]
    for small, large in zip(kept, kept[1:]):
        assert np.all(large[small]) and large.sum() > small.sum()


def test_shorten_dict_torch_and_bad_values():
    weak = torch.as_tensor(_two_class_scribble())
    t = ShortenScribbled(keys="scribble", num_classes=3, length_fraction=0.0, unlabelled=-1).set_random_state(0)
    out = t({"scribble": weak})["scribble"]
    assert isinstance(out, torch.Tensor) and int((out >= 0).sum()) == 3
    bad = _two_class_scribble()
    bad[0, 0, 0, 0] = 7
    with pytest.raises(ValueError, match=r"range\(3\).*7"):
        ShortenScribble(num_classes=3, length_fraction=0.5, unlabelled=-1)(bad)
    with pytest.raises(ValueError, match=r"\(1, H, W\[, D\]\).*\(16, 16\)"):
        ShortenScribble(num_classes=3, length_fraction=0.5, unlabelled=-1)(np.zeros((16, 16), np.float32))
    with pytest.raises(ValueError, match="length_fraction"):
        ShortenScribble(num_classes=3, length_fraction=1.5)
