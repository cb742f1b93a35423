import math

import pytest
import torch

from wss_monai.losses import PartialCrossEntropyLoss


def _logits_with_probs(p1: float, shape=(1, 2, 2)):
    """2-class logits where class 1 has probability p1 everywhere."""
    logit = math.log(p1 / (1 - p1))
    out = torch.zeros(shape[0], 2, *shape[1:], dtype=torch.float64)
    out[:, 1] = logit
    return out


def test_hand_computed_value():
    logits = _logits_with_probs(0.75)
    scribble = torch.tensor([[[[1, 0], [-1, -1]]]])
    loss = PartialCrossEntropyLoss()(logits, {"scribble": scribble})
    expected = -(math.log(0.75) + math.log(0.25)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_unlabelled_voxels_do_not_count():
    logits = torch.randn(2, 3, 5, 5)
    scribble = torch.full((2, 1, 5, 5), -1)
    scribble[0, 0, 1, 1] = 2
    reference = torch.nn.functional.cross_entropy(logits[0:1, :, 1, 1], torch.tensor([2]))
    changed = logits.clone()
    changed[:, :, 3:, 3:] += 100.0  # unlabelled region: must not matter
    for x in (logits, changed):
        assert PartialCrossEntropyLoss()(x, {"scribble": scribble}).item() == pytest.approx(reference.item(), rel=1e-5)


def test_no_labelled_voxel_gives_zero_and_finite_gradient():
    logits = torch.randn(2, 4, 6, 6, requires_grad=True)
    loss = PartialCrossEntropyLoss()(logits, {"scribble": torch.full((2, 1, 6, 6), -1)})
    loss.backward()
    assert loss.item() == 0.0
    assert torch.isfinite(logits.grad).all()


def test_reduction_none_normalises_each_image():
    logits = _logits_with_probs(0.75, shape=(2, 2, 2))
    scribble = torch.tensor([[[[1, 1], [-1, -1]]], [[[0, -1], [-1, -1]]]])
    per_image = PartialCrossEntropyLoss(reduction="none")(logits, {"scribble": scribble})
    assert per_image.shape == (2,)
    assert per_image.tolist() == pytest.approx([-math.log(0.75), -math.log(0.25)])


def test_3d_and_gradcheck():
    logits = torch.randn(1, 3, 3, 3, 2, dtype=torch.float64, requires_grad=True)
    scribble = torch.randint(-1, 3, (1, 1, 3, 3, 2))
    scribble[0, 0, 0, 0, 0] = 1
    loss = PartialCrossEntropyLoss()
    assert torch.autograd.gradcheck(lambda x: loss(x, {"scribble": scribble}), (logits,))


def test_missing_key_and_bad_values_raise():
    logits = torch.zeros(1, 2, 2, 2)
    with pytest.raises(KeyError, match="needs the batch key 'scribble'.*keys present: \\['label'\\]"):
        PartialCrossEntropyLoss()(logits, {"label": torch.zeros(1, 1, 2, 2)})
    with pytest.raises(ValueError, match=r"values \[5\] outside the classes \[0, 1\]"):
        PartialCrossEntropyLoss()(logits, {"scribble": torch.tensor([[[[5, -1], [0, 1]]]])})
    with pytest.raises(ValueError, match="does not match logits"):
        PartialCrossEntropyLoss()(logits, {"scribble": torch.zeros(1, 1, 3, 3)})
    with pytest.raises(ValueError, match="reduction must be one of"):
        PartialCrossEntropyLoss(reduction="avg")
