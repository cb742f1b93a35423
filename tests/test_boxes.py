"""Box transforms, box segments and the box constraint loss: hand-checked cases, 2D and 3D, gradients, bad input."""

import json
import math
import re

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from wss_monai.losses import BoxConstraintLoss, log_barrier_extension
from wss_monai.transforms import (
    BoundingBoxes,
    BoundingBoxesd,
    BoxFilesd,
    BoxIds,
    BoxTarget,
    attach_box_files,
    box_segments,
    boxes_from_ids,
    boxes_to_ids,
    read_box_json,
    read_box_mask,
    segment_sums,
    sub_box_sums,
)

# ---------------------------------------------------------------------------------------------- segments


def _cover_counts(lo, hi, seg, shape):
    """Per axis, how many segments of that axis cover each voxel of ``shape`` (dense, for the test only)."""
    counts = np.zeros((len(shape), *shape), int)
    for a, low, high in zip(seg.axis.tolist(), seg.lo.tolist(), seg.hi.tolist()):
        counts[(a, *(slice(x, y) for x, y in zip(low, high)))] += 1
    return counts


def test_segments_of_a_2d_box_by_hand():
    lo, hi = torch.tensor([[1, 2]]), torch.tensor([[12, 5]])  # 11 rows x 3 columns, w = 5
    seg = box_segments(lo, hi, width=5)
    assert seg.axis.tolist() == [0, 0, 0, 1]
    assert seg.lo.tolist() == [[1, 2], [6, 2], [11, 2], [1, 2]]
    assert seg.hi.tolist() == [[6, 5], [11, 5], [12, 5], [12, 5]]
    assert seg.target.tolist() == [5, 5, 1, 3]  # the last partial band (row 11) is kept, with target 1


@pytest.mark.parametrize(
    "shape, lo, hi",
    [((9, 13), [[0, 1], [3, 4]], [[9, 6], [7, 13]]), ((7, 8, 6), [[0, 1, 2], [2, 0, 0]], [[7, 8, 3], [5, 3, 6]])],
)
@pytest.mark.parametrize("width", [1, 2, 5])
def test_segments_cover_each_box_exactly_once_per_axis(shape, lo, hi, width):
    lo, hi = torch.tensor(lo), torch.tensor(hi)
    seg = box_segments(lo, hi, width)
    for g in range(len(lo)):
        mine = seg.box == g
        sub = type(seg)(*(t[mine] for t in seg))
        counts = _cover_counts(lo[g], hi[g], sub, shape)
        inside = np.zeros(shape, bool)
        inside[tuple(slice(a, b) for a, b in zip(lo[g].tolist(), hi[g].tolist()))] = True
        for axis in range(len(shape)):
            assert (counts[axis][inside] == 1).all() and (counts[axis][~inside] == 0).all()
        assert ((sub.hi - sub.lo)[torch.arange(len(sub.axis)), sub.axis] == sub.target).all()
        assert (sub.target <= width).all()


def test_segments_reject_empty_boxes_and_bad_width():
    with pytest.raises(ValueError, match=r"box 1 is empty: lo \[2, 2\], hi \[2, 5\]"):
        box_segments(torch.tensor([[0, 0], [2, 2]]), torch.tensor([[3, 3], [2, 5]]))
    with pytest.raises(ValueError, match="width must be an integer >= 1, got 0"):
        box_segments(torch.tensor([[0, 0]]), torch.tensor([[3, 3]]), width=0)


@pytest.mark.parametrize("shape", [(2, 6, 7), (2, 5, 4, 6)])
def test_sub_box_sums_match_direct_sums_and_their_gradient(shape):
    torch.manual_seed(0)
    values = torch.rand(shape, dtype=torch.float64, requires_grad=True)
    dims = len(shape) - 1
    lo = torch.stack([torch.randint(0, s - 1, (20,)) for s in shape[1:]], 1)
    hi = lo + torch.stack([torch.randint(1, s - int(first.max()), (20,)) for s, first in zip(shape[1:], lo.T)], 1)
    hi = torch.minimum(hi, torch.tensor(shape[1:]))
    row = torch.randint(0, shape[0], (20,))
    sums = sub_box_sums(values, row, lo, hi)
    direct = torch.stack(
        [
            values[(r, *(slice(a, b) for a, b in zip(low, high)))].sum()
            for r, low, high in zip(row.tolist(), lo.tolist(), hi.tolist())
        ]
    )
    torch.testing.assert_close(sums, direct)
    assert dims in (2, 3)
    (grad,) = torch.autograd.grad(sums.sum(), values)
    (direct_grad,) = torch.autograd.grad(direct.sum(), values)
    torch.testing.assert_close(grad, direct_grad)


@pytest.mark.parametrize("width", [1, 2, 5])
@pytest.mark.parametrize("spatial", [(9, 11), (7, 6, 8)])
def test_segment_sums_over_box_voxels_equal_the_summed_area_table_and_its_gradient(spatial, width):
    generator = torch.Generator().manual_seed(0)
    ids = torch.zeros(3, 2, *spatial)
    for image in range(3):  # one rectangular box per image and channel, at random places
        for channel in range(2):
            lo = [int(torch.randint(0, n - 1, (1,), generator=generator)) for n in spatial]
            hi = [int(torch.randint(a + 1, n + 1, (1,), generator=generator)) for a, n in zip(lo, spatial)]
            ids[(image, channel, *(slice(a, b) for a, b in zip(lo, hi)))] = 1
    values = torch.rand(6, *spatial, dtype=torch.float64, generator=generator, requires_grad=True)
    table = boxes_from_ids(ids)
    seg = box_segments(table.lo, table.hi, width)
    expected = sub_box_sums(values, table.row[seg.box], seg.lo, seg.hi)
    sums = segment_sums(values.reshape(6, -1)[table.voxel_row, table.voxel_index], table, spatial, width)
    torch.testing.assert_close(sums, expected)
    (grad,) = torch.autograd.grad(sums.square().sum(), values)
    (expected_grad,) = torch.autograd.grad(expected.square().sum(), values)
    torch.testing.assert_close(grad, expected_grad)


