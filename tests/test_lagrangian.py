import math

import pytest
import torch
from ignite.engine import Engine

from wss_monai.handlers.lagrangian import DualAscentHandler, DualVariables
from wss_monai.losses.composite import CompositeLoss
from wss_monai.losses.inequality import InequalityConstraintLoss, LagrangianProposalLoss, lagrangian_proposal
from wss_monai.losses.partial_ce import PartialCrossEntropyLoss


def _batch(volumes=(0, 0), slices=(0, 1), upper=(12.0, 5.0)):
    """Two 4×4 items; class 1 has soft size 8 under zero logits; bounds [2, upper]."""
    bounds = torch.tensor([[[0.0, 16.0], [2.0, u]] for u in upper])
    return {"bounds": bounds, "volume_index": torch.tensor(volumes), "slice_index": torch.tensor(slices)}


def _with_duals(term):
    """Gives ``term`` a multiplier table of its own, as a DualAscentHandler would; returns the table."""
    term.dual_variables = DualVariables(term.mode, term.multiplier_init)
    return term.dual_variables


# ----------------------------------------------------------------------------- dual ascent by hand


def test_standard_lagrangian_dual_ascent_by_hand():
    term = InequalityConstraintLoss(function="size", mode="lagrangian")
    duals = _with_duals(term)
    logits = torch.zeros(2, 2, 4, 4)
    z, ids = term.constraint_values(logits, _batch())
    # item 0: z = (2 - 8, 8 - 12) = (-6, -4); item 1: (-6, 8 - 5 = 3)
    assert z.flatten().tolist() == [-6.0, -4.0, -6.0, 3.0]
    duals.accumulate(z, ids)
    assert duals.step(0.5) == 4
    assert duals.multipliers.flatten().tolist() == [0.0, 0.0, 0.0, 1.5]  # max(0, 0 + 0.5 z)
    assert term(logits, _batch()).item() == pytest.approx((0 + 1.5 * 3) / 2)  # mean over the two images
    # second epoch, the item evaluated twice: the step uses the mean of its values
    duals.accumulate(z[1:], ids[1:])
    duals.accumulate(z[1:] - 4.0, ids[1:])  # z = (-10, -1)
    assert duals.step(1.0) == 2
    assert duals.multipliers[1].flatten().tolist() == pytest.approx([0.0, max(0.0, 1.5 + (3 - 1) / 2)])
    assert duals.multipliers[0].flatten().tolist() == [0.0, 0.0]  # not evaluated: unchanged
    # a large negative z brings the multiplier back to 0, never below
    duals.accumulate(torch.full_like(z[1:], -100.0), ids[1:])
    duals.step(1.0)
    assert duals.multipliers[1].flatten().tolist() == [0.0, 0.0]


def test_relu_lagrangian_multipliers_only_grow():
    term = InequalityConstraintLoss(function="size", mode="relu_lagrangian", multiplier_init=1.0)
    duals = _with_duals(term)
    logits = torch.zeros(2, 2, 4, 4)
    z, ids = term.constraint_values(logits, _batch())
    duals.accumulate(z, ids)
    duals.step(0.5)
    assert duals.multipliers.flatten().tolist() == [1.0, 1.0, 1.0, 1.0 + 0.5 * 3]
    # value λ·max(0, z): only the violated upper bound of item 1 costs
    assert term(logits, _batch()).item() == pytest.approx(2.5 * 3 / 2)
    duals.accumulate(-z.abs() - 1, ids)
    duals.step(10.0)
    assert duals.multipliers.flatten().tolist() == [1.0, 1.0, 1.0, 2.5]


def test_lagrangian_gradient_is_multiplier_times_constraint_gradient():
    term = InequalityConstraintLoss(function="size", mode="lagrangian", reduction="sum")
    duals = _with_duals(term)
    logits = torch.zeros(2, 2, 4, 4)
    z, ids = term.constraint_values(logits, _batch())
    duals.accumulate(z, ids)
    duals.step(0.5)  # λ = 1.5 on item 1's upper bound only
    logits.requires_grad_(True)
    term(logits, _batch()).backward()
    # d(1.5 (V - 5))/dl1 = 1.5 · 1/4 on item 1, zero on item 0
    assert torch.allclose(logits.grad[1, 1], torch.full((4, 4), 0.375))
    assert torch.allclose(logits.grad[0], torch.zeros(2, 4, 4))


