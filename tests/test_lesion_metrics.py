import math

import numpy as np
import pytest
import torch

from wss_monai.metrics.lesion import lesion_metrics


def _three_lesions():
    """GT with three 2x2x2 lesions; the prediction hits two of them and adds one false component."""
    label = np.zeros((12, 12, 6), np.uint8)
    label[1:3, 1:3, 1:3] = 1  # lesion A: predicted exactly
    label[6:8, 6:8, 1:3] = 1  # lesion B: one voxel predicted
    label[1:3, 8:10, 3:5] = 1  # lesion C: missed
    pred = np.zeros_like(label)
    pred[1:3, 1:3, 1:3] = 1
    pred[7, 7, 2] = 1
    pred[10:12, 0:2, 4:6] = 1  # false positive component, 8 voxels
    return pred, label


def test_hand_built_volume_counts_and_values():
    pred, label = _three_lesions()
    m = lesion_metrics(pred, label, spacing=(1, 1, 1))
    assert (m["n_gt_lesions"], m["n_pred_lesions"], m["n_detected"], m["n_true_positive"]) == (3, 3, 2, 2)
    assert m["recall"] == pytest.approx(2 / 3) and m["precision"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["dice"] == pytest.approx(2 * 9 / (17 + 24))
    assert m["volume_gt"] == 24.0 and m["volume_pred"] == 17.0
    assert m["avd"] == pytest.approx(100 * 7 / 24)
    assert m["hd95"] > 0


def test_one_component_covering_two_lesions_and_partial_overlap():
    label = np.zeros((10, 10), int)
    label[2, 2] = label[2, 6] = 1
    pred = np.zeros_like(label)
    pred[2, 1:8] = 1  # one component spanning both lesions
    m = lesion_metrics(pred, label, spacing=(1, 1))
    assert (m["n_gt_lesions"], m["n_pred_lesions"], m["n_detected"], m["n_true_positive"]) == (2, 1, 2, 1)
    assert m["recall"] == 1.0 and m["precision"] == 1.0 and m["f1"] == 1.0


def test_connectivity():
    label = np.zeros((5, 5, 3), int)
    label[1, 1, 1] = label[2, 2, 1] = 1  # diagonal neighbours in-plane
    label[3, 3, 2] = 1  # corner neighbour of (2, 2, 1)
    assert lesion_metrics(label, label, spacing=(1, 1, 1))["n_gt_lesions"] == 1  # full (26) by default, as WMH
    assert lesion_metrics(label, label, spacing=(1, 1, 1), connectivity=2)["n_gt_lesions"] == 2
    assert lesion_metrics(label, label, spacing=(1, 1, 1), connectivity=1)["n_gt_lesions"] == 3
    assert lesion_metrics(label[..., 1], label[..., 1], spacing=(1, 1), connectivity=1)["n_gt_lesions"] == 2


def test_ignore_mask_is_excluded_from_everything():
    pred, label = _three_lesions()
    ignore = np.zeros_like(label)
    ignore[10:12, 0:2, 4:6] = 1  # covers the false positive
    ignore[1:3, 8:10, 3:5] = 1  # covers the missed lesion C
    m = lesion_metrics(pred, label, spacing=(1, 1, 1), ignore_mask=ignore)
    assert (m["n_gt_lesions"], m["n_pred_lesions"], m["n_detected"], m["n_true_positive"]) == (2, 2, 2, 2)
    assert m["recall"] == 1.0 and m["precision"] == 1.0 and m["f1"] == 1.0
    assert m["volume_gt"] == 16.0 and m["volume_pred"] == 9.0
    assert m["dice"] == pytest.approx(2 * 9 / (9 + 16))
    assert m["avd"] == pytest.approx(100 * 7 / 16)
    # ignoring a slab through a lesion splits it into two
    label2 = np.zeros((9, 3), int)
    label2[1:8, 1] = 1
    cut = np.zeros_like(label2)
    cut[4] = 1
    assert lesion_metrics(label2, label2, spacing=(1, 1), ignore_mask=cut)["n_gt_lesions"] == 2


def test_spacing_scales_volumes_and_hd95_not_avd():
    label = np.zeros((10, 10, 10), int)
    label[3:7, 3:7, 3:7] = 1
    shifted = np.roll(label, 1, axis=0)
    iso = lesion_metrics(shifted, label, spacing=(1, 1, 1))
    aniso = lesion_metrics(shifted, label, spacing=(2.0, 1.0, 1.0))
    assert iso["hd95"] == pytest.approx(1.0) and aniso["hd95"] == pytest.approx(2.0)
    assert aniso["volume_gt"] == 2 * iso["volume_gt"] == 128.0
    assert iso["avd"] == aniso["avd"] == 0.0 and iso["dice"] == pytest.approx(0.75)
    assert lesion_metrics(shifted, label, spacing=(1.0, 3.0, 1.0))["hd95"] == pytest.approx(1.0)


def test_empty_cases():
    empty = np.zeros((4, 5, 6), int)
    lesion = empty.copy()
    lesion[1:3, 1:3, 1:3] = 1
    diagonal = math.sqrt(4**2 + 5**2 + 6**2)
    both = lesion_metrics(empty, empty, spacing=(1, 1, 1))
    assert (both["dice"], both["avd"], both["recall"], both["precision"], both["f1"]) == (1.0, 0.0, 1.0, 1.0, 1.0)
    assert math.isnan(both["hd95"])
    gt_empty = lesion_metrics(lesion, empty, spacing=(1, 1, 1))
    assert (gt_empty["dice"], gt_empty["recall"], gt_empty["precision"], gt_empty["f1"]) == (0.0, 1.0, 0.0, 0.0)
    assert math.isnan(gt_empty["avd"]) and gt_empty["hd95"] == pytest.approx(diagonal)
    pred_empty = lesion_metrics(empty, lesion, spacing=(1, 1, 1))
    assert (pred_empty["dice"], pred_empty["avd"], pred_empty["recall"], pred_empty["precision"]) == (0, 100, 0, 1)
    assert pred_empty["f1"] == 0.0 and pred_empty["hd95"] == pytest.approx(diagonal)


def test_input_forms_and_no_mutation():
    pred, label = _three_lesions()
    before = pred.copy(), label.copy()
    reference = lesion_metrics(pred, label, spacing=(1, 1, 1))
    assert (
        lesion_metrics(torch.as_tensor(pred)[None], torch.as_tensor(label.astype(bool))[None], (1, 1, 1)) == reference
    )
    np.testing.assert_array_equal(pred, before[0])
    np.testing.assert_array_equal(label, before[1])
    two_d = lesion_metrics(pred[..., 1], label[..., 1], spacing=(0.5, 0.5))
    assert two_d["n_gt_lesions"] == 2 and two_d["volume_gt"] == 8 * 0.25


def test_bad_inputs_raise():
    ok = np.zeros((4, 4, 4), int)
    with pytest.raises(
        ValueError, match=r"label must be binary \(0 or 1\), got values \[2\]; pass WMH's label 2 as ignore"
    ):
        lesion_metrics(ok, np.full((4, 4, 4), 2), spacing=(1, 1, 1))
    with pytest.raises(ValueError, match=r"pred must be binary \(0 or 1\), got values \[0.5\]"):
        lesion_metrics(np.full((4, 4, 4), 0.5), ok, spacing=(1, 1, 1))
    with pytest.raises(ValueError, match=r"pred \(4, 4, 4\) and label \(4, 4, 5\) differ in shape"):
        lesion_metrics(ok, np.zeros((4, 4, 5), int), spacing=(1, 1, 1))
    with pytest.raises(ValueError, match=r"ignore_mask \(4, 4, 3\) and label \(4, 4, 4\) differ in shape"):
        lesion_metrics(ok, ok, spacing=(1, 1, 1), ignore_mask=np.zeros((4, 4, 3), int))
    with pytest.raises(
        ValueError, match=r"label must have shape \(H, W, D\) or \(1, ...\) to match the 3 spacing values"
    ):
        lesion_metrics(ok, np.zeros((2, 4, 4, 4), int), spacing=(1, 1, 1))
    with pytest.raises(ValueError, match=r"spacing must be 2 or 3 finite positive numbers \(mm\), got \(1, 0, 1\)"):
        lesion_metrics(ok, ok, spacing=(1, 0, 1))
    with pytest.raises(ValueError, match=r"connectivity must be an integer in \[1, 3\] or None, got 4"):
        lesion_metrics(ok, ok, spacing=(1, 1, 1), connectivity=4)
    with pytest.raises(ValueError, match="pred must be a numpy array or a torch tensor, got list"):
        lesion_metrics([[0]], ok, spacing=(1, 1, 1))


def test_docstring_examples_run():
    import doctest

    import wss_monai.metrics.lesion as module

    assert doctest.testmod(module).failed == 0