def test_boxes_from_ids_by_hand():
    ids = torch.zeros(2, 2, 5, 6)
    ids[0, 0, 1:3, 2:5] = 1
    ids[0, 0, 4, 0] = 2
    ids[1, 1, 0:5, 5] = 3
    ids[1, 1, 0, 0] = -1  # padding: outside
    table = boxes_from_ids(ids)
    assert table.row.tolist() == [0, 0, 3]
    assert table.lo.tolist() == [[1, 2], [4, 0], [0, 5]]
    assert table.hi.tolist() == [[3, 5], [5, 1], [5, 6]]
    assert table.count.tolist() == [6, 1, 5]


# ---------------------------------------------------------------------------------------------- transforms


def _label_2d():
    label = np.zeros((1, 10, 12), np.int64)
    label[0, 2:5, 3:9] = 1
    label[0, 7:9, 1:3] = 1  # a second component of class 1
    label[0, 3:6, 4:6] = 2
    return label


def test_tight_boxes_one_per_component_and_class():
    boxes = BoundingBoxes(num_classes=3)(_label_2d())
    assert boxes.tolist() == [[1, 2, 3, 5, 9], [1, 7, 1, 9, 3], [2, 3, 4, 6, 6]]


def test_boxes_2d_per_slice_and_3d_per_volume():
    label = np.zeros((1, 6, 6, 3), np.int64)
    label[0, 1:3, 1:4, 0] = 1
    label[0, 2:5, 2:3, 2] = 1
    per_slice = BoundingBoxes(num_classes=2, box_dims=2)(label)
    assert per_slice.tolist() == [[1, 1, 1, 0, 3, 4, 1], [1, 2, 2, 2, 5, 3, 3]]
    per_volume = BoundingBoxes(num_classes=2, box_dims=3)(label)
    assert per_volume.tolist() == [[1, 1, 1, 0, 3, 4, 1], [1, 2, 2, 2, 5, 3, 3]]  # two 3D components
    label[0, 2, 2, 1] = 1  # joins them through slice 1
    assert BoundingBoxes(num_classes=2, box_dims=3)(label).tolist() == [[1, 1, 1, 0, 5, 4, 3]]


def test_margin_is_clipped_to_the_image_and_depth_sides_stay_in_2d():
    label = np.zeros((1, 8, 8, 2), np.int64)
    label[0, 0:2, 5:7, 1] = 1
    assert BoundingBoxes(num_classes=2, margin=3)(label).tolist() == [[1, 0, 2, 1, 5, 8, 2]]
    assert BoundingBoxes(num_classes=2, margin=3, box_dims=3)(label).tolist() == [[1, 0, 2, 0, 5, 8, 2]]


def test_file_margin_is_scaled_by_the_resizing_to_the_training_grid():
    # a 40 x 20 x 3 file resized to 20 x 10 x 3: 0.5 training voxels per file voxel in-plane
    label = torch.zeros(1, 20, 10, 3, dtype=torch.int64)
    label[0, 8:12, 4:6, 1] = 1
    label = MetaTensor(label, meta={"spatial_shape": [40, 20, 3], "filename_or_obj": "case.nii.gz"})
    # margin 4 file voxels -> 2 training voxels in-plane; in 2D the depth sides stay
    assert BoundingBoxes(num_classes=2, margin=4, margin_space="file")(label).tolist() == [[1, 6, 2, 1, 14, 8, 2]]
    # per-axis margins (6, 2, 2) file voxels -> (3, 1, 2) training voxels (depth not resized), clipped in depth
    per_axis = BoundingBoxes(num_classes=2, margin=[6, 2, 2], box_dims=3, margin_space="file")(label)
    assert per_axis.tolist() == [[1, 5, 3, 0, 15, 7, 3]]
    # the same margin in training-grid voxels
    assert BoundingBoxes(num_classes=2, margin=4)(label).tolist() == [[1, 4, 0, 1, 16, 10, 2]]


def test_file_margin_without_the_file_shape_is_an_error_naming_the_setting():
    label = np.zeros((1, 6, 6), np.int64)
    label[0, 2:4, 2:4] = 1
    with pytest.raises(ValueError, match=r"margin_space 'file' needs the label's spatial_shape metadata.*margin 2"):
        BoundingBoxes(num_classes=2, margin=2, margin_space="file")(label)
    # no margin and no jitter: nothing to scale, the tight boxes need no metadata
    assert BoundingBoxes(num_classes=2, margin_space="file")(label).tolist() == [[1, 2, 2, 4, 4]]
    with pytest.raises(ValueError, match=r"margin_space must be one of \('grid', 'file'\), got 'mm'"):
        BoundingBoxes(num_classes=2, margin_space="mm")


def test_jitter_is_seeded_per_file_and_stays_in_range():
    label = MetaTensor(torch.as_tensor(_label_2d()), meta={"filename_or_obj": "/data/case1.nii.gz"})
    a = BoundingBoxes(num_classes=3, jitter=2, seed=1)(label)
    b = BoundingBoxes(num_classes=3, jitter=2, seed=1)(label)
    c = BoundingBoxes(num_classes=3, jitter=2, seed=2)(label)
    tight = BoundingBoxes(num_classes=3)(label)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.abs(a - tight).max() <= 2 and (a[:, 3:] > a[:, 1:3]).all()


def test_dictionary_version_does_not_mutate_its_input():
    data = {"label": _label_2d()}
    before = data["label"].copy()
    out = BoundingBoxesd(keys="label", num_classes=3, margin=1)(data)
    np.testing.assert_array_equal(data["label"], before)
    assert out["boxes"].shape == (3, 5)