def test_multipliers_follow_items_not_batch_positions():
    term = InequalityConstraintLoss(function="size", mode="lagrangian", reduction="none")
    duals = _with_duals(term)
    logits = torch.zeros(2, 2, 4, 4)
    z, ids = term.constraint_values(logits, _batch())
    duals.accumulate(z, ids)
    duals.step(1.0)
    swapped = _batch(slices=(1, 0), upper=(5.0, 12.0))  # the same two items, in the other order
    assert term(logits, swapped).tolist() == pytest.approx([3.0 * 3, 0.0])
    unseen = _batch(volumes=(4, 4), slices=(0, 1))
    assert term(logits, unseen).tolist() == [0.0, 0.0]  # multiplier_init
    # per volume: one item per volume_index
    per_volume = InequalityConstraintLoss(function="size", mode="lagrangian", per="volume")
    volume_duals = _with_duals(per_volume)
    z, ids = per_volume.constraint_values(logits, _batch(upper=(20.0, 20.0)))
    assert z.shape == (1, 1, 1, 2) and ids[0, 0, 0].tolist() == [0, 1]
    volume_duals.accumulate(z, ids)
    volume_duals.step(1.0)
    assert volume_duals.multipliers.flatten().tolist() == [0.0, 0.0]  # volume size 16 in [2, 20]


