import math

import pytest
import torch

from wss_monai.handlers.log_barrier import LogBarrierScheduler
from wss_monai.losses.composite import CompositeLoss
from wss_monai.losses.constraints import log_barrier_extension
from wss_monai.losses.inequality import (
    InequalityConstraintLoss,
    central_moment,
    fractional_moment,
    soft_centroid,
    soft_size,
)


def _probs_2x2():
    """Class 1 probabilities [[0.5, 1], [0, 0.5]]: size 2, centroid (0.25, 0.75)."""
    fg = torch.tensor([[0.5, 1.0], [0.0, 0.5]], dtype=torch.float64)
    return torch.stack([1 - fg, fg])[None]


# ----------------------------------------------------------------------------- constraint functions


def test_functions_on_uniform_logits_2d_and_3d():
    probs = torch.softmax(torch.zeros(2, 2, 4, 4), 1)
    assert soft_size(probs, classes=[1]).tolist() == [[[8.0]], [[8.0]]]
    assert soft_centroid(probs, classes=[1]).tolist() == [[[1.5, 1.5]], [[1.5, 1.5]]]
    assert soft_centroid(probs, classes=[1], spacing=(2.0, 0.5)).tolist() == [[[3.0, 0.75]], [[3.0, 0.75]]]
    assert soft_size(probs).shape == (2, 2, 1)
    probs3d = torch.softmax(torch.zeros(1, 2, 2, 4, 6), 1)
    assert soft_size(probs3d, classes=[0]).item() == pytest.approx(24.0)
    assert soft_centroid(probs3d, classes=[1])[0, 0].tolist() == pytest.approx([0.5, 1.5, 2.5])
    variance = central_moment(probs3d, order=2, classes=[1])[0, 0]
    assert variance.tolist() == pytest.approx([0.25, 1.25, 35 / 12])  # variances of 0..n-1


def test_functions_hand_values_on_non_uniform_probabilities():
    probs = _probs_2x2()
    assert soft_size(probs, classes=[1]).item() == pytest.approx(2.0)
    assert soft_centroid(probs, classes=[1])[0, 0].tolist() == pytest.approx([0.25, 0.75])
    intensity = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)[None, None]
    assert fractional_moment(probs, intensity, classes=[1]).item() == pytest.approx((0.5 + 2 + 2) / 2)
    # rows 0/1 carry 1.5/0.5 of the mass: variance (1.5·0.25² + 0.5·0.75²)/2
    assert central_moment(probs, 2, classes=[1])[0, 0, 0].item() == pytest.approx(0.1875)
    # third moment against the direct definition
    rows = torch.tensor([0.0, 1.0], dtype=torch.float64)
    weights = torch.tensor([1.5, 0.5], dtype=torch.float64)
    mean = (weights * rows).sum() / 2
    expected = (weights * (rows - mean) ** 3).sum() / 2
    assert central_moment(probs, 3, classes=[1])[0, 0, 0].item() == pytest.approx(expected.item())
    # central moments do not depend on the spacing origin; they scale with spacing^order
    assert central_moment(probs, 2, classes=[1], spacing=(2.0, 1.0))[0, 0, 0].item() == pytest.approx(0.75)


def test_functions_finite_on_empty_prediction():
    probs = torch.zeros(1, 2, 3, 3)
    probs[:, 0] = 1.0
    probs.requires_grad_(True)
    values = torch.cat(
        [
            soft_centroid(probs, classes=[1]),
            fractional_moment(probs, torch.rand(1, 2, 3, 3), classes=[1]),
            central_moment(probs, 2, classes=[1]),
        ],
        dim=-1,
    )
    values.sum().backward()
    assert torch.isfinite(values).all() and torch.isfinite(probs.grad).all()


def test_function_argument_errors():
    probs = torch.softmax(torch.zeros(1, 2, 4, 4), 1)
    with pytest.raises(ValueError, match=r"classes \[2\] out of range"):
        soft_size(probs, classes=[2])
    with pytest.raises(ValueError, match="spacing must have one value per spatial axis"):
        soft_centroid(probs, spacing=(1.0,))
    with pytest.raises(ValueError, match=r"weight_map must have shape \(B or 1, M, \*spatial\)"):
        fractional_moment(probs, torch.rand(4, 4))
    with pytest.raises(ValueError, match="weight_map spatial shape"):
        fractional_moment(probs, torch.rand(1, 1, 4, 5))
    with pytest.raises(ValueError, match="order must be a positive integer, got 0"):
        central_moment(probs, 0)