def test_box_ids_join_overlapping_boxes_of_one_class_and_keep_classes_apart():
    boxes = np.array([[1, 0, 0, 3, 3], [1, 2, 2, 5, 5], [1, 7, 7, 8, 8], [2, 1, 1, 4, 4]])
    ids = BoxIds(num_classes=3)(boxes, np.zeros((1, 9, 9)))
    assert ids.shape == (2, 9, 9)
    assert set(np.unique(ids[0])) == {0, 1, 2}
    table = boxes_from_ids(torch.as_tensor(ids)[None])
    assert table.lo.tolist() == [[0, 0], [7, 7], [1, 1]] and table.hi.tolist() == [[5, 5], [8, 8], [4, 4]]
    assert table.count.tolist() == [9 + 9 - 1, 1, 9]  # the union's voxels, not its bounding box's


def test_box_ids_are_unique_per_volume_in_2d_mode():
    boxes = np.array([[1, 0, 0, 0, 2, 2, 1], [1, 0, 0, 1, 2, 2, 2]])  # the same 2D box in slices 0 and 1
    ids = boxes_to_ids(boxes, (4, 4, 2), num_classes=2, box_dims=2)
    assert ids[0, 0, 0, 0] != ids[0, 0, 0, 1]
    assert boxes_to_ids(boxes, (4, 4, 2), num_classes=2, box_dims=3)[0, 0, 0].tolist() == [1, 1]


def test_box_target_inside_outside_and_the_smaller_box_wins():
    ids = np.zeros((2, 6, 6), np.float32)
    ids[0, 0:5, 0:5] = 1
    ids[1, 1:3, 1:3] = 1
    ids[1, 5, 5] = -1
    target = BoxTarget()(ids)[0]
    assert target[0, 0] == 1 and target[1, 1] == 2 and target[4, 4] == 1 and target[0, 5] == 0
    assert target[5, 5] == -1


# ---------------------------------------------------------------------------------------------- box files


def _nifti(path, array, affine=None):
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), str(path))
    return str(path)


def test_json_boxes_are_read_and_bad_ones_named(tmp_path):
    good = tmp_path / "a_boxes.json"
    good.write_text(json.dumps({"boxes": [{"class": 1, "box": [1, 2, 0, 4, 6, 1]}]}))
    assert read_box_json(good, (8, 8, 2), 2).tolist() == [[1, 1, 2, 0, 4, 6, 1]]
    cases = {
        "outside": (
            [{"class": 1, "box": [1, 2, 0, 9, 6, 1]}],
            r"box 0 \[1, 1, 2, 0, 9, 6, 1\] lies partly outside the image of shape \(8, 8, 2\)",
        ),
        "zero": (
            [{"class": 1, "box": [0, 0, 0, 4, 4, 1]}, {"class": 1, "box": [3, 2, 0, 3, 6, 1]}],
            r"box 1 \[1, 3, 2, 0, 3, 6, 1\] has zero width on axis 0",
        ),
        "class": ([{"class": 0, "box": [0, 0, 0, 4, 4, 1]}], r"box 0 .* has class 0, not a foreground class 1..1"),
        "shape": ([{"class": 1, "box": [0, 0, 4, 4]}], r"box 0 must be .*\[6 integers\]"),
    }
    for name, (entries, message) in cases.items():
        path = tmp_path / f"{name}_boxes.json"
        path.write_text(json.dumps({"boxes": entries}))
        with pytest.raises(ValueError, match=re.escape(str(path)) + ".*" + message):
            read_box_json(path, (8, 8, 2), 2)
    broken = tmp_path / "broken_boxes.json"
    broken.write_text('{"boxes": [')
    with pytest.raises(ValueError, match=re.escape(f"box file {broken} is not readable JSON")):
        read_box_json(broken, (8, 8, 2), 2)


def test_box_mask_is_read_checked_and_rejects_overlaps_and_other_affines(tmp_path):
    mask = np.zeros((8, 8, 2), np.uint8)
    mask[1:4, 2:6, 0] = 1
    mask[5:7, 5:7, 1] = 2
    path = _nifti(tmp_path / "m_boxes.nii.gz", mask)
    boxes, shape = read_box_mask(path, num_classes=3, reference=(np.eye(4), (8, 8, 2)))
    assert boxes.tolist() == [[1, 1, 2, 0, 4, 6, 1], [2, 5, 5, 1, 7, 7, 2]] and shape == (8, 8, 2)
    moved = np.eye(4)
    moved[0, 3] = 5.0
    with pytest.raises(ValueError, match=re.escape(f"box mask {path} and its image have different affines")):
        read_box_mask(path, num_classes=3, reference=(moved, (8, 8, 2)))
    mask[2:3, 3:4, 0] = 2  # a class-2 box drawn over the class-1 box: class 1 is no longer a filled box
    overlap = _nifti(tmp_path / "o_boxes.nii.gz", mask)
    with pytest.raises(
        ValueError,
        match=re.escape(
            f"box mask {overlap}: the class-1 region with bounding box lo [1, 2, 0], hi [4, 6, 1] is not a filled box"
        ),
    ):
        read_box_mask(overlap, num_classes=3)


def test_box_files_transform_resizes_to_the_training_grid(tmp_path):
    image = _nifti(tmp_path / "case.nii.gz", np.zeros((8, 8, 2), np.float32))
    (tmp_path / "boxes").mkdir()
    (tmp_path / "boxes" / "case_boxes.json").write_text(
        json.dumps({"boxes": [{"class": 1, "box": [0, 4, 1, 4, 8, 2]}]})
    )
    items = attach_box_files([{"image": image}], tmp_path / "boxes")
    assert items[0]["box_file"].endswith("case_boxes.json")
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Resized

    data = Compose([LoadImaged("image", image_only=True), EnsureChannelFirstd("image"), Resized("image", (4, 4, -1))])(
        items[0]
    )
    ids = BoxFilesd(num_classes=2)(data)["box_ids"]
    assert tuple(ids.shape) == (1, 4, 4, 2)
    expected = np.zeros((4, 4, 2))
    expected[0:2, 2:4, 1] = 1
    np.testing.assert_array_equal(np.asarray(ids[0]), expected)
    with pytest.raises(FileNotFoundError, match=r"no box file for .*other.nii.gz; looked for"):
        attach_box_files([{"image": str(tmp_path / "other.nii.gz")}], tmp_path / "boxes")


