import logging

import pytest
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver

from wss_monai.handlers.boundary_schedule import BoundaryWeightSchedule
from wss_monai.losses.boundary import BoundaryLoss
from wss_monai.losses.composite import CompositeLoss
from wss_monai.losses.partial_ce import PartialCrossEntropyLoss


def _loss() -> CompositeLoss:
    return CompositeLoss({"regional": PartialCrossEntropyLoss(), "boundary": BoundaryLoss()})


def _weights_per_epoch(loss: CompositeLoss, schedule: BoundaryWeightSchedule, epochs: int) -> list[tuple]:
    """Run a do-nothing engine and record the weights each epoch trains with."""
    seen = []
    engine = Engine(lambda e, b: None)
    engine.add_event_handler(
        Events.EPOCH_STARTED, lambda e: seen.append((loss.weights["regional"], loss.weights["boundary"]))
    )
    schedule.attach(engine)
    engine.run(range(2), max_epochs=epochs)
    return seen


def test_rebalance_over_epochs():
    loss = _loss()
    schedule = BoundaryWeightSchedule(loss, mode="rebalance")
    seen = _weights_per_epoch(loss, schedule, 4)
    expected = [(0.99, 0.01), (0.98, 0.02), (0.97, 0.03), (0.96, 0.04)]
    for (r, b), (er, eb) in zip(seen, expected):
        assert r == pytest.approx(er) and b == pytest.approx(eb) and r + b == pytest.approx(1.0)
    assert schedule.epochs == 4 and schedule.alpha == pytest.approx(0.05)


def test_rebalance_reaches_alpha_max_and_stays():
    loss = _loss()
    schedule = BoundaryWeightSchedule(loss, mode="rebalance", alpha0=0.5, step=0.3, alpha_max=0.9)
    seen = _weights_per_epoch(loss, schedule, 4)
    assert [b for _, b in seen] == pytest.approx([0.5, 0.8, 0.9, 0.9])
    assert [r for r, _ in seen] == pytest.approx([0.5, 0.2, 0.1, 0.1])
    # the default schedule ends with the boundary term alone after 99 epochs, without drift
    long = BoundaryWeightSchedule(_loss())
    long.epochs = 150
    assert long.weights() == (0.0, 1.0)
    long.epochs = 98
    assert long.weights() == pytest.approx((0.01, 0.99), abs=1e-12)


def test_increase_over_epochs():
    loss = _loss()
    schedule = BoundaryWeightSchedule(loss, mode="increase", alpha0=0.01, step=0.5, alpha_max=1.2)
    seen = _weights_per_epoch(loss, schedule, 4)
    assert [r for r, _ in seen] == [1.0] * 4
    assert [b for _, b in seen] == pytest.approx([0.01, 0.51, 1.01, 1.2])


def test_constant_keeps_alpha():
    loss = _loss()
    schedule = BoundaryWeightSchedule(loss, mode="constant", alpha0=0.3)
    seen = _weights_per_epoch(loss, schedule, 3)
    assert seen == [(1.0, 0.3)] * 3


def test_composite_total_uses_the_scheduled_weights():
    loss = _loss()
    schedule = BoundaryWeightSchedule(loss, mode="rebalance", alpha0=0.2, step=0.1)
    engine = type("E", (), {"state": type("S", (), {"epoch": 1})()})()
    schedule(engine)  # alpha 0.3
    logits = torch.randn(1, 2, 4, 4)
    batch = {"scribble": torch.randint(-1, 2, (1, 1, 4, 4)), "dist_map": torch.randn(1, 1, 4, 4)}
    out = loss(logits, batch)
    assert out["loss"].item() == pytest.approx(0.7 * out["regional"].item() + 0.3 * out["boundary"].item(), rel=1e-6)