# ----------------------------------------------------------------------------- loss values and gradients


def _size_batch():
    return {"bounds": torch.tensor([[[0.0, 16.0], [10.0, 12.0]]])}  # class 1 soft size 8 < 10


def test_size_penalty_hand_value_and_gradient():
    logits = torch.zeros(1, 2, 4, 4, requires_grad=True)
    loss = InequalityConstraintLoss(function="size", mode="penalty")(logits, _size_batch())
    assert loss.item() == pytest.approx(4.0)  # (10 - 8)^2
    loss.backward()
    # dL/dl1 = -2 (10 - 8) · S(1 - S) = -1 per voxel, +1 on the background logit
    assert torch.allclose(logits.grad[:, 1], torch.full((1, 4, 4), -1.0))
    assert torch.allclose(logits.grad[:, 0], torch.full((1, 4, 4), 1.0))
    # the same bounds given for the selected classes only, (B, C', 2) or (B, C', 1, 2)
    for bounds in (torch.tensor([[[10.0, 12.0]]]), torch.tensor([[[[10.0, 12.0]]]])):
        again = InequalityConstraintLoss(function="size", mode="penalty")(logits, {"bounds": bounds})
        assert again.item() == pytest.approx(4.0)


def test_centroid_penalty_hand_value_and_gradient():
    logits = torch.zeros(1, 2, 4, 4, requires_grad=True)
    bounds = torch.tensor([[[[2.0, 3.0], [0.0, 3.0]]]])  # row centroid must be ≥ 2; it is 1.5
    loss = InequalityConstraintLoss(key="centroid", function="centroid", mode="penalty")(logits, {"centroid": bounds})
    assert loss.item() == pytest.approx(0.25)
    loss.backward()
    # dL/dC = -2·0.5 = -1; dC/dS_p = (r_p - 1.5)/8; dS/dl1 = 1/4 → dL/dl1(p) = -(r_p - 1.5)/32
    rows = torch.arange(4.0).reshape(4, 1).expand(4, 4)
    assert torch.allclose(logits.grad[0, 1], -(rows - 1.5) / 32, atol=1e-7)
    assert torch.allclose(logits.grad[0, 0], (rows - 1.5) / 32, atol=1e-7)


def test_log_barrier_hand_value_and_scheduler_drives_t():
    t = 5.0
    logits = torch.zeros(1, 2, 4, 4)
    term = InequalityConstraintLoss(function="size", mode="log_barrier", t=t)
    expected = (t * 2 - math.log(1 / t**2) / t + 1 / t) + (-math.log(4.0) / t)  # z = (2, -4)
    assert term(logits, _size_batch()).item() == pytest.approx(expected, rel=1e-6)
    LogBarrierScheduler(CompositeLoss({"size": term}), t0=2.0)
    assert term.t == 2.0
    reference = log_barrier_extension(torch.tensor([2.0, -4.0]), 2.0).sum()
    assert term(logits, _size_batch()).item() == pytest.approx(reference.item(), rel=1e-6)


def test_fractional_mean_intensity_from_the_batch_and_fixed_map():
    logits = torch.zeros(1, 2, 2, 2)
    image = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])  # mean intensity under uniform S: 2.5
    bounds = torch.tensor([[[3.0, 4.0]]])  # (B, C', 2) with M = 1
    batch = {"image": image, "intensity_bounds": bounds}
    loss = InequalityConstraintLoss(key="intensity_bounds", function="fractional", map_key="image", mode="penalty")
    assert loss(logits, batch).item() == pytest.approx(0.25)
    fixed = InequalityConstraintLoss(key="intensity_bounds", function="fractional", weight_map=image[0], mode="penalty")
    assert fixed(logits, batch).item() == pytest.approx(0.25)


