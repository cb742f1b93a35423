import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wss_monai.losses.boundary import BoundaryLoss
from wss_monai.losses.composite import CompositeLoss
from wss_monai.transforms.distance import SignedDistanceMap


def _onehot_logits(label: np.ndarray, num_classes: int, scale: float = 40.0) -> torch.Tensor:
    """Logits whose softmax is (numerically) the one-hot of ``label`` ``(H, W[, D])``: ``(1, C, H, W[, D])``."""
    onehot = F.one_hot(torch.as_tensor(label).long(), num_classes).movedim(-1, 0)[None]
    return scale * onehot.double()


def _dist(label: np.ndarray, num_classes: int, **kwargs) -> torch.Tensor:
    return torch.as_tensor(SignedDistanceMap(num_classes, **kwargs)(label[None]))[None]


def test_hand_value_two_classes():
    logits = torch.zeros(1, 2, 1, 4)
    logits[0, 1, 0, 0] = np.log(3.0)  # S_1 = 0.75 at the first voxel, 0.5 elsewhere
    dist = torch.tensor([[[[1.0, -1.0, -1.0, 3.0]]]])
    expected = (0.75 * 1 - 0.5 - 0.5 + 0.5 * 3) / 4
    assert BoundaryLoss()(logits, {"dist_map": dist}).item() == pytest.approx(expected)


def test_hand_value_selected_classes_with_full_and_foreground_maps():
    logits = torch.zeros(2, 3, 2, 2)  # S_k = 1/3 everywhere
    fg = torch.stack([torch.full((2, 2), 1.0), torch.full((2, 2), -2.0)])[None].expand(2, -1, -1, -1)
    everything = torch.cat([torch.full((2, 1, 2, 2), 6.0), fg], dim=1)
    batch_fg, batch_all = {"dist_map": fg}, {"dist_map": everything}
    assert BoundaryLoss()(logits, batch_fg).item() == pytest.approx((1 - 2) / 3)
    assert BoundaryLoss()(logits, batch_all).item() == pytest.approx((1 - 2) / 3)  # default: foreground
    assert BoundaryLoss(classes=[2])(logits, batch_fg).item() == pytest.approx(-2 / 3)
    assert BoundaryLoss(classes=[0, 1])(logits, batch_all).item() == pytest.approx((6 + 1) / 3)


def test_reductions():
    logits = torch.zeros(2, 2, 1, 2)
    dist = torch.tensor([[[[2.0, 2.0]]], [[[-4.0, 0.0]]]])
    none = BoundaryLoss(reduction="none")(logits, {"dist_map": dist})
    assert none.shape == (2,) and none.tolist() == pytest.approx([1.0, -1.0])
    assert BoundaryLoss(reduction="sum")(logits, {"dist_map": dist}).item() == pytest.approx(0.0)
    assert BoundaryLoss()(logits, {"dist_map": dist}).item() == pytest.approx(0.0)


def test_gradcheck_2d_and_3d():
    torch.manual_seed(0)
    for shape in [(2, 3, 3, 4), (1, 3, 2, 3, 2)]:
        logits = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
        dist = torch.randn(shape[0], shape[1] - 1, *shape[2:], dtype=torch.float64)
        loss = BoundaryLoss()
        assert torch.autograd.gradcheck(lambda x, d=dist, f=loss: f(x, {"dist_map": d}), (logits,))


def _small_label() -> np.ndarray:
    label = np.zeros((9, 10), int)
    label[2:6, 3:8] = 1
    label[3, 2] = 1
    label[6:8, 1:3] = 2
    return label


