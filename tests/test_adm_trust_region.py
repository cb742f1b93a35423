"""ADM and the robust trust region: proposals against hand-built problems, losses by hand, the stage-A cache."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from monai.inferers import SliceInferer
from solver_workers import kill_self

from wss_monai.constants import UNLABELLED
from wss_monai.data import VolumeSliceDataset, WholeVolumeDataset
from wss_monai.handlers import GeometricSchedule, TrustRegionProposals
from wss_monai.losses import (
    ADMLoss,
    CompositeLoss,
    PartialCrossEntropyLoss,
    RobustTrustRegionLoss,
    potts_edge_weights,
    potts_energy,
    robust_trust_region_loss,
)
from wss_monai.solvers import PottsProblem, SolverError, alpha_expansion
from wss_monai.transforms import UnlabelledLiked


def tiny_batch(seed=0, size=2, classes=3, shape=(5, 6)):
    generator = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(size, classes, *shape, generator=generator)
    image = torch.rand(size, 1, *shape, generator=generator)
    seeds = torch.full((size, 1, *shape), UNLABELLED)
    seeds[:, 0, 0, 0], seeds[:, 0, -1, -1], seeds[0, 0, 2, 3] = 0, 2, 1
    batch = {"image": image, "scribble": seeds, "volume_index": torch.tensor([3, 4])[:size]}
    batch["slice_index"] = torch.tensor([7, 0])[:size]
    return logits, batch


def test_adm_proposals_are_the_alpha_expansion_of_the_hand_built_problem():
    logits, batch = tiny_batch()
    loss = ADMLoss(potts_weight=0.7, gamma=1.5, workers=0)
    proposals = loss.proposals(logits, batch)
    weights = potts_edge_weights(batch["image"], 8)
    for b in range(2):
        unary = -1.5 * torch.log_softmax(logits[b], 0).numpy()
        edges = [(o, 0.7 * w[b, 0].numpy()) for o, w in weights]
        expected = alpha_expansion(PottsProblem(unary, edges, batch["scribble"][b, 0].numpy()), sweeps=5)
        np.testing.assert_array_equal(proposals[b].numpy(), expected)
        seeded = batch["scribble"][b, 0] != UNLABELLED
        assert (proposals[b][seeded] == batch["scribble"][b, 0][seeded]).all()  # seeds never violated
    # strong smoothing against the seeds' unaries: the seeds still hold
    strong = ADMLoss(potts_weight=50.0, gamma=1.0, workers=0).proposals(logits, batch)
    assert strong[0, 0, 0] == 0 and strong[0, -1, -1] == 2 and strong[0, 2, 3] == 1


def test_adm_loss_by_hand_and_its_logged_energy():
    # one row of 3 voxels, K = 2; the seed forces label 1 where S prefers 0; no smoothing: X = [1, 1, 0]
    logits = torch.tensor([[[[2.0, 1.0, 0.0]], [[-2.0, 0.0, 1.0]]]], requires_grad=True)
    batch = {"image": torch.tensor([[[[0.0, 0.0, 1.0]]]]), "scribble": torch.tensor([[[[1, -1, -1]]]])}
    composite = CompositeLoss(
        {"pce": PartialCrossEntropyLoss(), "adm": ADMLoss(potts_weight=0.0, gamma=2.0, workers=0)}
    )
    out = composite(logits, batch)
    s = torch.softmax(logits.detach()[0, :, 0], 0)  # (2, 3)
    expected = 2.0 * -(math.log(s[1, 0]) + math.log(s[0, 1]) + math.log(s[1, 2])) / 3
    assert out["adm"].item() == pytest.approx(expected, rel=1e-5)
    assert out["loss"].item() == pytest.approx(expected - math.log(s[1, 0]), rel=1e-5)
    labels = torch.tensor([[[[1, 0, 1]]]])
    assert out["adm_proposal_energy"].item() == pytest.approx(potts_energy(labels, batch["image"]).item())
    out["loss"].backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_adm_failures_name_the_slice_instead_of_hanging():
    logits, batch = tiny_batch()
    logits[1, 0, 2, 2] = float("nan")
    with pytest.raises(SolverError, match=r"volume 4 slice 0: the unary costs hold"):
        ADMLoss(workers=0)(logits, batch)
    logits, batch = tiny_batch(size=1)
    with pytest.raises(SolverError, match=r"volume 3 slice 7: the solver process died"):
        ADMLoss(workers=1, solver=kill_self)(logits, batch)


def test_robust_loss_by_hand():
    # K = 3, eps = 0.5: a = 0.25, b = 0.25
    log_probs = torch.log(torch.tensor([[[[0.5, 0.3, 0.2]], [[0.2, 0.5, 0.3]], [[0.3, 0.2, 0.5]]]]))
    seeds = torch.tensor([[[0, -1, -1]]])
    proposals = torch.tensor([[[0, 2, 1]]])
    value = robust_trust_region_loss(log_probs, seeds, proposals, 0.5)
    # voxel 0 seed: -log 0.5; voxel 1 proposal 2, S = 0.2; voxel 2 proposal 1, S = 0.3
    expected = (-math.log(0.5) - math.log(0.25 + 0.25 * 0.2) - math.log(0.25 + 0.25 * 0.3)) / 3
    assert value.item() == pytest.approx(expected)
    assert robust_trust_region_loss(log_probs, seeds, proposals, 0.0).item() == pytest.approx(
        (-math.log(0.5) - math.log(0.2) - math.log(0.3)) / 3
    )
    # no proposal yet: partial cross-entropy on the seeds
    none = robust_trust_region_loss(log_probs, seeds, torch.full_like(proposals, -1), 0.5)
    assert none.item() == pytest.approx(-math.log(0.5))
    with pytest.raises(ValueError, match=r"epsilon must lie in \[0, \(K-1\)/K\) = \[0, 0.6667\) for K = 3, got 0.7"):
        robust_trust_region_loss(log_probs, seeds, proposals, 0.7)


def test_robust_loss_gradients_in_float64():
    logits, batch = tiny_batch(seed=1, shape=(3, 4))
    batch["proposal"] = torch.randint(0, 3, (2, 1, 3, 4), generator=torch.Generator().manual_seed(2))
    batch["proposal"][1] = UNLABELLED  # the second image falls back to partial CE
    logits = logits.double().requires_grad_()
    for epsilon in (0.0, 0.6):
        loss = RobustTrustRegionLoss(epsilon=epsilon)
        assert torch.autograd.gradcheck(lambda x, loss=loss: loss(x, batch), (logits,))
    per_image = RobustTrustRegionLoss(epsilon=0.3, reduction="none")(logits, batch)
    assert per_image.shape == (2,)
    assert per_image[1].item() == pytest.approx(PartialCrossEntropyLoss(reduction="none")(logits, batch)[1].item())


def volumes(count=2, shape=(8, 8, 3), classes=3):
    generator = torch.Generator().manual_seed(0)
    out = []
    for _ in range(count):
        image = torch.rand(1, *shape, generator=generator)
        seeds = torch.full((1, *shape), float(UNLABELLED))
        seeds[0, 0, 0], seeds[0, -1, -1] = 0, 2  # labels 0 and 2 only: label 1 is never proposed
        out.append(UnlabelledLiked("scribble", "proposal")({"image": image, "scribble": seeds}))
    return out


def stage_a(dataset, network, inferer, **kwargs):
    kwargs = {"potts_weight": 0.5, "kl_weight": 1.0, "interval": 2, "workers": 0, **kwargs}
    return TrustRegionProposals(network, dataset, inferer, **kwargs)


def run_epochs(handler, epochs):
    for epoch in epochs:
        engine = SimpleNamespace(state=SimpleNamespace(epoch=epoch, iteration=10 * epoch))
        handler.submit(engine)
        handler.poll(engine)
        handler.collect(engine)


def test_stage_a_refreshes_every_m_epochs_and_survives_a_checkpoint():
    network = torch.nn.Conv2d(1, 3, 1)
    inferer = SliceInferer(roi_size=(8, 8), spatial_dim=2)
    dataset = VolumeSliceDataset(volumes(), image_keys=["image", "scribble", "proposal"])
    handler = stage_a(dataset, network, inferer)
    assert [e for e in range(1, 8) if handler.is_refresh_epoch(e)] == [1, 3, 5, 7]
    run_epochs(handler, [1])
    first = {v: p.clone() for v, p in handler.proposals.items()}
    with torch.no_grad():
        network.weight.mul_(-1)
    run_epochs(handler, [2])
    assert handler.refreshes == 1 and all((handler.proposals[v] == first[v]).all() for v in first)
    run_epochs(handler, [3, 4, 5])
    assert handler.refreshes == 3
    problems, keys = handler.problems()
    assert len(problems) == 6 and keys[:3] == [(0, 0), (0, 1), (0, 2)]
    for (v, s), problem in zip(keys, problems):
        expected = alpha_expansion(problem, sweeps=5)
        np.testing.assert_array_equal(dataset.volumes[v]["proposal"][0, ..., s].numpy(), expected)
        assert set(np.unique(expected).tolist()) <= {0, 2} and expected[0, 0] == 0 and expected[-1, -1] == 2
    item = dataset[4]  # the proposals reach the training items of the slice
    np.testing.assert_array_equal(item["proposal"][0].numpy(), alpha_expansion(problems[4]))
    state = handler.state_dict()
    restored_dataset = VolumeSliceDataset(volumes(), image_keys=["image", "scribble", "proposal"])
    restored = stage_a(restored_dataset, network, inferer)
    restored.load_state_dict(state)
    assert restored.refreshes == 3
    for v in range(2):
        assert torch.equal(restored_dataset.volumes[v]["proposal"], dataset.volumes[v]["proposal"])
    with pytest.raises(ValueError, match=r"proposals of volume 0 have shape \(1, 8, 8, 2\), expected \(1, 8, 8, 3\)"):
        stage_a(VolumeSliceDataset(volumes(), image_keys=["image", "scribble"]), network, inferer).load_state_dict(
            {"refreshes": 1, "proposals": {0: torch.zeros(1, 8, 8, 2)}}
        )


def test_stage_a_on_whole_volumes_and_failures_named():
    network = torch.nn.Conv3d(1, 3, 1)
    dataset = WholeVolumeDataset(volumes(), image_keys=["image", "scribble", "proposal"])
    handler = stage_a(dataset, network, lambda x, net: net(x), interval=1)
    problems, keys = handler.problems()
    assert len(problems) == 2 and problems[0].spatial_shape == (8, 8, 3) and keys == [(0, -1), (1, -1)]
    run_epochs(handler, [1])
    proposal = dataset.volumes[1]["proposal"]
    assert (proposal != UNLABELLED).all() and proposal[0, 0, 0, 0] == 0 and proposal[0, -1, -1, -1] == 2
    sliced = stage_a(
        VolumeSliceDataset(volumes(), image_keys=["image"]),
        torch.nn.Conv2d(1, 3, 1),
        SliceInferer(roi_size=(8, 8), spatial_dim=2),
    )
    with torch.no_grad():
        sliced.network.bias[1] = float("nan")
    with pytest.raises(SolverError, match=r"volume 0 slice 0: the unary costs hold"):
        run_epochs(sliced, [1])
    with pytest.raises(KeyError, match=r"volume 0 has no 'proposal' map"):
        stage_a(
            VolumeSliceDataset([{k: v for k, v in volumes()[0].items() if k != "proposal"}], ["image"]), network, None
        )


def test_dense_crf_stage_a_keeps_the_seeds_follows_the_edges_and_names_failures():
    # two flat regions split at column 4; one seed of label 0 on the left and one of label 2 on the right
    image = torch.zeros(1, 8, 8, 2)
    image[0, :, 4:] = 3.0
    seeds = torch.full((1, 8, 8, 2), float(UNLABELLED))
    seeds[0, 3, 0], seeds[0, 3, 7] = 0, 2
    volume = UnlabelledLiked("scribble", "proposal")({"image": image, "scribble": seeds})
    dataset = VolumeSliceDataset([volume], image_keys=["image", "scribble", "proposal"])
    network = torch.nn.Conv2d(1, 3, 1)
    with torch.no_grad():  # an untrained-looking network: the same output everywhere
        network.weight.zero_()
        network.bias.zero_()
    inferer = SliceInferer(roi_size=(8, 8), spatial_dim=2)
    options = {"sigma_xy": 8.0, "sigma_intensity": 0.5, "bilateral_weight": 5.0, "gaussian_weight": 1.0}
    handler = stage_a(dataset, network, inferer, solver="dense_crf", dense_crf=options)
    problems, keys = handler.problems()
    assert keys == [(0, 0), (0, 1)] and problems[0].case == "volume 0 slice 0"
    allowed = problems[0].allowed  # label 1 is in no seed of the slice; a seed voxel may take only its own label
    assert not allowed[1].any() and allowed[:, 3, 0].tolist() == [True, False, False]
    assert allowed[:, 3, 7].tolist() == [False, False, True] and allowed[[0, 2], 5, 5].all()
    run_epochs(handler, [1])
    proposal = dataset.volumes[0]["proposal"][0, ..., 0].numpy()
    expected = np.zeros((8, 8), np.int64)
    expected[:, 4:] = 2  # each seed's label fills its own flat region, up to the intensity edge
    np.testing.assert_array_equal(proposal, expected)
    with pytest.raises(ValueError, match=r"solver must be one of \('alpha_expansion', 'dense_crf'\), got 'icm'"):
        stage_a(dataset, network, inferer, solver="icm")
    dataset.volumes[0]["scribble"][0, 0, 0, 1] = 5  # a seed label outside range(3), in slice 1
    with pytest.raises(SolverError, match=r"volume 0 slice 1: seed labels \[5\] are outside range\(3\)"):
        stage_a(dataset, network, inferer, solver="dense_crf", dense_crf=options).problems()
    dataset.volumes[0]["scribble"][0, 0, 0, 1] = UNLABELLED
    with torch.no_grad():
        network.bias[1] = float("nan")  # a NaN logit makes every class's softmax NaN: 3 x 64 values
    with pytest.raises(SolverError, match=r"volume 0 slice 0: the probabilities hold 192 NaN"):
        run_epochs(stage_a(dataset, network, inferer, solver="dense_crf", dense_crf=options), [1])


def test_gamma_schedule_resumes():
    loss = ADMLoss(gamma=1.0, workers=0)
    schedule = GeometricSchedule(loss, "gamma", start=0.5, growth=2.0, maximum=3.0)
    assert loss.gamma == 0.5
    schedule(SimpleNamespace(state=SimpleNamespace(epoch=1)))
    assert loss.gamma == 1.0
    other = ADMLoss(workers=0)
    GeometricSchedule(other, "gamma", start=0.5, growth=2.0, maximum=3.0).load_state_dict(schedule.state_dict())
    assert other.gamma == 1.0
    with pytest.raises(ValueError, match="has no attribute 'beta'"):
        GeometricSchedule(loss, "beta", start=1.0)


def test_gamma_schedule_waits_for_its_delay_and_resumes_after_it():
    loss = ADMLoss(gamma=1.0, workers=0)
    schedule = GeometricSchedule(loss, "gamma", start=0.25, growth=2.0, delay=3)
    values = []
    for epoch in range(1, 6):
        schedule(SimpleNamespace(state=SimpleNamespace(epoch=epoch)))
        values.append(loss.gamma)
    assert values == [0.25, 0.25, 0.25, 0.5, 1.0]  # 0.25 * 2^(e - 3) from e = 4 on
    other = ADMLoss(workers=0)
    GeometricSchedule(other, "gamma", start=0.25, growth=2.0, delay=3).load_state_dict(schedule.state_dict())
    assert other.gamma == 1.0
    with pytest.raises(ValueError, match=r"delay must be an integer >= 0 \(epochs\), got -1"):
        GeometricSchedule(loss, "gamma", start=1.0, delay=-1)
