"""Boundary accuracy and Dice in trimaps against hand-computed values."""

import math

import numpy as np
import pytest
import torch

from wss_monai.metrics import boundary_pixels, trimap_bands, trimap_metrics


def square():
    label = np.zeros((4, 4), dtype=int)
    label[1:3, 1:3] = 1
    return label


def test_boundary_pixels_are_both_sides_of_every_edge_not_the_border():
    # the 2 x 2 square and its 8 outer 4-neighbours; the corners of the image touch no boundary
    expected = np.array([[0, 1, 1, 0], [1, 1, 1, 1], [1, 1, 1, 1], [0, 1, 1, 0]], dtype=bool)
    np.testing.assert_array_equal(boundary_pixels(square()), expected)
    assert not boundary_pixels(np.ones((3, 3), dtype=int)).any()


def test_band_widths_by_hand():
    bands = trimap_bands(square(), (2, 4))
    assert bands[2].sum() == 12  # the boundary pixels
    assert bands[4].all()  # corners are 1 px from a boundary pixel: within (4 - 1) / 2
    line = np.zeros((1, 16), dtype=int)
    line[0, 8:] = 1  # a straight boundary between columns 7 and 8: bands exactly w wide, w / 2 per side
    for w, band in trimap_bands(line, (2, 4, 8, 16)).items():
        assert np.flatnonzero(band[0]).tolist() == list(range(8 - w // 2, 8 + w // 2))


def test_metrics_by_hand_on_a_tiny_image():
    pred = np.zeros((4, 4), dtype=int)  # predicts background everywhere
    metrics = trimap_metrics(pred, square(), ["bg", "fg"], widths=(2, 4))
    # width 2: 12 pixels, the 8 outer ones right; the 4 square pixels missed -> Dice 0
    assert metrics == pytest.approx(
        {"trimap_acc_w2": 8 / 12, "trimap_dice_fg_w2": 0.0, "trimap_acc_w4": 12 / 16, "trimap_dice_fg_w4": 0.0}
    )
    pred[1:3, 1:2] = 1  # half of the square
    metrics = trimap_metrics(torch.as_tensor(pred), torch.as_tensor(square()), ["bg", "fg"], widths=(2,))
    assert metrics == pytest.approx({"trimap_acc_w2": 10 / 12, "trimap_dice_fg_w2": 2 * 2 / (2 + 4)})


def test_per_slice_classes_mean_ignore_and_empty_bands():
    label = np.zeros((4, 4, 2), dtype=int)
    label[..., 0] = square()
    label[2:, :, 0] += square()[2:, :] * 1  # class 2 in the lower half of the square
    pred = label.copy()
    pred[1, 1, 0] = 0
    metrics = trimap_metrics(pred[None], label[None], ["bg", "a", "b"], widths=(2,))
    band = trimap_bands(label, (2,))[2]
    assert not band[..., 1].any()  # the empty slice has no band: no distance across slices
    assert metrics["trimap_acc_w2"] == pytest.approx(1 - 1 / band.sum())
    assert metrics["trimap_dice_a_w2"] == pytest.approx(2 * 1 / (1 + 2))
    assert metrics["trimap_dice_b_w2"] == 1.0
    assert metrics["trimap_dice_w2"] == pytest.approx((2 / 3 + 1) / 2)
    ignored = trimap_metrics(pred, label, ["bg", "a", "b"], widths=(2,), ignore_mask=pred != label)
    assert ignored["trimap_acc_w2"] == 1.0
    empty = trimap_metrics(np.zeros((3, 3), int), np.zeros((3, 3), int), ["bg", "fg"], widths=(2,))
    assert math.isnan(empty["trimap_acc_w2"]) and math.isnan(empty["trimap_dice_fg_w2"])


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match=r"widths must be integers >= 1, got \[0\]"):
        trimap_bands(square(), (0,))
    with pytest.raises(ValueError, match=r"prediction \(4, 3\) and label \(4, 4\) differ"):
        trimap_metrics(np.zeros((4, 3), int), square(), ["bg", "fg"])
