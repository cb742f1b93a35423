"""Stage 1 of curriculum semi-supervision on a MONAI SupervisedTrainer: data, sampler, batch preparation, loss, run."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from monai.engines import SupervisedTrainer
from test_size_regressor import TINY, bright_rectangles

from wss_monai.experiments.size_regression import (
    AugmentedSlices,
    DihedralAugmentPrepare,
    PermutationSampler,
    ScaledMSELoss,
    _log_every,
    build_size_regressor_trainer,
    run_size_regressor_stage,
    train_size_regressor,
)
from wss_monai.networks import SizeRegressor, dihedral_augment, load_size_regressor


def reference_fit(images, sizes, epochs, batch_size, lr, augment, seed, weight_decay=0.0, **model_kwargs):
    """The algorithm written out as a plain loop: one generator draws each epoch's permutation of the
    ``N · augment`` items, then per batch the flips of ``dihedral_augment``; Adam on the scaled squared error."""
    sizes = sizes[:, None] if sizes.ndim == 1 else sizes
    num = images.shape[0]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SizeRegressor(in_channels=images.shape[1], num_outputs=sizes.shape[1], **model_kwargs)
    model.set_scale(sizes.mean(0).clamp_min(1.0))
    scale = model.scale.detach().clone()
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    history = []
    model.train()
    for _ in range(epochs):
        order = torch.randperm(num * augment, generator=generator)
        total = 0.0
        for start in range(0, num * augment, batch_size):
            index = order[start : start + batch_size]
            x = images[index % num]
            if augment > 1:
                x = torch.where((index // num > 0).reshape(-1, 1, 1, 1), dihedral_augment(x, generator), x)
            loss = torch.nn.functional.mse_loss(model(x) / scale, sizes[index % num] / scale)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(index)
        history.append(total / (num * augment))
    return model.eval(), history


@pytest.mark.parametrize(
    "settings",
    [
        {"epochs": 2, "batch_size": 7, "augment": 3, "lr": 1e-2, "seed": 3, "weight_decay": 1e-4},  # partial batch
        {"epochs": 2, "batch_size": 4, "augment": 1, "lr": 1e-3, "seed": 1},  # no augmentation
    ],
)
def test_engine_reproduces_the_plain_loop_bit_for_bit(settings):
    images, sizes = bright_rectangles(10)
    sizes = torch.stack([sizes, sizes.sqrt()], 1)  # two outputs, two scales
    expected_model, expected = reference_fit(images, sizes, **settings, **TINY)
    model, history = train_size_regressor(images, sizes, **settings, **TINY)
    assert history == expected
    for (name, p), q in zip(model.state_dict().items(), expected_model.state_dict().values()):
        assert torch.equal(p, q), name


def test_builder_returns_a_monai_supervised_trainer_and_its_loss_history():
    images, sizes = bright_rectangles(6)
    model = SizeRegressor(scale=float(sizes.mean()), **TINY)
    trainer, history = build_size_regressor_trainer(model, images, sizes[:, None], epochs=3, batch_size=4, augment=2)
    assert isinstance(trainer, SupervisedTrainer)
    assert isinstance(trainer.loss_function, ScaledMSELoss)
    assert trainer.loss_function.scale.tolist() == pytest.approx([float(sizes.mean())])
    assert len(trainer.data_loader) == 3  # 12 items in batches of 4
    trainer.run()
    assert trainer.state.iteration == 9 and len(history.history) == 3
    assert trainer.state.metrics["loss"] == history.history[-1]


def test_training_learns_a_toy_and_returns_eval_mode():
    images, sizes = bright_rectangles()
    net, history = train_size_regressor(images, sizes, epochs=6, batch_size=8, lr=1e-2, augment=2, seed=0, **TINY)
    assert len(history) == 6 and all(np.isfinite(history))
    assert history[-1] < 0.7 * history[0]
    assert not net.training
    assert net.scale.item() == pytest.approx(sizes.mean().item())


def test_training_is_seeded_and_leaves_the_global_rng_alone():
    images, sizes = bright_rectangles(8)
    state = torch.get_rng_state()
    a, history_a = train_size_regressor(images, sizes, epochs=1, batch_size=4, augment=3, seed=5, **TINY)
    assert torch.equal(torch.get_rng_state(), state)
    b, history_b = train_size_regressor(images, sizes, epochs=1, batch_size=4, augment=3, seed=5, **TINY)
    assert history_a == history_b
    for p, q in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(p, q)
    _, history_c = train_size_regressor(images, sizes, epochs=1, batch_size=4, augment=3, seed=6, **TINY)
    assert history_c != history_a


def test_multi_class_numpy_inputs_and_given_model():
    images, sizes = bright_rectangles(6)
    two = np.stack([sizes.numpy(), 2 * sizes.numpy()], 1)
    net, history = train_size_regressor(images.numpy(), two, epochs=1, batch_size=3, augment=1, **TINY)
    assert net(images).shape == (6, 2) and len(history) == 1
    torch.testing.assert_close(net.scale, torch.from_numpy(two.mean(0)))
    other = SizeRegressor(scale=3.0, **TINY)
    trained, _ = train_size_regressor(images, sizes, epochs=1, batch_size=6, model=other)
    assert trained is other and other.scale.item() == 3.0  # a given model keeps its scale


def test_inputs_not_mutated():
    images, sizes = bright_rectangles(4)
    before_images, before_sizes = images.clone(), sizes.clone()
    train_size_regressor(images, sizes, epochs=1, batch_size=4, augment=2, **TINY)
    assert torch.equal(images, before_images) and torch.equal(sizes, before_sizes)


def test_augmented_slices_index_slices_then_copies():
    images, sizes = torch.arange(3.0).reshape(3, 1, 1, 1), torch.tensor([[10.0], [20.0], [30.0]])
    data = AugmentedSlices(images, sizes, augment=2)
    assert len(data) == 6
    assert [(float(data[i]["image"]), float(data[i]["size"]), data[i]["copy"]) for i in (0, 2, 3, 5)] == [
        (0.0, 10.0, 0),
        (2.0, 30.0, 0),
        (0.0, 10.0, 1),
        (2.0, 30.0, 1),
    ]
    with pytest.raises(IndexError, match="index 6 out of range for 6 items"):
        data[6]
    with pytest.raises(ValueError, match="images and sizes must count the same slices, got 3 and 2"):
        AugmentedSlices(images, sizes[:2])


def test_permutation_sampler_draws_one_permutation_per_pass():
    generator = torch.Generator().manual_seed(7)
    sampler = PermutationSampler(5, generator)
    passes = [list(sampler), list(sampler)]
    expected = torch.Generator().manual_seed(7)
    assert passes == [torch.randperm(5, generator=expected).tolist() for _ in range(2)]
    assert torch.equal(generator.get_state(), expected.get_state())  # nothing else drawn
    assert len(sampler) == 5 and sorted(passes[0]) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="num_samples must be an integer >= 1, got 0"):
        PermutationSampler(0, generator)


def test_prepare_batch_augments_only_later_copies():
    images, _ = bright_rectangles(4)
    batch = {"image": images, "size": torch.ones(4, 1), "copy": torch.tensor([0, 1, 0, 2])}
    x, y = DihedralAugmentPrepare(torch.Generator().manual_seed(2))(batch, device="cpu")
    flipped = dihedral_augment(images, torch.Generator().manual_seed(2))
    assert torch.equal(x[[0, 2]], images[[0, 2]]) and torch.equal(x[[1, 3]], flipped[[1, 3]])
    assert not torch.equal(x[[1, 3]], images[[1, 3]])  # this seed flips both
    assert torch.equal(y, torch.ones(4, 1))
    plain, _ = DihedralAugmentPrepare(None)(batch)
    assert torch.equal(plain, images)


def test_scaled_mse_hand_computed():
    pred, target = torch.tensor([[12.0, 1.0], [8.0, 3.0]]), torch.tensor([[10.0, 2.0], [10.0, 2.0]])
    loss = ScaledMSELoss(scale=[10.0, 2.0], reduction="none")
    # ((12-10)/10)² = 0.04, ((1-2)/2)² = 0.25, ((8-10)/10)² = 0.04, ((3-2)/2)² = 0.25
    torch.testing.assert_close(loss(pred, target), torch.tensor([[0.04, 0.25], [0.04, 0.25]]))
    assert float(ScaledMSELoss([10.0, 2.0])(pred, target)) == pytest.approx(0.145)
    assert float(ScaledMSELoss([10.0, 2.0], reduction="sum")(pred, target)) == pytest.approx(0.58)
    assert float(ScaledMSELoss(1.0)(pred, target)) == pytest.approx((4 + 1 + 4 + 1) / 4)
    pred.requires_grad_(True)
    ScaledMSELoss([10.0, 2.0])(pred, target).backward()
    assert torch.isfinite(pred.grad).all() and pred.grad[0, 1] < 0 < pred.grad[0, 0]


@pytest.mark.parametrize(
    "kwargs, args, match",
    [
        ({"scale": [1.0, 0.0]}, None, r"scale must be finite positive numbers"),
        ({"reduction": "max"}, None, r"reduction must be 'mean', 'sum' or 'none', got 'max'"),
        ({}, (torch.zeros(2, 1), torch.zeros(2, 2)), r"must both have shape \(B, K\), got \(2, 1\) and \(2, 2\)"),
        ({"scale": [1.0, 2.0, 3.0]}, (torch.zeros(2, 2), torch.zeros(2, 2)), r"scale has 3 values for K = 2 outputs"),
    ],
)
def test_scaled_mse_errors(kwargs, args, match):
    with pytest.raises(ValueError, match=match):
        ScaledMSELoss(**kwargs)(*(args or (torch.zeros(1, 2), torch.zeros(1, 2))))


def test_epoch_log_schedule():
    keep = _log_every(25)  # every 2 epochs and the last one, as MONAI's StatsHandler event filter
    assert [e for e in range(1, 26) if keep(None, e)] == [2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 25]
    assert [e for e in range(1, 4) if _log_every(3)(None, e)] == [1, 2, 3]


def test_epoch_lines_reach_the_module_logger_and_nothing_is_printed(caplog, capsys):
    images, sizes = bright_rectangles(4)
    with caplog.at_level(logging.INFO, logger="wss_monai.experiments.size_regression"):
        _, history = train_size_regressor(images, sizes, epochs=2, batch_size=4, augment=1, **TINY)
        logging.getLogger("wss_monai.experiments.size_regression").info("after training")
    lines = [r.getMessage() for r in caplog.records if "Metrics" in r.getMessage()]
    assert len(lines) == 2 and f"loss: {history[-1]:.4f}" in lines[-1]
    assert "after training" in caplog.text  # the module's own logger still propagates
    assert "Metrics" not in capsys.readouterr().out


def volumes(num: int, depth: int = 3, size: int = 16, seed: int = 0) -> list[dict]:
    """Preprocessed-volume dicts: a bright square of class 3 per slice, its side drawn per slice."""
    rng = np.random.default_rng(seed)
    out = []
    for v in range(num):
        image = rng.normal(0, 0.05, (1, size, size, depth)).astype(np.float32)
        label = np.zeros((1, size, size, depth), dtype=np.float32)
        for d in range(depth):
            side = int(rng.integers(2, 8))
            label[0, :side, :side, d] = 3
            image[0, :side, :side, d] += 1.0
        out.append({"image": image, "label": label, "patient": f"p{v}", "frame": "ED"})
    return out


def test_stage_writes_checkpoint_table_summary_and_tensorboard(tmp_path):
    train, val = volumes(2), volumes(1, seed=1)
    summary = run_size_regressor_stage(
        train, val, tmp_path, classes=[3], spatial_size=16, epochs=2, batch_size=4, augment=2,
        model_kwargs={"channels": (4,)},
    )  # fmt: skip
    model = load_size_regressor(tmp_path / "models/size_regressor.pt", spatial_size=16, classes=[3])
    assert model.scale.item() == pytest.approx(
        np.mean([(v["label"][0, :, :, d] == 3).sum() for v in train for d in range(3)])
    )
    rows = (tmp_path / "size_regressor/validation_sizes.csv").read_text().splitlines()
    assert rows[0] == "case,slice,output,true_size,predicted_size,abs_error,within_bounds" and len(rows) == 1 + 3
    true = [float(r.split(",")[3]) for r in rows[1:]]
    assert true == [float((val[0]["label"][0, :, :, d] == 3).sum()) for d in range(3)]
    on_disk = json.loads((tmp_path / "size_regressor/summary.json").read_text())
    assert on_disk["history"] == summary["history"] and len(summary["history"]) == 2
    assert on_disk["validation"]["mean_true_size"] == pytest.approx(np.mean(true))
    assert list((tmp_path / "size_regressor/tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"epochs": 0}, r"epochs must be an integer >= 1, got 0"),
        ({"augment": 0}, r"augment must be an integer >= 1, got 0"),
        ({"batch_size": 0}, r"batch_size must be an integer >= 1, got 0"),
        ({"lr": -1.0}, r"lr must be a finite positive number, got -1.0"),
        ({"weight_decay": -1.0}, r"weight_decay must be >= 0, got -1.0"),
        ({"sizes": -torch.ones(4)}, r"sizes must be finite and >= 0"),
        ({"sizes": torch.ones(3)}, r"sizes must have shape \(N,\) or \(N, K\) with N = 4 images, got \(3, 1\)"),
        ({"images": torch.zeros(4, 8, 8)}, r"images must have shape \(N, C, H, W\)"),
        ({"model": SizeRegressor(channels=(4,)), "channels": (4,)}, r"model_kwargs \['channels'\] only apply"),
    ],
)
def test_training_errors(kwargs, match):
    args = {"images": torch.zeros(4, 1, 8, 8), "sizes": torch.ones(4), "epochs": 1, **kwargs}
    with pytest.raises(ValueError, match=match):
        train_size_regressor(**args)