def test_lagrangian_modes_hand_values():
    logits = torch.zeros(1, 2, 4, 4, requires_grad=True)
    batch = {**_size_batch(), "volume_index": torch.tensor([0]), "slice_index": torch.tensor([3])}
    term = InequalityConstraintLoss(function="size", mode="lagrangian", multiplier_init=0.5)
    # z = (10 - 8, 8 - 12) = (2, -4): 0.5·2 + 0.5·(-4)
    loss = term(logits, batch)
    assert loss.item() == pytest.approx(-1.0)
    loss.backward()
    # dL/dV = -0.5 + 0.5 = 0: equal multipliers on both sides cancel
    assert torch.allclose(logits.grad, torch.zeros_like(logits))
    relu = InequalityConstraintLoss(function="size", mode="relu_lagrangian", multiplier_init=0.5)
    assert relu(logits, batch).item() == pytest.approx(1.0)


@pytest.mark.parametrize("mode", ["penalty", "log_barrier", "lagrangian", "relu_lagrangian"])
@pytest.mark.parametrize("function", ["size", "centroid", "fractional", "moment"])
def test_gradcheck_float64(mode, function):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 2, 3, dtype=torch.float64, generator=g, requires_grad=True)
    num_moments = {"size": 1, "centroid": 2, "fractional": 1, "moment": 2}[function]
    centre = {"size": 2.0, "centroid": 0.8, "fractional": 0.5, "moment": 0.4}[function]
    # a mix of violated and satisfied constraints, away from the kinks
    lower = torch.full((2, 2, num_moments), centre) + torch.tensor([0.37, -0.41]).reshape(1, 2, 1)
    bounds = torch.stack([lower, lower + 0.2], dim=-1)
    batch = {
        "bounds": bounds,
        "image": torch.rand(2, 1, 2, 3, dtype=torch.float64, generator=g),
        "volume_index": torch.tensor([0, 1]),
        "slice_index": torch.tensor([0, 0]),
    }
    term = InequalityConstraintLoss(
        function=function,
        mode=mode,
        t=3.0,
        multiplier_init=0.7,
        map_key="image" if function == "fractional" else None,
        reduction="sum",
    )
    # full Jacobian check through the barrier, random-projection check (fast mode) for the other modes
    assert torch.autograd.gradcheck(lambda x: term(x, batch), (logits,), fast_mode=mode != "log_barrier")


@pytest.mark.parametrize("mode", ["penalty", "log_barrier", "lagrangian", "relu_lagrangian"])
def test_finite_at_large_t_large_multipliers_and_empty_predictions(mode):
    logits = torch.zeros(2, 2, 4, 4)
    logits[1, 1] = -200.0  # image 1: class 1 empty (softmax underflows to 0 in float32)
    logits.requires_grad_(True)
    batch = {
        "bounds": torch.tensor([[[[2.0, 3.0], [0.0, 1.0]]], [[[1.0, 2.0], [1.0, 2.0]]]]),
        "volume_index": torch.tensor([0, 0]),
        "slice_index": torch.tensor([0, 1]),
    }
    for function in ("centroid", "moment"):
        term = InequalityConstraintLoss(function=function, mode=mode, t=1e9, multiplier_init=1e6)
        loss = term(logits, batch)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
        logits.grad = None
    z, _ = InequalityConstraintLoss(function="centroid").constraint_values(logits, batch)
    assert torch.isfinite(z).all()


def test_half_precision_logits_give_float32():
    logits = torch.zeros(1, 2, 4, 4, dtype=torch.float16)
    out = InequalityConstraintLoss(function="centroid", mode="log_barrier", t=1e9)(
        logits, {"bounds": torch.tensor([[[[2.0, 3.0], [0.0, 3.0]]]])}
    )
    assert out.dtype == torch.float32 and torch.isfinite(out)


# ----------------------------------------------------------------------------- volumes, ids, contracts