# ---------------------------------------------------------------------------------------------- losses


def _ids_2d():
    ids = torch.zeros(1, 1, 6, 6)
    ids[0, 0, 1:4, 1:3] = 1  # a 3 x 2 box
    return ids


def _logits_with_foreground(prob: float, shape=(1, 2, 6, 6)) -> torch.Tensor:
    logits = torch.zeros(shape)
    logits[:, 1] = math.log(prob / (1 - prob))
    return logits.requires_grad_()


def test_tightness_values_and_gradient_by_hand():
    logits = _logits_with_foreground(0.2)
    loss = BoxConstraintLoss(terms=["tightness"], width=2, mode="penalty")
    z, image = loss.constraint_values(logits, {"box_ids": _ids_2d()})["tightness"]
    # axis 0: rows 1-2 (2 x 2 voxels, target 2) and row 3 (2 voxels, target 1); axis 1: columns 1-2 (6 voxels, target 2)
    torch.testing.assert_close(z, torch.tensor([2 - 0.8, 1 - 0.4, 2 - 1.2]))
    assert image.tolist() == [0, 0, 0]
    value = loss(logits, {"box_ids": _ids_2d()})
    torch.testing.assert_close(value, torch.tensor(1.2**2 + 0.6**2 + 0.8**2))
    value.backward()
    # d/dS at a voxel of rows 1-2: -2 z_row - 2 z_col = -2 (1.2 + 0.8); row 3: -2 (0.6 + 0.8); dS/dlogit_1 = S (1 - S)
    grad = logits.grad[0, 1]
    torch.testing.assert_close(grad[1, 1], torch.tensor(-2 * 2.0 * 0.16))
    torch.testing.assert_close(grad[3, 2], torch.tensor(-2 * 1.4 * 0.16))
    assert grad[0, 0] == 0 and grad[4, 1] == 0


def test_emptiness_and_size_values_by_hand_with_the_log_barrier():
    logits = _logits_with_foreground(0.25)
    loss = BoxConstraintLoss(terms=["emptiness", "size"], epsilon=0.5, mode="log_barrier", t=5.0)
    values = loss.constraint_values(logits, {"box_ids": _ids_2d()})
    torch.testing.assert_close(values["emptiness"][0], torch.tensor([30 * 0.25]))
    torch.testing.assert_close(values["size"][0], torch.tensor([0.5 * 6 - 1.5, 1.5 - 6]))
    expected = log_barrier_extension(torch.tensor([7.5, 1.5, -4.5]), 5.0).sum()
    torch.testing.assert_close(loss(logits, {"box_ids": _ids_2d()}), expected)
    tight = BoxConstraintLoss(terms=["size"], epsilon=0.1, upper=0.2, mode="penalty")  # 1.5 > 0.2 x 6 = 1.2
    torch.testing.assert_close(tight.constraint_values(logits, {"box_ids": _ids_2d()})["size"][0],
                               torch.tensor([0.1 * 6 - 1.5, 1.5 - 0.2 * 6]))  # fmt: skip
    torch.testing.assert_close(tight(logits, {"box_ids": _ids_2d()}), torch.tensor(0.3**2))
    with pytest.raises(ValueError, match=r"upper must lie in \[epsilon, 1\] = \[0.5, 1\], got 0.4"):
        BoxConstraintLoss(epsilon=0.5, upper=0.4)


def test_a_lower_size_bound_per_class_by_hand():
    ids = torch.zeros(1, 2, 4, 4)
    ids[0, 0, 0:2, 0:2] = 1  # class 1: a 4-voxel box
    ids[0, 1, 2:4, 2:4] = 1  # class 2: another
    logits = torch.zeros(1, 3, 4, 4)  # S = 1/3: each box holds 4/3
    per_class = BoxConstraintLoss(terms=["size"], epsilon=[0.5, 0.25], mode="penalty")
    z = per_class.constraint_values(logits, {"box_ids": ids})["size"][0]
    torch.testing.assert_close(z, torch.tensor([2 - 4 / 3, 1 - 4 / 3, 4 / 3 - 4, 4 / 3 - 4]))
    torch.testing.assert_close(per_class(logits, {"box_ids": ids}), torch.tensor((2 / 3) ** 2))  # class 2 holds
    both = BoxConstraintLoss(terms=["size"], epsilon=0.5, mode="penalty")(logits, {"box_ids": ids})
    torch.testing.assert_close(both, torch.tensor(2 * (2 / 3) ** 2))
    with pytest.raises(ValueError, match=r"epsilon gives 3 values \[0.5, 0.25, 0.5\] for 2 constrained classes"):
        BoxConstraintLoss(epsilon=[0.5, 0.25, 0.5])(logits, {"box_ids": ids})
    with pytest.raises(
        ValueError, match=r"epsilon must lie in \[0, 1\] \(one value or one per class\), got \[0.5, 1.5\]"
    ):
        BoxConstraintLoss(epsilon=[0.5, 1.5])
    with pytest.raises(ValueError, match=r"upper must lie in \[epsilon, 1\] = \[0.6, 1\], got 0.5"):
        BoxConstraintLoss(epsilon=[0.2, 0.6], upper=0.5)


