import csv
import json
import math

import pytest
import torch

from wss_monai.data.toy_circles import make_two_circles, write_two_circles
from wss_monai.experiments.two_circles import (
    TWO_CIRCLES_METHODS,
    ConstrainedCompositeLoss,
    build_two_circles_loss,
    run_two_circles,
    summarise_history,
)
from wss_monai.losses.inequality import InequalityConstraintLoss

TINY = {"channels": (4, 8), "strides": (2,), "batch_size": 4, "max_epochs": 2}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("circles")
    write_two_circles(folder, num_train=16, num_val=4, seed=3, size=32)
    return folder


@pytest.fixture(scope="module")
def runs(data_dir, tmp_path_factory):
    """Each method, 2 epochs on 16 images of 32²."""
    root = tmp_path_factory.mktemp("runs")
    return {m: (root / m, run_two_circles(m, root / m, data_dir, seed=1, **TINY)) for m in TWO_CIRCLES_METHODS}


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("method", TWO_CIRCLES_METHODS)
def test_every_method_writes_its_files_with_valid_values(runs, method):
    folder, summary = runs[method]
    assert sorted(p.name for p in folder.iterdir()) == [
        "constraints.csv",
        "metrics.csv",
        "model.pt",
        "summary.json",
        "tensorboard",
    ]
    assert any((folder / "tensorboard").iterdir())
    rows = _read_csv(folder / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for row in rows:
        assert 0.0 <= float(row["dice"]) <= 1.0
        assert 0.0 <= float(row["satisfied"]) <= 1.0
        assert float(row["seconds"]) > 0
        assert math.isfinite(float(row["loss/total"]))
    # the monitor's own CSV: 6 constraints per image (2 size, 4 centroid)
    constraints = _read_csv(folder / "constraints.csv")
    assert list(constraints[0]) == ["epoch", "satisfied", "stability"]
    assert math.isnan(float(constraints[0]["stability"]))  # no previous epoch
    for row in constraints:
        assert 0.0 <= float(row["satisfied"]) <= 1.0
        assert float(row["satisfied"]) * 16 * 6 == pytest.approx(round(float(row["satisfied"]) * 96), abs=1e-3)
    assert 0.0 <= float(constraints[1]["stability"]) <= 1.0
    saved = json.loads((folder / "summary.json").read_text())
    assert saved["method"] == method and saved["settings"]["num_train"] == 16 and saved["epochs"] == 2
    assert saved["dice_last"] == pytest.approx(float(rows[-1]["dice"]))
    assert saved["satisfied"] == pytest.approx(float(constraints[-1]["satisfied"]))
    assert summary["dice_mean"] == pytest.approx((float(rows[0]["dice"]) + float(rows[1]["dice"])) / 2)


@pytest.mark.parametrize("method", ["lagrangian", "relu_lagrangian"])
def test_lagrangian_multipliers_move_after_an_epoch(runs, method):
    history = runs[method][1]["history"]
    # λ starts at 0; an untrained network predicts about half the image, far above 1.1 τ: the upper
    # size bound is violated, so its multiplier grows at the first dual step
    assert history[0]["multiplier_mean"] > 0
    assert history[1]["multiplier_mean"] != history[0]["multiplier_mean"]
    if method == "relu_lagrangian":
        assert history[1]["multiplier_mean"] >= history[0]["multiplier_mean"]


def test_log_barrier_t_follows_the_schedule_and_other_methods_have_none(runs):
    assert [r["t"] for r in runs["log_barrier"][1]["history"]] == pytest.approx([1.0, 1.1])
    assert all(math.isnan(r["t"]) for r in runs["penalty"][1]["history"])


def test_same_seed_same_run(data_dir, tmp_path):
    settings = {**TINY, "max_epochs": 1}
    first = run_two_circles("penalty", tmp_path / "a", data_dir, seed=5, **settings)
    second = run_two_circles("penalty", tmp_path / "b", data_dir, seed=5, **settings)
    keys = ("dice", "satisfied", "loss/total")
    assert [first["history"][0][k] for k in keys] == [second["history"][0][k] for k in keys]


def test_full_supervision_learns_the_darker_circle(tmp_path):
    # the target is separable pixel by pixel (0.5 between 0 and 1, noise σ = 0.1): 16 labelled images
    # and 15 epochs of 8 steps take the validation Dice from its first-epoch value (0.3 here) to above
    # 0.8 (0.92 measured; a random map scores about the 5-10 % foreground share)
    data = (
        make_two_circles(16, size=32, seed=0),
        make_two_circles(4, size=32, seed=0, first_index=16),
    )
    summary = run_two_circles(
        "full", tmp_path, data, max_epochs=15, batch_size=2, learning_rate=3e-2, channels=(8, 16), strides=(2,)
    )
    dice = [r["dice"] for r in summary["history"]]
    assert dice[0] < 0.6
    assert dice[-1] > 0.8 and dice[-1] > dice[0] + 0.3


def test_constrained_composite_joins_constraints_with_disjoint_ids():
    size = InequalityConstraintLoss(key="s", function="size", mode="penalty", index_key="index")
    centroid = InequalityConstraintLoss(key="c", function="centroid", mode="penalty", index_key="index")
    loss = ConstrainedCompositeLoss({"size": size, "centroid": {"loss": centroid, "weight": 0.0}}, ["size", "centroid"])
    logits = torch.zeros(2, 2, 4, 4)  # class 1: size 8, centroid (1.5, 1.5)
    batch = {
        "s": torch.tensor([[[[6.0, 10.0]]], [[[2.0, 5.0]]]]),
        "c": torch.tensor([[[[0.0, 1.0], [1.0, 2.0]]], [[[1.0, 2.0], [1.0, 2.0]]]]),
        "index": torch.tensor([0, 1]),
    }
    z, ids = loss.constraint_values(logits, batch)
    assert z.tolist() == [[-2.0, -2.0, -1.5, 0.5, -0.5, -0.5], [-6.0, 3.0, -0.5, -0.5, -0.5, -0.5]]
    assert ids.unique().numel() == 12
    # size ids (item·2 + side)·2, centroid ids (item·4 + axis·2 + side)·2 + 1
    assert ids[1, :2].tolist() == [4, 6] and ids[1, 2:].tolist() == [9, 11, 13, 15]
    # the centroid has weight 0: the total is the size penalty alone, mean over images (0 + 9) / 2
    seen = []
    handle = loss.register_value_hook(lambda z, ids: seen.append((z, ids)))
    assert loss(logits, batch)["loss"].item() == pytest.approx(4.5)
    assert not seen  # no gradient: nothing handed over
    loss(logits.requires_grad_(), batch)
    ((recorded_z, recorded_ids),) = seen  # the values of that forward, without evaluating again
    assert torch.equal(recorded_z, z) and torch.equal(recorded_ids, ids)
    assert not hasattr(size, "_recorded")  # the loss itself keeps nothing
    handle.remove()
    loss(logits, batch)["loss"].backward()
    assert len(seen) == 1


def test_bad_arguments_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match=r"watch must name some of the terms \['size'\], got \['area'\]"):
        ConstrainedCompositeLoss({"size": InequalityConstraintLoss()}, ["area"])
    with pytest.raises(TypeError, match="watched term 'ce'"):
        ConstrainedCompositeLoss({"ce": torch.nn.CrossEntropyLoss()}, ["ce"])
    with pytest.raises(ValueError, match=r"method must be one of .*got 'barrier'"):
        build_two_circles_loss("barrier", 64)
    with pytest.raises(ValueError, match="num_pixels must be a positive integer, got 0"):
        build_two_circles_loss("penalty", 0)
    with pytest.raises(FileNotFoundError, match="train.npz"):
        run_two_circles("penalty", tmp_path / "out", tmp_path / "nothing")
    with pytest.raises(ValueError, match="data must be a folder with train.npz and val.npz"):
        run_two_circles("penalty", tmp_path / "out", [1, 2, 3])
    with pytest.raises(ValueError, match="max_epochs must be a positive integer, got 0"):
        run_two_circles("penalty", tmp_path / "out", tmp_path, max_epochs=0)


def test_summarise_history_by_hand():
    rows = [
        {"epoch": e, "dice": d, "satisfied": s, "stability": st, "seconds": sec}
        for e, d, s, st, sec in [
            (1, 0.1, 0.2, math.nan, 3.0),
            (2, 0.5, 0.4, 1.0, 1.0),
            (3, 0.7, 0.6, 0.5, 2.0),
            (4, 0.3, 0.8, math.nan, 5.0),
        ]
    ]
    summary = summarise_history(rows, last=3)
    assert summary["dice_mean"] == pytest.approx(0.5)
    assert summary["dice_std"] == pytest.approx(math.sqrt((0.0 + 0.04 + 0.04) / 3))
    assert summary["dice_best"] == 0.7 and summary["dice_last"] == 0.3
    assert summary["satisfied"] == 0.8
    assert summary["stability"] == pytest.approx(0.75)  # NaN epochs left out
    assert summary["seconds_per_epoch"] == pytest.approx(2.5)
    with pytest.raises(ValueError, match="at least one epoch"):
        summarise_history([])