def test_volume_grouping_sums_numerators_and_denominators():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 2, 4, 5, dtype=torch.float64, generator=g)
    volume_index = torch.tensor([7, 2, 7])
    bounds = torch.tensor([[[0.0, 1.0], [0.0, 1.0]]], dtype=torch.float64).expand(3, 1, 2, 2)
    batch = {"bounds": bounds, "volume_index": volume_index}
    probs = torch.softmax(logits, 1)
    for function in ("centroid", "moment"):
        term = InequalityConstraintLoss(function=function, per="volume", mode="penalty", reduction="none")
        z, ids = term.constraint_values(logits, batch)
        assert z.shape == (2, 1, 2, 2) and term(logits, batch).shape == (2,)
        # groups in sorted volume order: volume 2 (slice 1), volume 7 (slices 0 and 2)
        volume7 = probs[[0, 2]].permute(1, 2, 3, 0).unsqueeze(0)  # (1, C, H, W, 2): slices on a third axis
        if function == "centroid":
            expected = soft_centroid(volume7, classes=[1])[0, 0, :2]
        else:
            expected = central_moment(volume7, 2, classes=[1])[0, 0, :2]
        assert torch.allclose(-z[1, 0, :, 0], expected)  # lower bound 0: z_lower = -value
        assert ids[:, 0, 0, 0].tolist() == [2 * 4, 7 * 4]  # item key (volume) · K, K = C'·M·2 = 4
    size = InequalityConstraintLoss(function="size", per="volume", mode="penalty")
    z, _ = size.constraint_values(logits, {"bounds": torch.zeros(3, 2, 2), "volume_index": volume_index})
    assert torch.allclose(-z[1, 0, 0, 0], probs[[0, 2], 1].sum())


def test_volume_bounds_must_agree_and_group_key_is_required():
    logits = torch.zeros(2, 2, 4, 4)
    term = InequalityConstraintLoss(function="size", per="volume", mode="penalty")
    bounds = torch.tensor([[[0.0, 16.0], [1.0, 2.0]], [[0.0, 16.0], [1.0, 3.0]]])
    with pytest.raises(ValueError, match="slices of one volume .* carry different 'bounds'"):
        term(logits, {"bounds": bounds, "volume_index": torch.tensor([0, 0])})
    with pytest.raises(KeyError, match="needs the batch key 'volume_index'"):
        term(logits, {"bounds": bounds})
    with pytest.raises(ValueError, match="'volume_index' must hold one volume index per image"):
        term(logits, {"bounds": bounds, "volume_index": torch.tensor([0])})


def test_constraint_ids_identify_items_classes_moments_and_sides():
    logits = torch.zeros(2, 3, 4, 4)
    batch = {
        "bounds": torch.zeros(2, 2, 2, 2),
        "volume_index": torch.tensor([1, 0]),
        "slice_index": torch.tensor([5, 9]),
    }
    z, ids = InequalityConstraintLoss(function="centroid").constraint_values(logits, batch)
    assert z.shape == ids.shape == (2, 2, 2, 2) and ids.dtype == torch.long
    per_item = 8
    keys = torch.tensor([1 * 2**20 + 5, 0 * 2**20 + 9])
    assert torch.equal(ids.flatten(1), keys[:, None] * per_item + torch.arange(per_item))
    single = InequalityConstraintLoss(function="centroid", index_key="item")
    _, ids = single.constraint_values(logits, {**batch, "item": torch.tensor([3, 4])})
    assert ids[:, 0, 0, 0].tolist() == [24, 32]


def test_loss_does_not_mutate_inputs_or_state_and_reduction():
    logits = torch.randn(2, 2, 4, 4)
    batch = {
        "bounds": torch.tensor([[[0.0, 16.0], [10.0, 12.0]]] * 2),
        "volume_index": torch.tensor([0, 1]),
        "slice_index": torch.tensor([0, 0]),
    }
    copies = logits.clone(), {k: v.clone() for k, v in batch.items()}
    term = InequalityConstraintLoss(function="size", mode="lagrangian", multiplier_init=1.0, reduction="none")
    before = {k: v.clone() for k, v in term.state_dict().items()}
    out = term(logits, batch)
    assert out.shape == (2,)
    assert torch.equal(logits, copies[0]) and all(torch.equal(batch[k], copies[1][k]) for k in batch)
    after = term.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    total = InequalityConstraintLoss(function="size", mode="lagrangian", multiplier_init=1.0, reduction="sum")
    assert total(logits, batch).item() == pytest.approx(out.sum().item())