def test_log_form_of_the_lower_size_bound_by_hand_and_its_gradient_where_the_class_left_its_box():
    ids = torch.zeros(1, 2, 4, 4)
    ids[0, 0, 0:2, 0:2] = 1  # class 1: a 4-voxel box
    ids[0, 1, 2:4, 2:4] = 1  # class 2: another
    logits = torch.zeros(1, 3, 4, 4, dtype=torch.float64)  # S = 1/3: each box holds 4/3
    log_form = BoxConstraintLoss(terms=["size"], epsilon=[0.5, 0.0], log_size=True, mode="penalty")
    z = log_form.constraint_values(logits, {"box_ids": ids})["size"][0]
    # class 1: b = 2, 2 (log 2 - log 4/3); class 2: ε = 0, the bound -Σ S; the upper bounds as in the plain form
    expected = [2 * (math.log(2) - math.log(4 / 3)), -4 / 3, 4 / 3 - 4, 4 / 3 - 4]
    torch.testing.assert_close(z, torch.tensor(expected, dtype=torch.float64))
    # gradient check of the log-sum-exp over each box's voxels
    logits = torch.randn(1, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    cost = BoxConstraintLoss(terms=["size"], epsilon=0.9, log_size=True, mode="penalty")
    assert torch.autograd.gradcheck(lambda x: cost(x, {"box_ids": ids}), (logits,))
    # the class has left its boxes (softmax e^-30 there): the plain form's gradient vanishes, the log form's
    # is t ε (1 - S) at the box's voxels; at softmax 0 (logit gap 200, float32) the log form stays finite
    for gap, plain_gradient in ((30.0, 1e-10), (200.0, 0.0)):
        gone = torch.zeros(1, 3, 4, 4)
        gone[:, 0] = gap
        gone.requires_grad_(True)
        for log_size in (False, True):
            loss = BoxConstraintLoss(terms=["size"], epsilon=0.5, log_size=log_size, mode="log_barrier", t=5.0)
            (gradient,) = torch.autograd.grad(loss(gone, {"box_ids": ids}), gone)
            assert torch.isfinite(gradient).all()
            inside = gradient[0, 1, 0:2, 0:2]
            if log_size:
                torch.testing.assert_close(inside, torch.full((2, 2), -5.0 * 0.5), rtol=1e-5, atol=1e-6)
            else:
                assert inside.abs().max() <= plain_gradient


def assert_float32_matches_float64(loss, logits, batch, value_atol):
    """``loss`` and its gradient in float32 (finite) equal those in float64; returns the float64 gradient."""
    values, gradients = [], []
    for dtype in (torch.float32, torch.float64):
        x = logits.to(dtype).requires_grad_(True)
        value = loss(x, batch)
        (gradient,) = torch.autograd.grad(value, x)
        values.append(value.double())
        gradients.append(gradient.double())
    assert torch.isfinite(values[0]) and torch.isfinite(gradients[0]).all()
    torch.testing.assert_close(values[0], values[1], rtol=1e-5, atol=value_atol)
    torch.testing.assert_close(gradients[0], gradients[1], rtol=1e-4, atol=1e-6)
    return gradients[1]


def test_log_form_from_the_box_sums_equals_the_log_sum_exp_where_the_softmax_underflows():
    # float32, logit gap 200: class 1's softmax is 0 in its box, so log Σ S comes from the log-softmax;
    # float64 holds e^-200 and takes it from the box's summed softmax: both give one value and gradient
    ids = torch.zeros(2, 2, 6, 6)
    ids[:, 0, 0:3, 0:4] = 1
    ids[:, 1, 2:6, 1:5] = 1
    ids[1, 1, 0:2, 5:6] = 2
    logits = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    logits[0, 0, 0:3, 0:4] = 200.0
    ring = BoxConstraintLoss(
        terms=["size"], epsilon=[0.7, 0.6], log_size=True, size_less_classes=[[], [1]], mode="log_barrier", t=5.0
    )
    # class 1's box counts S_1 + S_2, both 0 there in float32: a log-sum-exp over the two channels
    union = BoxConstraintLoss(
        terms=["size"], epsilon=[0.7, 0.6], log_size=True, size_classes=[[1, 2], [2]], mode="log_barrier", t=5.0
    )
    for loss in (ring, union):
        assert_float32_matches_float64(loss, logits, {"box_ids": ids}, value_atol=1e-4)


def test_size_bound_of_a_box_that_encloses_another_class_by_hand():
    ids = torch.zeros(1, 2, 4, 4)
    ids[0, 0, 0:2, 0:2] = 1  # class 1 (a ring): a 4-voxel box
    ids[0, 1, 0:1, 0:1] = 1  # class 2, inside it: a 1-voxel box
    logits = torch.zeros(1, 3, 4, 4, dtype=torch.float64)  # S = 1/3
    union = BoxConstraintLoss(terms=["size"], epsilon=0.9, size_classes=[[1, 2], [2]], mode="penalty")
    z = union.constraint_values(logits, {"box_ids": ids})["size"][0]
    # class 1's box holds S_1 + S_2 = 2/3 per voxel, 8/3 in all; class 2's box S_2 alone, 1/3
    expected = [3.6 - 8 / 3, 0.9 - 1 / 3, 8 / 3 - 4, 1 / 3 - 1]
    torch.testing.assert_close(z, torch.tensor(expected, dtype=torch.float64))
    alone = BoxConstraintLoss(terms=["size"], epsilon=0.9, mode="penalty").constraint_values(logits, {"box_ids": ids})
    torch.testing.assert_close(
        alone["size"][0], torch.tensor([3.6 - 4 / 3, 0.9 - 1 / 3, 4 / 3 - 4, 1 / 3 - 1]).double()
    )
    assert union(logits, {"box_ids": ids}).item() == pytest.approx((3.6 - 8 / 3) ** 2 + (0.9 - 1 / 3) ** 2)
    # the log form: b (log b - log Σ (S_1 + S_2))
    log_union = BoxConstraintLoss(
        terms=["size"], epsilon=0.9, size_classes=[[1, 2], [2]], log_size=True, mode="penalty"
    )
    z = log_union.constraint_values(logits, {"box_ids": ids})["size"][0]
    torch.testing.assert_close(z[:2], torch.tensor([3.6 * math.log(3.6 / (8 / 3)), 0.9 * math.log(2.7)]).double())
    # gradients of both forms, float64
    logits = torch.randn(1, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    for loss in (union, log_union):
        assert torch.autograd.gradcheck(lambda x, loss=loss: loss(x, {"box_ids": ids}), (logits,))
    # tightness and emptiness keep the class alone
    others = dict(terms=["tightness", "emptiness"], width=1, mode="penalty")
    with_union = BoxConstraintLoss(size_classes=[[1, 2], [2]], **others)(logits, {"box_ids": ids})
    torch.testing.assert_close(with_union, BoxConstraintLoss(**others)(logits, {"box_ids": ids}))
    with pytest.raises(ValueError, match=r"size_classes of class 1 must hold 1 itself and channels below 3, got \[2\]"):
        BoxConstraintLoss(terms=["size"], size_classes=[[2], [2]])(logits, {"box_ids": ids})
    with pytest.raises(
        ValueError, match=r"size_classes of class 2 must hold 2 itself and channels below 3, got \[2, 3\]"
    ):
        BoxConstraintLoss(terms=["size"], size_classes=[[1], [2, 3]])(logits, {"box_ids": ids})
    with pytest.raises(ValueError, match=r"size_classes gives 1 lists \[\[1\]\] for 2 constrained classes \[1, 2\]"):
        BoxConstraintLoss(terms=["size"], size_classes=[[1]])(logits, {"box_ids": ids})
    with pytest.raises(ValueError, match=r"size_classes must give, per constrained class, a non-empty list"):
        BoxConstraintLoss(size_classes=[[1], []])
    with pytest.raises(ValueError, match=r"size_classes must give.*got \[1, 2\]"):
        BoxConstraintLoss(size_classes=[1, 2])


def test_size_bound_of_a_ring_counts_its_box_less_the_enclosed_boxes_by_hand():
    ids = torch.zeros(2, 2, 6, 6)
    ids[0, 0, 0:4, 0:4] = 1  # image 0, class 1 (a ring): a 16-voxel box
    ids[0, 1, 1:3, 1:3] = 1  # class 2 inside it: 4 voxels, all in the ring's box
    ids[1, 0, 0:3, 0:3] = 1  # image 1: a 9-voxel ring box
    ids[1, 1, 2:5, 2:5] = 2  # a 9-voxel class-2 box overlapping it by one voxel (2, 2)
    logits = torch.zeros(2, 3, 6, 6, dtype=torch.float64)  # S = 1/3
    ring = BoxConstraintLoss(terms=["size"], epsilon=0.75, size_less_classes=[[2], []], mode="penalty")
    z = ring.constraint_values(logits, {"box_ids": ids})["size"][0]
    # lower bounds: 0.75 (16 - 4) = 9 against 16/3; 0.75 (9 - 1) = 6 against 3;
    # the class-2 boxes keep 0.75 · 4 and 0.75 · 9
    expected_lower = [9 - 16 / 3, 3.0 - 4 / 3, 6 - 3.0, 6.75 - 3.0]
    table = boxes_from_ids(ids)
    order = [(int(r), int(n)) for r, n in zip(table.row, table.count)]
    assert order == [(0, 16), (1, 4), (2, 9), (3, 9)]  # rows: image · 2 + class channel
    expected_upper = [16 / 3 - 16, 4 / 3 - 4, 3.0 - 9, 3.0 - 9]
    torch.testing.assert_close(z, torch.tensor(expected_lower + expected_upper, dtype=torch.float64))
    # the log form keeps the same bound, b (log b - log Σ S)
    log_ring = BoxConstraintLoss(terms=["size"], epsilon=0.75, size_less_classes=[[2], []], log_size=True)
    z = log_ring.constraint_values(logits, {"box_ids": ids})["size"][0]
    torch.testing.assert_close(z[0], torch.tensor(9 * math.log(9 / (16 / 3)), dtype=torch.float64))
    # clamped at 0 where the enclosed boxes fill the box: the bound then asks nothing
    covered = ids.clone()
    covered[0, 1, 0:4, 0:4] = 1
    z = ring.constraint_values(logits, {"box_ids": covered})["size"][0]
    assert z[0].item() == pytest.approx(-16 / 3)
    grad_logits = torch.randn(2, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    for loss in (ring, log_ring):
        assert torch.autograd.gradcheck(lambda x, loss=loss: loss(x, {"box_ids": ids}), (grad_logits,))
    with pytest.raises(
        ValueError, match=r"size_less_classes of class 1 may list only other constrained classes of \[1, 2\], got \[1\]"
    ):
        BoxConstraintLoss(terms=["size"], size_less_classes=[[1], []])(logits, {"box_ids": ids})
    with pytest.raises(ValueError, match=r"may list only other constrained classes of \[1, 2\], got \[3\]"):
        BoxConstraintLoss(terms=["size"], size_less_classes=[[], [3]])(logits, {"box_ids": ids})
    with pytest.raises(ValueError, match=r"size_less_classes gives 1 lists \[\[2\]\] for 2 constrained classes"):
        BoxConstraintLoss(terms=["size"], size_less_classes=[[2]])(logits, {"box_ids": ids})
    with pytest.raises(ValueError, match=r"size_less_classes must give, per constrained class, a list.*got \[2, 3\]"):
        BoxConstraintLoss(size_less_classes=[2, 3])
    # the upper bound on the box less the enclosed boxes too, per class: u (16 - 4) = 0.9 · 12 against 16/3;
    # 0.9 · (9 - 1); the class-2 boxes keep their whole box, u = 1
    upper_ring = BoxConstraintLoss(
        terms=["size"], epsilon=0.75, upper=[0.9, 1.0], size_less_classes=[[2], []], size_less_upper=True
    )
    z = upper_ring.constraint_values(logits, {"box_ids": ids})["size"][0]
    expected_upper = [16 / 3 - 0.9 * 12, 4 / 3 - 4, 3.0 - 0.9 * 8, 3.0 - 9]
    torch.testing.assert_close(z, torch.tensor(expected_lower + expected_upper, dtype=torch.float64))
    assert torch.autograd.gradcheck(lambda x: upper_ring(x, {"box_ids": ids}), (grad_logits,))
    with pytest.raises(ValueError, match=r"size_less_upper needs size_less_classes"):
        BoxConstraintLoss(size_less_upper=True)
    with pytest.raises(ValueError, match=r"upper must lie in \[epsilon, 1\] per class, got epsilon \[0.5, 0.8\]"):
        BoxConstraintLoss(epsilon=[0.5, 0.8], upper=[0.9, 0.7])
    with pytest.raises(ValueError, match=r"upper must give one value, or one per class as epsilon \[0.5, 0.8\] does"):
        BoxConstraintLoss(epsilon=[0.5, 0.8], upper=[0.9, 0.9, 1.0])
    with pytest.raises(ValueError, match=r"upper gives 3 values \[0.9, 0.9, 1.0\] for 2 constrained classes"):
        BoxConstraintLoss(upper=[0.9, 0.9, 1.0])(logits, {"box_ids": ids})


def test_inscribed_ellipse_bound_by_hand_in_2d_and_3d():
    ids = torch.zeros(1, 2, 7, 8)
    ids[0, 0, 0:5, 0:5] = 1  # class 1: a 5 x 5 box, centre (2, 2), semi-axes 2.5: its 4 corners lie outside, 21 in
    ids[0, 1, 3:7, 2:8] = 1  # class 2: a 4 x 6 box, centre (4.5, 4.5), semi-axes (2, 3): rows 3 and 6 keep their
    # 4 middle voxels ((±0.75)² + (±0.5)² <= 1), rows 4 and 5 all 6: 20 in
    logits = torch.zeros(1, 3, 7, 8, dtype=torch.float64)  # S = 1/3
    loss = BoxConstraintLoss(terms=["size"], ellipse_epsilon=0.9, mode="penalty")
    z = loss.constraint_values(logits, {"box_ids": ids})["size"][0]
    plain = BoxConstraintLoss(terms=["size"], mode="penalty").constraint_values(logits, {"box_ids": ids})["size"][0]
    torch.testing.assert_close(z[:4], plain)  # the box-size bounds first, as without the ellipse
    torch.testing.assert_close(z[4:], torch.tensor([0.9 * 21 - 21 / 3, 0.9 * 20 - 20 / 3], dtype=torch.float64))
    # per class, ε 0 drops the class; the ellipse of class 1's box counts S_1 + S_2, in log form
    union = BoxConstraintLoss(
        terms=["size"], ellipse_epsilon=[0.9, 0.0], ellipse_classes=[[1, 2], [2]], log_size=True, mode="penalty"
    )
    z = union.constraint_values(logits, {"box_ids": ids})["size"][0]
    assert z.shape == (5,)
    torch.testing.assert_close(z[4], torch.tensor(0.9 * 21 * math.log(0.9 * 21 / (21 * 2 / 3)), dtype=torch.float64))
    grad_logits = torch.randn(1, 3, 7, 8, dtype=torch.float64, requires_grad=True)
    for term in (loss, union):
        assert torch.autograd.gradcheck(lambda x, term=term: term(x, {"box_ids": ids}), (grad_logits,))
    # 3D: a 3 x 3 x 3 box, semi-axes 1.5: the 8 corners ((±1/1.5)² x 3 > 1) lie outside, 19 in
    ids3 = torch.zeros(1, 1, 4, 4, 4)
    ids3[0, 0, 1:4, 0:3, 1:4] = 1
    z = BoxConstraintLoss(terms=["size"], ellipse_epsilon=0.5, mode="penalty").constraint_values(
        torch.zeros(1, 2, 4, 4, 4), {"box_ids": ids3}
    )["size"][0]
    torch.testing.assert_close(z[2:], torch.tensor([0.5 * 19 - 19 / 2]))
    with pytest.raises(
        ValueError, match=r"ellipse_epsilon must lie in \[0, 1\] \(one value or one per class\), got 1.5"
    ):
        BoxConstraintLoss(ellipse_epsilon=1.5)
    with pytest.raises(
        ValueError, match=r"ellipse_classes of class 2 must hold 2 itself and channels below 3, got \[1\]"
    ):
        BoxConstraintLoss(ellipse_epsilon=0.5, ellipse_classes=[[1], [1]])(logits, {"box_ids": ids})
    with pytest.raises(ValueError, match=r"ellipse_epsilon gives 3 values \[0.5, 0.5, 0.5\] for 2 constrained classes"):
        BoxConstraintLoss(ellipse_epsilon=[0.5, 0.5, 0.5])(logits, {"box_ids": ids})


def test_inscribed_ellipse_log_bound_stays_finite_where_the_softmax_underflows():
    ids = torch.zeros(1, 1, 5, 5)
    ids[0, 0, 0:5, 0:5] = 1
    logits = torch.zeros(1, 2, 5, 5)
    logits[0, 0] = 200.0  # float32: S_1 = 0 everywhere; float64 keeps e^-200
    loss = BoxConstraintLoss(terms=["size"], ellipse_epsilon=0.9, log_size=True, mode="log_barrier", t=5.0)
    gradient = assert_float32_matches_float64(loss, logits, {"box_ids": ids}, value_atol=1e-3)
    # the ellipse's 21 voxels get its gradient, the 4 corners only the box-size bound's
    corner, centre = gradient[0, 1, 0, 0], gradient[0, 1, 2, 2]
    assert centre < corner < 0


def test_size_bound_less_the_margin_by_hand():
    ids = torch.zeros(2, 1, 8, 8)
    ids[0, 0, 0:6, 0:4] = 1  # image 0: a 6 x 4 box drawn with margin (1, 1): tight box 4 x 2 = 8 voxels
    ids[1, 0, 2:5, 2:5] = 1  # image 1: a 3 x 3 box drawn with margin (2, 0): no row left, so 1 x 3
    logits = torch.zeros(2, 2, 8, 8)  # S = 1/2: the boxes hold 12 and 4.5
    batch = {"box_ids": ids, "box_margin_voxels": torch.tensor([[1.0, 1.0], [2.0, 0.0]])}
    loss = BoxConstraintLoss(terms=["size"], epsilon=0.5, margin_key="box_margin_voxels", mode="penalty")
    z = loss.constraint_values(logits, batch)["size"][0]
    # lower bounds on 0.5 x 8 and 0.5 x 3 voxels, upper bounds on the whole boxes (24 and 9)
    torch.testing.assert_close(z, torch.tensor([4 - 12.0, 1.5 - 4.5, 12 - 24.0, 4.5 - 9.0]))
    plain = BoxConstraintLoss(terms=["size"], epsilon=0.5, mode="penalty").constraint_values(logits, batch)
    torch.testing.assert_close(plain["size"][0], torch.tensor([12 - 12.0, 4.5 - 4.5, 12 - 24.0, 4.5 - 9.0]))
    logits.requires_grad_(True)
    wanting = {**batch, "box_margin_voxels": torch.tensor([[0.0, 0.0], [0.0, 0.0]])}
    BoxConstraintLoss(terms=["size"], epsilon=0.9, margin_key="box_margin_voxels")(logits, wanting).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"'box_margin_voxels' must have shape \(2, 2\) \(B, N_s\).*got \(2, 1\)"):
        loss(logits, {**batch, "box_margin_voxels": torch.zeros(2, 1)})
    with pytest.raises(ValueError, match=r"'box_margin_voxels' must hold finite margins >= 0"):
        loss(logits, {**batch, "box_margin_voxels": torch.tensor([[1.0, float("nan")], [0.0, 0.0]])})
    with pytest.raises(KeyError, match=r"needs the batch key 'box_margin_voxels'"):
        loss(logits, {"box_ids": ids})


def test_3d_loss_counts_slabs_along_every_axis_and_reduces_per_image():
    ids = torch.zeros(2, 1, 4, 4, 3)
    ids[0, 0, 0:2, 0:3, 0:3] = 1
    logits = torch.zeros(2, 2, 4, 4, 3, requires_grad=True)
    loss = BoxConstraintLoss(terms=["tightness"], width=2, mode="penalty", reduction="none")
    z, image = loss.constraint_values(logits, {"box_ids": ids})["tightness"]
    # S = 0.5. axis 0: one slab of 2 x 3 x 3 = 18 voxels (target 2); axes 1 and 2: slabs 2 and 1 thick (12, 6 voxels)
    torch.testing.assert_close(z, torch.tensor([2 - 9.0, 2 - 6.0, 1 - 3.0, 2 - 6.0, 1 - 3.0]))
    assert image.tolist() == [0] * 5
    out = loss(logits, {"box_ids": ids})
    assert out.shape == (2,) and (out == 0).all()  # all satisfied; the image without box has no tightness term
    BoxConstraintLoss(width=2)(logits, {"box_ids": ids}).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad[1].abs().sum() > 0  # emptiness acts on image 1


def test_loss_stays_finite_at_huge_t_and_checks_its_inputs():
    logits = _logits_with_foreground(0.01)
    loss = BoxConstraintLoss(t=1e9)
    value = loss(logits, {"box_ids": _ids_2d()})
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(logits.grad).all()
    with pytest.raises(
        ValueError, match=r"'box_ids' must have shape \(1, 1, 6, 6\) \(B, C', \*spatial\), got \(1, 2, 6, 6\)"
    ):
        loss(logits, {"box_ids": torch.zeros(1, 2, 6, 6)})
    with pytest.raises(KeyError, match="needs the batch key 'box_ids'"):
        loss(logits, {})
    with pytest.raises(ValueError, match=r"terms must be a non-empty subset of \('tightness', 'emptiness', 'size'\)"):
        BoxConstraintLoss(terms=["box"])
    with pytest.raises(ValueError, match=r"mode must be one of \('log_barrier', 'penalty'\), got 'lagrangian'"):
        BoxConstraintLoss(mode="lagrangian")


def test_dense_crf_proposals_stay_inside_the_boxes_and_follow_the_edges():
    from wss_monai.solvers import DenseCRFProblem, SolverPool, dense_crf_labels

    rng = np.random.default_rng(0)
    image = np.zeros((1, 12, 12), np.float32)
    image[0, 3:9, 3:9] = 1.0  # a bright object
    foreground = np.full((12, 12), 0.6, np.float32)  # the network: foreground everywhere, surer on the object
    foreground[3:9, 3:9] = 0.9
    allowed = np.ones((2, 12, 12), bool)
    allowed[1] = False
    allowed[1, 2:10, 2:10] = True  # the box, one pixel of dark margin around the object
    noisy = image + rng.normal(0, 0.05, image.shape).astype(np.float32)
    problem = DenseCRFProblem("case 0 slice 0", np.stack([1 - foreground, foreground]), noisy, allowed)
    labels = dense_crf_labels(problem, sigma_xy=5.0, sigma_intensity=0.3)
    np.testing.assert_array_equal(labels, image[0].astype(np.int64))  # outside the box: forbidden; the dark rim: cut
    with SolverPool(dense_crf_labels, workers=0, sigma_xy=5.0, sigma_intensity=0.3) as pool:
        np.testing.assert_array_equal(pool.solve([problem])[0], labels)


@pytest.mark.parametrize("mode", ["penalty", "log_barrier"])
def test_term_weights_scale_each_familys_cost(mode):
    ids = torch.zeros(2, 1, 12, 12)
    ids[0, 0, 2:7, 3:9] = 1
    ids[1, 0, 5:11, 1:5] = 1
    logits = torch.randn(2, 2, 12, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    batch = {"box_ids": ids}
    alone = {
        term: BoxConstraintLoss(terms=[term], mode=mode, reduction="none")(logits, batch)
        for term in ("tightness", "emptiness", "size")
    }
    weights = {"emptiness": 0.01, "size": 3}
    weighted = BoxConstraintLoss(mode=mode, reduction="none", term_weights=weights)(logits, batch)
    expected = alone["tightness"] + 0.01 * alone["emptiness"] + 3 * alone["size"]
    assert alone["emptiness"].min() > 0 and torch.allclose(weighted, expected)
    plain = BoxConstraintLoss(mode=mode, reduction="none")(logits, batch)
    assert torch.allclose(plain, sum(alone.values()))
    with pytest.raises(ValueError, match=r"term_weights must map families of .* got \{'empty': 0.1\}"):
        BoxConstraintLoss(term_weights={"empty": 0.1})
    with pytest.raises(ValueError, match=r"term_weights must map families .* got \{'size': -1\}"):
        BoxConstraintLoss(term_weights={"size": -1})