@pytest.mark.parametrize("mode", ["lagrangian", "relu_lagrangian"])
def test_large_multipliers_stay_finite(mode):
    term = InequalityConstraintLoss(function="centroid", mode=mode, multiplier_init=1e6)
    logits = torch.zeros(2, 2, 4, 4)
    logits[0, 1] = -200.0  # empty class 1 in image 0
    logits.requires_grad_(True)
    batch = {**_batch(), "bounds": torch.tensor([[[[2.0, 3.0], [0.0, 1.0]]]] * 2)}
    loss = term(logits, batch)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_dual_errors():
    term = InequalityConstraintLoss(function="size", mode="lagrangian")
    duals = _with_duals(term)
    z, ids = term.constraint_values(torch.zeros(2, 2, 4, 4), _batch())
    with pytest.raises(ValueError, match=r"z and ids must both have shape \(G, C', M, 2\)"):
        duals.accumulate(z.flatten(), ids.flatten())
    duals.accumulate(z, ids)
    with pytest.raises(ValueError, match=r"constraint layout \(C', M, 2\) changed from \(1, 1, 2\) to \(2, 1, 2\)"):
        duals.accumulate(torch.zeros(1, 2, 1, 2), torch.zeros(1, 2, 1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="step must be positive, got 0"):
        duals.step(0.0)
    penalty = InequalityConstraintLoss(function="size", mode="penalty")
    with pytest.raises(ValueError, match=r"mode must be one of \('lagrangian', 'relu_lagrangian'\), got 'penalty'"):
        DualVariables(penalty.mode)
    with pytest.raises(ValueError, match="init must be non-negative"):
        DualVariables("lagrangian", init=-1.0)
    with pytest.raises(ValueError, match="no Lagrangian loss term"):
        DualAscentHandler(CompositeLoss({"size": penalty}))
    with pytest.raises(ValueError, match="multiplier_init must be non-negative"):
        InequalityConstraintLoss(mode="lagrangian", multiplier_init=-1.0)
    with pytest.raises(KeyError, match="needs the batch key 'slice_index'"):
        term(torch.zeros(1, 2, 4, 4), {"bounds": torch.zeros(1, 2, 2), "volume_index": torch.tensor([0])})


# ----------------------------------------------------------------------------- handler and checkpoints


def _engine(loss, logits, batches):
    def step(engine, batch):
        x = logits.clone().requires_grad_(True)  # stands for a network output; nothing is trained
        out = loss(x, batch)
        out = out["loss"] if isinstance(out, dict) else out
        out.backward()
        with torch.no_grad():  # an evaluation-style call: must not be recorded
            loss(logits, batch)
        return out.item()

    return Engine(step), batches


def test_handler_steps_once_per_epoch_and_checkpoints_multipliers():
    term = InequalityConstraintLoss(function="size", mode="lagrangian")
    loss = CompositeLoss({"pce": PartialCrossEntropyLoss(), "size": {"loss": term, "weight": 1e-2}})
    handler = DualAscentHandler(loss, step=0.5)
    assert handler.terms == [term]
    (duals,) = handler.duals
    assert term.dual_variables is duals  # the term reads the handler's table
    full = _batch()
    full["scribble"] = torch.full((2, 1, 4, 4), -1)
    full["scribble"][:, 0, 0, 0] = 1
    halves = [{k: v[i : i + 1] for k, v in full.items()} for i in range(2)]
    engine, data = _engine(loss, torch.zeros(2, 2, 4, 4)[:1], halves)
    handler.attach(engine)
    engine.run(data, max_epochs=1)
    assert duals.multipliers.flatten().tolist() == [0.0, 0.0, 0.0, 1.5]  # one step, as by hand
    engine.run(data, max_epochs=3)  # two more epochs on the same values
    assert duals.multipliers.flatten().tolist() == [0.0, 0.0, 0.0, 4.5]
    state = handler.state_dict()
    fresh_term = InequalityConstraintLoss(function="size", mode="lagrangian")
    fresh = DualAscentHandler(fresh_term, step=1.0)
    fresh.load_state_dict(state)
    assert fresh.step == 0.5 and torch.equal(fresh.duals[0].multipliers, duals.multipliers)
    assert torch.equal(fresh.duals[0].keys, duals.keys)
    logits = torch.zeros(2, 2, 4, 4)
    assert torch.equal(fresh_term(logits, full), term(logits, full))  # the resumed term reads the same multipliers
    # the loss module holds none of it
    assert not any("dual" in k or "multiplier" in k for k in term.state_dict())
    handler.detach()


@pytest.mark.parametrize("per", ["image", "volume"])
@pytest.mark.parametrize("mode", ["penalty", "lagrangian"])
def test_hook_reuses_the_values_of_the_forward(mode, per, monkeypatch):
    from wss_monai.handlers.lagrangian import hook_constraint_values

    keys = {"index_key": ("volume_index", "slice_index")} if per == "image" else {"group_key": "volume_index"}
    term = InequalityConstraintLoss(function="size", mode=mode, per=per, **keys)
    batch = _batch() if per == "image" else _batch(volumes=(0, 1), upper=(12.0, 12.0))
    expected_z, expected_ids = term.constraint_values(torch.zeros(2, 2, 4, 4), batch)
    seen = []
    handle = hook_constraint_values(term, lambda z, ids: seen.append((z, ids)))

    def no_second_evaluation(*args, **kwargs):
        raise AssertionError("constraint_values evaluated again")

    monkeypatch.setattr(term, "constraint_values", no_second_evaluation)
    logits = torch.zeros(2, 2, 4, 4, requires_grad=True)
    term(logits, batch).backward()
    assert len(seen) == 1
    assert torch.allclose(seen[0][0], expected_z) and torch.equal(seen[0][1], expected_ids)
    assert not seen[0][0].requires_grad
    with torch.no_grad():  # evaluation: nothing recorded, nothing kept
        term(logits, batch)
    assert len(seen) == 1
    handle.remove()


# ----------------------------------------------------------------------------- Lagrangian proposals


def test_proposal_latent_satisfies_size_bounds_per_image():
    logits = torch.zeros(2, 2, 4, 4)
    logits[1, 1] = 1.0
    bounds = torch.tensor([[[-math.inf, math.inf], [2.0, 4.0]], [[-math.inf, math.inf], [14.0, 15.0]]])
    latent, duals, steps = lagrangian_proposal(logits, bounds, lr=0.05, max_iter=500, tol=0.05)
    sizes = latent[:, 1].sum((1, 2))
    assert sizes[0] <= 4.05 and 13.95 <= sizes[1] <= 15.05
    assert 0 < steps < 500
    assert torch.allclose(latent.sum(1), torch.ones(2, 4, 4))
    # λ acts on the violated side only: upper bound for image 0, lower bound for image 1
    assert duals[0, 1, 1] > 0 and duals[0, 1, 0] == 0 and duals[1, 1, 0] > 0 and duals[1, 1, 1] == 0
    # closed form of the latent: S·exp(λ⁻ - λ⁺), normalised over classes
    shift = duals[..., 0] - duals[..., 1]
    assert torch.allclose(latent, torch.softmax(logits + shift[:, :, None, None], 1), atol=1e-6)


def test_proposal_early_stop_reduces_iterations():
    logits = torch.zeros(1, 2, 4, 4)
    bounds = torch.tensor([[[-math.inf, math.inf], [2.0, 6.0]]])
    _, _, early = lagrangian_proposal(logits, bounds, lr=0.05, max_iter=500, tol=0.5)
    _, _, tight = lagrangian_proposal(logits, bounds, lr=0.05, max_iter=500, tol=0.01)
    assert early < tight < 500
    satisfied, duals, none = lagrangian_proposal(logits, torch.tensor([[[0.0, 16.0], [0.0, 16.0]]]))
    assert none == 0 and torch.equal(duals, torch.zeros(1, 2, 2))
    assert torch.allclose(satisfied, torch.full((1, 2, 4, 4), 0.5))
    # Pathak's step (5e-5 per voxel) hardly moves a 16-voxel image: every step allowed runs
    _, _, default = lagrangian_proposal(logits, bounds, max_iter=40)
    assert default == 40


def test_proposal_loss_value_gradient_and_volume_grouping():
    logits = torch.zeros(2, 2, 4, 4, requires_grad=True)
    batch = {"bounds": torch.tensor([[[0.0, 32.0], [4.0, 6.0]]] * 2), "volume_index": torch.tensor([3, 3])}
    loss = LagrangianProposalLoss(lr=0.05, tol=0.05, reduction="sum")
    latent, _, _ = loss.proposal(logits, batch)
    assert (latent[:, 1].sum((1, 2)) <= 6.05).all()
    value = loss(logits, batch)
    assert value.item() == pytest.approx(2 * math.log(2), rel=1e-6)  # -Σ P log 0.5 / N per image
    value.backward()
    assert torch.allclose(logits.grad, (0.5 - latent) / 16, atol=1e-6)  # (S - P)/|Ω|
    per_volume = LagrangianProposalLoss(lr=0.05, tol=0.05, per="volume")
    volume_bounds = {**batch, "bounds": torch.tensor([[[0.0, 32.0], [8.0, 12.0]]] * 2)}  # the two slices together
    latent, duals, _ = per_volume.proposal(logits, volume_bounds)
    assert duals.shape == (1, 2, 2) and latent[:, 1].sum() <= 12.05
    assert torch.allclose(latent[0], latent[1])


def test_proposal_errors():
    logits = torch.zeros(1, 2, 4, 4)
    with pytest.raises(ValueError, match="lr must be positive"):
        LagrangianProposalLoss(lr=0)
    with pytest.raises(ValueError, match="per must be 'image' or 'volume'"):
        LagrangianProposalLoss(per="slice")
    with pytest.raises(KeyError, match="needs the batch key 'bounds'"):
        LagrangianProposalLoss()(logits, {})
    with pytest.raises(ValueError, match=r"'bounds' must have shape \(B, C or C', 2\).*got \(1, 3, 2\)"):
        LagrangianProposalLoss()(logits, {"bounds": torch.zeros(1, 3, 2)})
    with pytest.raises(ValueError, match="lower bounds above upper bounds"):
        LagrangianProposalLoss()(logits, {"bounds": torch.tensor([[[5.0, 1.0]]])})
    with pytest.raises(ValueError, match=r"bounds must have shape \(G, C, 2\)"):
        lagrangian_proposal(logits, torch.zeros(2, 2, 2))
