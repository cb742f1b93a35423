import math

import pytest
import torch

from wss_monai.losses import InequalityConstraintLoss, log_barrier_extension, quadratic_penalty


def test_log_barrier_hand_values_and_continuity():
    t = 5.0
    z = torch.tensor([-4.0, 2.0], dtype=torch.float64)
    expected = [-math.log(4.0) / t, t * 2.0 - math.log(1 / t**2) / t + 1 / t]
    assert log_barrier_extension(z, t).tolist() == pytest.approx(expected)
    # continuous and differentiable at the switch point -1/t^2
    edge = torch.tensor([-1 / t**2 - 1e-9, -1 / t**2 + 1e-9], dtype=torch.float64, requires_grad=True)
    values = log_barrier_extension(edge, t)
    assert values[0].item() == pytest.approx(values[1].item(), abs=1e-6)
    values.sum().backward()
    assert edge.grad.tolist() == pytest.approx([t, t], rel=1e-4)


@pytest.mark.parametrize("t", [1.0, 5.0, 1e3, 1e9])
def test_log_barrier_finite_with_finite_gradients(t):
    z = torch.tensor([-1e6, -1.0, -1e-20, 0.0, 1e-20, 1.0, 1e6], requires_grad=True)
    out = log_barrier_extension(z, t)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(z.grad).all()
    assert (z.grad > 0).all()  # increasing everywhere: pushes z down


def test_log_barrier_half_input_returns_float32():
    out = log_barrier_extension(torch.tensor([-2.0, 3.0], dtype=torch.float16), 1e9)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_log_barrier_rejects_bad_t():
    with pytest.raises(ValueError, match="t must be a finite positive number, got 0"):
        log_barrier_extension(torch.zeros(1), 0)


def test_quadratic_penalty():
    assert quadratic_penalty(torch.tensor([-3.0, 0.0, 2.0])).tolist() == [0.0, 0.0, 4.0]


def _uniform_batch(num_images=1, classes=2, size=4):
    return torch.zeros(num_images, classes, size, size)  # soft size of each class: size*size/classes


def test_penalty_hand_value():
    bounds = torch.tensor([[[0.0, 16.0], [10.0, 12.0]]])  # class 1 soft size 8 < 10
    loss = InequalityConstraintLoss(mode="penalty")(_uniform_batch(), {"bounds": bounds})
    assert loss.item() == pytest.approx(4.0)
    normalised = InequalityConstraintLoss(mode="penalty", normalize=True)(_uniform_batch(), {"bounds": bounds})
    assert normalised.item() == pytest.approx(4.0 / 16)


def test_log_barrier_hand_value():
    bounds = torch.tensor([[[0.0, 16.0], [10.0, 12.0]]])
    t = 5.0
    expected = (t * 2 - math.log(1 / t**2) / t + 1 / t) + (-math.log(4.0) / t)
    loss = InequalityConstraintLoss(mode="log_barrier", t=t)(_uniform_batch(), {"bounds": bounds})
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_absent_class_is_an_equality_and_satisfied_bounds_cost_nothing():
    logits = torch.zeros(1, 2, 4, 4)
    logits[:, 0] = 20.0  # class 1 nearly empty
    loss = InequalityConstraintLoss(mode="penalty")(logits, {"bounds": torch.tensor([[[0.0, 16.0], [0.0, 0.0]]])})
    assert loss.item() == pytest.approx(0.0, abs=1e-10)
    satisfied = InequalityConstraintLoss(mode="penalty")(
        _uniform_batch(), {"bounds": torch.tensor([[[0.0, 16.0], [5.0, 9.0]]])}
    )
    assert satisfied.item() == 0.0


def test_gradient_pushes_the_size_towards_the_bounds():
    logits = torch.zeros(1, 2, 4, 4, requires_grad=True)
    InequalityConstraintLoss(mode="log_barrier")(
        logits, {"bounds": torch.tensor([[[0.0, 16.0], [12.0, 14.0]]])}
    ).backward()
    # class 1 too small: gradient descent must raise its logits
    assert (logits.grad[:, 1] < 0).all() and (logits.grad[:, 0] > 0).all()