def test_option_and_input_errors():
    with pytest.raises(ValueError, match=r"mode must be one of .*got 'augmented'"):
        InequalityConstraintLoss(mode="augmented")
    with pytest.raises(ValueError, match=r"function must be one of .*got 'area'"):
        InequalityConstraintLoss(function="area")
    with pytest.raises(ValueError, match="per must be 'image' or 'volume', got 'batch'"):
        InequalityConstraintLoss(per="batch")
    with pytest.raises(ValueError, match="t must be a finite positive number, got 0"):
        InequalityConstraintLoss(t=0)
    with pytest.raises(ValueError, match="needs exactly one of map_key and weight_map"):
        InequalityConstraintLoss(function="fractional")
    with pytest.raises(ValueError, match="only apply to function 'fractional'"):
        InequalityConstraintLoss(function="size", map_key="image")
    with pytest.raises(ValueError, match="reduction must be one of"):
        InequalityConstraintLoss(reduction="max")
    logits = torch.zeros(1, 2, 4, 4)
    term = InequalityConstraintLoss(function="centroid", mode="penalty")
    with pytest.raises(KeyError, match="needs the batch key 'bounds', which is missing"):
        term(logits, {"image": logits})
    with pytest.raises(ValueError, match=r"'bounds' must have shape \(B, C or C', M, 2\).*M = 2.*got \(1, 2, 2\)"):
        term(logits, {"bounds": torch.zeros(1, 2, 2)})
    with pytest.raises(ValueError, match="lower bounds above upper bounds"):
        term(logits, {"bounds": torch.tensor([[[[2.0, 1.0], [0.0, 1.0]]]])})
    with pytest.raises(ValueError, match="NaN or inf"):
        term(logits, {"bounds": torch.tensor([[[[0.0, math.inf], [0.0, 1.0]]]])})
    with pytest.raises(ValueError, match=r"logits must have shape \(B, C, H, W\[, D\]\)"):
        term(torch.zeros(2, 4, 4), {"bounds": torch.zeros(1, 1, 2, 2)})
    with pytest.raises(ValueError, match=r"classes \[3\] out of range"):
        InequalityConstraintLoss(classes=[3])(logits, {"bounds": torch.zeros(1, 2, 2)})
    with pytest.raises(ValueError, match="'slice_index' must hold one integer per image"):
        InequalityConstraintLoss().constraint_values(
            logits,
            {"bounds": torch.zeros(1, 2, 2), "volume_index": torch.tensor([0]), "slice_index": torch.tensor([0.5])},
        )


def test_3d_volume_logits():
    logits = torch.zeros(1, 2, 2, 4, 6)  # centroid (0.5, 1.5, 2.5), size 24
    bounds = torch.tensor([[[[0.0, 1.0], [0.0, 1.0], [3.0, 5.0]]]])  # axis 1 above, axis 2 below
    term = InequalityConstraintLoss(function="centroid", mode="penalty", spacing=(1.0, 1.0, 2.0))
    assert term(logits, {"bounds": bounds}).item() == pytest.approx(0.5**2)  # axis 2 at 5 mm: in [3, 5]
    term = InequalityConstraintLoss(function="centroid", mode="penalty")
    assert term(logits, {"bounds": bounds}).item() == pytest.approx(0.5**2 + 0.5**2)


def test_fractional_shared_map_matches_per_image_maps_with_gradients():
    """A map set shared by the batch (one matrix product) gives the per-image einsum's values and gradients."""
    torch.manual_seed(0)
    maps = torch.rand(1, 3, 5, 6, dtype=torch.float64)
    logits = torch.randn(4, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    shared = fractional_moment(torch.softmax(logits, 1), maps)
    per_image = fractional_moment(torch.softmax(logits, 1), maps.expand(4, -1, -1, -1).clone())
    torch.testing.assert_close(shared, per_image)
    probs = torch.softmax(logits, 1)[0, 1]
    torch.testing.assert_close(shared[0, 1, 2], (probs * maps[0, 2]).sum() / probs.sum())  # by hand
    (g_shared,) = torch.autograd.grad(shared.pow(2).sum(), logits)
    per_image = fractional_moment(torch.softmax(logits, 1), maps.expand(4, -1, -1, -1).clone())
    (g_image,) = torch.autograd.grad(per_image.pow(2).sum(), logits)
    torch.testing.assert_close(g_shared, g_image)