def test_minimum_at_the_ground_truth_2d():
    label = _small_label()
    dist = _dist(label, 3, spacing=(1.0, 0.7))
    loss = BoundaryLoss()
    gt_value = loss(_onehot_logits(label, 3), {"dist_map": dist}).item()
    fg = label > 0
    candidates = {
        "empty": np.zeros_like(label),
        "full class 1": np.ones_like(label),
        "full class 2": np.full_like(label, 2),
        "shifted": np.roll(label, 1, axis=1),
        "dilated": np.where((np.roll(fg, 1, 0) | fg) & (label == 0), 1, label),
        "eroded": np.where(fg & ~np.roll(fg, 1, 0), 0, label),
        "classes swapped": np.where(label == 1, 2, np.where(label == 2, 1, 0)),
    }
    for flip in [(3, 2), (2, 3), (0, 0), (4, 5), (7, 1)]:  # one voxel changed, inside, edge and outside
        changed = label.copy()
        changed[flip] = 0 if label[flip] else 1
        candidates[f"flip {flip}"] = changed
    for name, pred in candidates.items():
        value = loss(_onehot_logits(pred, 3), {"dist_map": dist}).item()
        assert value > gt_value + 1e-6, name  # one flipped voxel costs |φ| / |Ω| >= 0.7 / 90
    rng = torch.Generator().manual_seed(0)
    for _ in range(20):
        soft = torch.randn(1, 3, *label.shape, generator=rng, dtype=torch.float64) * 3
        assert loss(soft, {"dist_map": dist}).item() > gt_value
    # gradient descent from random logits goes down towards the ground truth value, never below
    logits = torch.zeros(1, 3, *label.shape, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([logits], lr=50.0)
    for _ in range(50):
        opt.zero_grad()
        value = loss(logits, {"dist_map": dist})
        value.backward()
        opt.step()
    assert gt_value - 1e-9 <= value.item() < gt_value + 0.1
    assert (logits.argmax(1)[0].numpy() == label).all()


def test_minimum_at_the_ground_truth_3d_volume_map():
    label = np.zeros((6, 6, 4), int)
    label[1:4, 2:5, 1:3] = 1
    dist = _dist(label, 2, spatial_dims=3, spacing=(1.0, 1.0, 2.5))
    loss = BoundaryLoss()
    gt_value = loss(_onehot_logits(label, 2), {"dist_map": dist}).item()
    assert gt_value < 0
    for pred in [np.zeros_like(label), np.ones_like(label), np.roll(label, 1, axis=2), np.roll(label, 1, axis=0)]:
        assert loss(_onehot_logits(pred, 2), {"dist_map": dist}).item() > gt_value


def test_works_in_a_composite_loss_with_half_logits():
    label = _small_label()
    dist = _dist(label, 3).float()
    batch = {"dist_map": dist}
    composite = CompositeLoss({"boundary": {"loss": BoundaryLoss(), "weight": 0.5}})
    logits = torch.randn(1, 3, *label.shape)
    out = composite(logits.half(), batch)
    assert out["boundary"].dtype == torch.float32
    assert out["loss"].item() == pytest.approx(0.5 * BoundaryLoss()(logits.half().float(), batch).item(), rel=1e-5)


def test_inputs_not_mutated():
    logits = torch.randn(1, 2, 3, 3)
    dist = torch.randn(1, 1, 3, 3)
    before = logits.clone(), dist.clone()
    BoundaryLoss()(logits, {"dist_map": dist})
    assert torch.equal(logits, before[0]) and torch.equal(dist, before[1])


def test_bad_inputs_raise():
    loss = BoundaryLoss()
    logits = torch.zeros(2, 3, 4, 4)
    with pytest.raises(KeyError, match="needs the batch key 'dist_map'"):
        loss(logits, {"label": torch.zeros(2, 1, 4, 4)})
    with pytest.raises(ValueError, match=r"'dist_map' of shape \(2, 2, 4, 5\) does not match logits \(2, 3, 4, 4\)"):
        loss(logits, {"dist_map": torch.zeros(2, 2, 4, 5)})
    with pytest.raises(ValueError, match=r"does not match logits"):
        loss(logits, {"dist_map": torch.zeros(1, 2, 4, 4)})
    with pytest.raises(
        ValueError, match=r"must have C = 3 \(all classes\) or C - 1 = 2 \(foreground\) channels, got 1"
    ):
        loss(logits, {"dist_map": torch.zeros(2, 1, 4, 4)})
    with pytest.raises(ValueError, match="class 0 is selected but 'dist_map' holds the foreground classes only"):
        BoundaryLoss(classes=[0, 1])(logits, {"dist_map": torch.zeros(2, 2, 4, 4)})
    with pytest.raises(ValueError, match=r"classes \[3\] out of range for a 3-class output"):
        BoundaryLoss(classes=[3])(logits, {"dist_map": torch.zeros(2, 3, 4, 4)})
    with pytest.raises(ValueError, match="'dist_map' contains NaN or inf values"):
        loss(logits, {"dist_map": torch.full((2, 2, 4, 4), float("nan"))})
    with pytest.raises(ValueError, match=r"logits must have shape \(B, C, H, W\[, D\]\)"):
        loss(torch.zeros(3, 4, 4), {"dist_map": torch.zeros(3, 4, 4)})
    with pytest.raises(ValueError, match=r"classes must be None or a non-empty list of class indices >= 0, got \[-1\]"):
        BoundaryLoss(classes=[-1])
    with pytest.raises(ValueError, match=r"classes must not repeat a class, got \[1, 1\]"):
        BoundaryLoss(classes=[1, 1])
    with pytest.raises(ValueError, match="reduction must be one of"):
        BoundaryLoss(reduction="max")


def test_metatensor_dist_map_gives_a_plain_tensor():
    from monai.data import MetaTensor

    loss = BoundaryLoss()(torch.zeros(1, 2, 2, 2), {"dist_map": MetaTensor(torch.ones(1, 1, 2, 2))})
    assert type(loss) is torch.Tensor and loss.item() == pytest.approx(0.5)


def test_docstring_examples_run():
    import doctest

    import wss_monai.losses.boundary as module

    assert doctest.testmod(module).failed == 0


def test_reference_convention_lets_an_eroded_prediction_tie_with_the_ground_truth():
    label = np.array([[0, 1, 1, 1, 0, 0]])  # (H=1, W=6)
    eroded = np.array([[0, 0, 1, 0, 0, 0]])
    for convention, tie in (("faces", False), ("reference", True)):
        dist = {"dist_map": _dist(label, 2, convention=convention).double()}
        at_truth = BoundaryLoss()(_onehot_logits(label, 2), dist).item()
        at_eroded = BoundaryLoss()(_onehot_logits(eroded, 2), dist).item()
        # faces: (-1 - 2 - 1) / 6 at the truth, -2 / 6 eroded; reference: -1 / 6 for both
        assert at_truth == pytest.approx(-1 / 6 if tie else -4 / 6, abs=1e-9)
        assert (at_eroded == pytest.approx(at_truth, abs=1e-9)) is tie