@pytest.mark.parametrize("mode", ["penalty", "log_barrier"])
def test_gradcheck_2d_and_3d(mode):
    for shape in ((2, 3, 3, 3), (1, 3, 3, 3, 2)):
        logits = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
        num = shape[0]
        bounds = torch.tensor([[0.0, 100.0], [2.0, 3.0], [0.0, 0.5]], dtype=torch.float64).expand(num, 3, 2)
        loss = InequalityConstraintLoss(mode=mode, t=3.0)
        assert torch.autograd.gradcheck(lambda x, loss=loss, bounds=bounds: loss(x, {"bounds": bounds}), (logits,))


def test_volume_mode_sums_the_slices_of_each_volume():
    logits = _uniform_batch(num_images=3)  # 8 voxels of class 1 per slice
    bounds = torch.tensor([[0.0, 32.0], [20.0, 30.0]]).expand(3, 2, 2).clone()
    bounds[2, 1] = torch.tensor([10.0, 12.0])
    batch = {"bounds": bounds, "volume_index": torch.tensor([7, 7, 3])}
    per_volume = InequalityConstraintLoss(mode="penalty", per="volume", reduction="none")(logits, batch)
    # volume 3 (one slice, size 8 < 10) then volume 7 (two slices, size 16 < 20), in index order
    assert per_volume.tolist() == pytest.approx([4.0, 16.0])
    per_image = InequalityConstraintLoss(mode="penalty", reduction="none")(logits, batch)
    assert per_image.tolist() == pytest.approx([144.0, 144.0, 4.0])


def test_volume_mode_rejects_inconsistent_bounds():
    bounds = torch.tensor([[[0.0, 32.0], [20.0, 30.0]], [[0.0, 32.0], [1.0, 30.0]]])
    with pytest.raises(ValueError, match="slices of one volume"):
        InequalityConstraintLoss(per="volume")(
            _uniform_batch(2), {"bounds": bounds, "volume_index": torch.tensor([0, 0])}
        )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_many_constraints_at_extreme_t(dtype):
    torch.manual_seed(0)
    logits = (torch.randn(256, 4, 16, 16) * 10).to(dtype).requires_grad_()
    lower = torch.rand(256, 4) * 100
    bounds = torch.stack([lower, lower + torch.rand(256, 4) * 100], -1)
    loss = InequalityConstraintLoss(mode="log_barrier", t=1e9, classes=[0, 1, 2, 3])
    items = {"volume_index": torch.zeros(256, dtype=torch.long), "slice_index": torch.arange(256)}
    z, _ = loss.constraint_values(logits, {"bounds": bounds, **items})
    assert z.shape == (256, 4, 1, 2)  # 2048 constraints, one tensor
    value = loss(logits, {"bounds": bounds})
    assert value.dtype == torch.float32 and torch.isfinite(value)
    if dtype == torch.float32:  # fp16 gradients of 1e9 overflow by design; GradScaler skips such steps
        value.backward()
        assert torch.isfinite(logits.grad).all()


def test_bad_bounds_and_options_raise():
    logits = _uniform_batch()
    with pytest.raises(
        ValueError, match=r"must have shape \(B, C or C', M, 2\) .* \(or \(B, C or C', 2\)\), got \(1, 2\)"
    ):
        InequalityConstraintLoss()(logits, {"bounds": torch.zeros(1, 2)})
    with pytest.raises(ValueError, match="lower bounds above upper bounds"):
        InequalityConstraintLoss()(logits, {"bounds": torch.tensor([[[0.0, 1.0], [5.0, 2.0]]])})
    with pytest.raises(ValueError, match="NaN or inf"):
        InequalityConstraintLoss()(logits, {"bounds": torch.tensor([[[0.0, 1.0], [float("nan"), 2.0]]])})
    with pytest.raises(ValueError, match=r"classes \[5\] out of range"):
        InequalityConstraintLoss(classes=[5])(logits, {"bounds": torch.zeros(1, 2, 2)})
    with pytest.raises(ValueError, match="mode must be one of"):
        InequalityConstraintLoss(mode="barrier")
    with pytest.raises(KeyError, match="'volume_index'"):
        InequalityConstraintLoss(per="volume")(logits, {"bounds": torch.zeros(1, 2, 2)})