def test_logs_and_writes_alpha(caplog):
    class Writer:
        def __init__(self):
            self.scalars = []

        def add_scalar(self, tag, value, step):
            self.scalars.append((tag, value, step))

    writer = Writer()
    schedule = BoundaryWeightSchedule(_loss(), mode="increase", summary_writer=writer)
    engine = type("E", (), {"state": type("S", (), {"epoch": 1})()})()
    with caplog.at_level(logging.INFO, logger="wss_monai.boundary_schedule"):
        schedule(engine)
    assert "epoch 1: boundary weight 0.02, regional weight 1 (increase)" in caplog.text
    assert writer.scalars == [("boundary/alpha", pytest.approx(0.02), 1)]


def test_checkpoint_round_trip(tmp_path):
    loss = _loss()
    schedule = BoundaryWeightSchedule(loss, mode="rebalance", alpha0=0.05, step=0.02)
    trainer = Engine(lambda e, b: None)
    schedule.attach(trainer)
    saver = Checkpoint(
        {"boundary_schedule": schedule, "trainer": trainer}, DiskSaver(str(tmp_path), require_empty=False), n_saved=1
    )
    trainer.add_event_handler(Events.EPOCH_COMPLETED, saver)
    trainer.run(range(2), max_epochs=3)
    assert loss.weights["boundary"] == pytest.approx(0.11)
    # a new run with default arguments resumes the saved schedule
    loss2 = _loss()
    schedule2 = BoundaryWeightSchedule(loss2, mode="rebalance")
    assert loss2.weights["boundary"] == pytest.approx(0.01)
    state = torch.load(saver.last_checkpoint, weights_only=False)
    Checkpoint.load_objects({"boundary_schedule": schedule2}, state)
    assert schedule2.epochs == 3 and schedule2.step == 0.02 and schedule2.alpha0 == 0.05
    assert loss2.weights == pytest.approx(loss.weights)
    engine = type("E", (), {"state": type("S", (), {"epoch": 4})()})()
    schedule(engine)
    schedule2(engine)
    assert loss2.weights == pytest.approx(loss.weights) and loss2.weights["boundary"] == pytest.approx(0.13)
    # the plain state dict round-trips too, and a checkpoint of another mode is refused
    assert BoundaryWeightSchedule(_loss(), mode="rebalance").state_dict()["alpha"] == 0.01
    with pytest.raises(ValueError, match="the checkpoint holds a 'rebalance' schedule, this handler is 'increase'"):
        BoundaryWeightSchedule(_loss(), mode="increase").load_state_dict(schedule.state_dict())


def test_bad_arguments_raise():
    with pytest.raises(TypeError, match="loss must be a CompositeLoss"):
        BoundaryWeightSchedule(BoundaryLoss())
    with pytest.raises(
        ValueError, match=r"loss has no term named \['region'\]; its terms are \['boundary', 'regional'\]"
    ):
        BoundaryWeightSchedule(_loss(), regional="region")
    with pytest.raises(ValueError, match="regional and boundary must name two different terms"):
        BoundaryWeightSchedule(_loss(), regional="boundary")
    with pytest.raises(ValueError, match=r"mode must be one of \('rebalance', 'increase', 'constant'\), got 'steal'"):
        BoundaryWeightSchedule(_loss(), mode="steal")
    with pytest.raises(ValueError, match=r"alpha_max \(0.1\) must not be below alpha0 \(0.5\)"):
        BoundaryWeightSchedule(_loss(), alpha0=0.5, alpha_max=0.1)
    with pytest.raises(ValueError, match="rebalance weighs the regional term by 1 - alpha"):
        BoundaryWeightSchedule(_loss(), mode="rebalance", alpha_max=2.0)
    with pytest.raises(ValueError, match="step must be a finite number >= 0, got -0.01"):
        BoundaryWeightSchedule(_loss(), step=-0.01)
    with pytest.raises(ValueError, match="alpha0 must be a finite number >= 0, got nan"):
        BoundaryWeightSchedule(_loss(), alpha0=float("nan"))


def test_docstring_examples_run():
    import doctest

    import wss_monai.handlers.boundary_schedule as module

    assert doctest.testmod(module).failed == 0
