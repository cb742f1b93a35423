"""TimeBudget: a run fits its wall-clock budget by training fewer epochs, the LR schedule shortened to match."""

import json
import math
from pathlib import Path

import pytest
import torch
from bundle_helpers import run_bundle
from ignite.engine import Engine, Events

from wss_monai.bundle import bundle_configs, check_overrides
from wss_monai.data.phantoms import make_cardiac_phantoms
from wss_monai.handlers import TimeBudget
from wss_monai.utils.bundle_runs import finished_run


class Clock:
    """A clock that only the test moves."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _trainer(epoch_seconds, budget, max_epochs=100, lr_scheduler=None, min_epochs=1, settle=0.1):
    """An engine of one iteration per epoch whose epochs take the given seconds on a fake clock."""
    clock = Clock()
    durations = list(epoch_seconds)

    def step(engine, batch):
        clock.now += durations[min(engine.state.epoch - 1, len(durations) - 1)]

    trainer = Engine(step)
    if lr_scheduler is not None:
        trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: lr_scheduler.step())
    TimeBudget(budget, lr_scheduler=lr_scheduler, min_epochs=min_epochs, settle=settle, clock=clock).attach(trainer)
    state = trainer.run([0], max_epochs=max_epochs)
    return state, clock


def _cosine(lr=1.0, t_max=100):
    optimizer = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=lr)
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=t_max)


def test_epochs_that_fit_are_trained_and_the_run_ends_within_budget():
    # 10 s epochs, 95 s: after epoch 2, 75 s are left -> 7 more whole epochs -> 9 in all, 90 s
    state, clock = _trainer([10.0], budget=95.0)
    assert state.epoch == state.max_epochs == 9
    assert clock.now == pytest.approx(90.0)


def test_a_slow_first_epoch_is_left_out_of_the_estimate():
    # the first epoch takes 30 s (one-off costs), the others 5 s: 100 s hold 1 + 14 epochs exactly
    state, clock = _trainer([30.0, 5.0], budget=100.0)
    assert state.epoch == 15
    assert clock.now == pytest.approx(100.0)
    # a budget that max_epochs fits into changes nothing
    state, clock = _trainer([30.0, 5.0], budget=100.0, max_epochs=12)
    assert state.epoch == state.max_epochs == 12


def test_slow_epochs_at_the_start_do_not_cut_the_run_for_good():
    # 1.8 s epochs, but the first takes 3 s and the third 4 s (other runs starting on the GPU): budget 330 s.
    # Estimated at epoch 3 this would stop the run after 113 epochs (212 s); once 10 % of the budget has
    # passed (epoch 17, 34 s) it fits 169 epochs (307.6 s)
    state, clock = _trainer([3.0, 1.8, 4.0, 1.8], budget=330.0, max_epochs=200)
    assert state.epoch == 169
    assert clock.now == pytest.approx(3.0 + 1.8 + 4.0 + 1.8 * 166)
    state, _ = _trainer([3.0, 1.8, 4.0, 1.8], budget=330.0, max_epochs=200, settle=0.0)
    assert state.epoch == 113


def test_budget_never_cut_below_min_epochs_or_the_epoch_done():
    state, clock = _trainer([10.0], budget=1.0, min_epochs=3)
    assert state.epoch == 3 and clock.now == pytest.approx(30.0)
    state, _ = _trainer([10.0], budget=1.0)
    assert state.epoch == 1


def test_lr_schedule_is_shortened_to_the_new_length_and_ends_at_zero():
    schedule = _cosine(lr=1.0, t_max=100)
    state, _ = _trainer([10.0], budget=95.0, lr_scheduler=schedule)
    assert schedule.T_max == state.max_epochs == 9
    # CosineAnnealingLR's closed form at step 9 of 9: (1 + cos(pi)) / 2 = 0
    assert schedule.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    # ... and at every step after the change it follows the closed form of the 9-epoch cosine
    schedule = _cosine(lr=1.0, t_max=100)
    lrs = []
    clock = Clock()
    trainer = Engine(lambda engine, batch: setattr(clock, "now", clock.now + 10.0))
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: schedule.step())
    TimeBudget(95.0, lr_scheduler=schedule, clock=clock).attach(trainer)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: lrs.append(schedule.optimizer.param_groups[0]["lr"]))
    trainer.run([0], max_epochs=100)
    # epoch 1 on the 100-epoch cosine; from epoch 2 (when the budget is first estimated) on the 9-epoch one
    expected = [(1 + math.cos(math.pi / 100)) / 2] + [(1 + math.cos(math.pi * e / 9)) / 2 for e in range(2, 10)]
    assert lrs == pytest.approx(expected, abs=1e-9)


def test_a_schedule_without_a_length_is_refused_by_name():
    optimizer = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=1.0)
    schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.9)
    with pytest.raises(ValueError, match=r"ExponentialLR has none of \('T_max', 'total_iters'\)"):
        _trainer([10.0], budget=15.0, lr_scheduler=schedule)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"seconds": 0}, r"seconds must be a positive number .* got 0"),
        ({"seconds": float("inf")}, r"seconds must be a positive number .* got inf"),
        ({"seconds": "600"}, r"seconds must be a positive number .* got '600'"),
        ({"seconds": 10, "min_epochs": 0}, r"min_epochs must be an integer >= 1, got 0"),
        ({"seconds": 10, "settle": 1.0}, r"settle must be a share of the budget in \[0, 1\), got 1.0"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TimeBudget(**kwargs)


def test_override_must_be_a_positive_number_or_null():
    files = {"time_budget_minutes": None}
    check_overrides({"time_budget_minutes": 5.5}, files)
    check_overrides({"time_budget_minutes": None}, files)
    with pytest.raises(ValueError, match=r"--time_budget_minutes must be a positive number or null, got -1"):
        check_overrides({"time_budget_minutes": -1}, files)
    with pytest.raises(ValueError, match=r"--time_budget_minutes must be a positive number or null, got 'soon'"):
        check_overrides({"time_budget_minutes": "soon"}, files)


@pytest.mark.slow
def test_bundle_run_with_a_tiny_budget_ends_after_one_whole_epoch(tmp_path):
    """... and its resumable checkpoint is weights-only loadable, so ``run inferring`` reads it (as benchmarks do)."""
    data = make_cardiac_phantoms(tmp_path / "acdc", num_patients=4, seed=5, shape=(32, 32), num_slices=(3, 3))
    out = tmp_path / "run"
    result = run_bundle(
        "training",
        bundle_configs("acdc"),
        tmp_path,
        dataset_dir=data,
        output_dir=out,
        max_epochs=5,
        num_validation=1,
        time_budget_minutes=1e-4,  # 6 ms: the first epoch alone takes longer
    )
    state = torch.load(out / "models" / "model_final.pt", map_location="cpu", weights_only=False)
    assert state["trainer"]["max_epochs"] == 1
    assert state["lr_scheduler"]["T_max"] == 1
    assert finished_run(out)
    assert (out / "models" / "model.pt").is_file()  # the last validation ran although 1 < val_interval
    assert "training ends after epoch 1 instead of 5" in result.stdout + result.stderr
    torch.load(out / "models" / "model_final.pt", map_location="cpu", weights_only=True)  # numpy states included
    images = tmp_path / "images"
    images.mkdir()
    case = json.loads((out / "datalist.json").read_text())["validation"][0]
    (images / Path(case["image"]).name).symlink_to(case["image"])
    run_bundle(
        "inferring",
        bundle_configs("acdc", kind="inference"),
        tmp_path,
        base={},
        run_dir=out,
        input_dir=images,
        output_dir=tmp_path / "predictions",
        ckpt_path=out / "models" / "model_final.pt",
    )
    assert len(list((tmp_path / "predictions").glob("*_seg.nii.gz"))) == 1
