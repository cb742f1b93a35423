import logging
import math
import re

import pytest
import torch
from ignite.engine import Events
from ignite.handlers import Checkpoint, DiskSaver
from monai.engines import IterationEvents
from torch.utils.data import DataLoader

from wss_monai.engines import WeakSupervisionTrainer
from wss_monai.handlers import LogBarrierScheduler, LossTermsLogger
from wss_monai.losses import CompositeLoss, InequalityConstraintLoss, PartialCrossEntropyLoss


def _batches(n=8):
    g = torch.Generator().manual_seed(0)
    items = []
    for _ in range(n):
        image = torch.rand(1, 8, 8, generator=g)
        scribble = torch.full((1, 8, 8), -1)
        scribble[0, :2, :2] = 0
        scribble[0, 5:, 5:] = 1
        image[0, 5:, 5:] += 1.0
        items.append({"image": image, "scribble": scribble, "bounds": torch.tensor([[0.0, 64.0], [9.0, 20.0]])})
    return DataLoader(items, batch_size=4)


def _trainer(loss, epochs=3, handlers=()):
    torch.manual_seed(0)
    net = torch.nn.Conv2d(1, 2, 3, padding=1)
    return WeakSupervisionTrainer(
        device=torch.device("cpu"),
        max_epochs=epochs,
        train_data_loader=_batches(),
        network=net,
        optimizer=torch.optim.Adam(net.parameters(), 0.05),
        loss_function=loss,
        train_handlers=list(handlers),
    )


def test_composite_loss_reports_each_term_and_weights_the_total():
    logits = torch.zeros(1, 2, 4, 4)
    batch = {"scribble": torch.tensor([[[[0, 1, -1, -1]] * 4]]), "bounds": torch.tensor([[[0.0, 16.0], [10.0, 12.0]]])}
    loss = CompositeLoss(
        {"pce": PartialCrossEntropyLoss(), "size": {"loss": InequalityConstraintLoss(mode="penalty"), "weight": 0.5}}
    )
    out = loss(logits, batch)
    assert out["size"].item() == pytest.approx(4.0)
    assert out["loss"].item() == pytest.approx(out["pce"].item() + 2.0)
    with pytest.raises(ValueError, match="'loss' is reserved"):
        CompositeLoss({"loss": PartialCrossEntropyLoss()})
    with pytest.raises(ValueError, match="must be a module or"):
        CompositeLoss({"pce": {"module": PartialCrossEntropyLoss()}})


class _CountingLoss(torch.nn.Module):
    """A term that records whether gradient was on at each call and returns the batch's call number."""

    def __init__(self):
        super().__init__()
        self.grad_modes = []

    def forward(self, logits, batch):
        self.grad_modes.append(torch.is_grad_enabled())
        return logits.sum() * 0 + len(self.grad_modes)


def test_composite_loss_watches_weight_zero_terms_every_nth_call_without_gradient():
    logits = torch.zeros(1, 2, 4, 4, requires_grad=True)
    batch = {"scribble": torch.tensor([[[[0, 1, -1, -1]] * 4]])}
    watched = _CountingLoss()
    loss = CompositeLoss({"pce": PartialCrossEntropyLoss(), "watched": {"loss": watched, "weight": 0.0}}, 3)
    outputs = [loss(logits, batch) for _ in range(7)]
    assert [("watched" in out) for out in outputs] == [True, False, False, True, False, False, True]
    assert watched.grad_modes == [False, False, False]
    assert outputs[3]["watched"].item() == 2.0  # its second call, on the 4th step
    assert all(out["loss"].item() == pytest.approx(math.log(2)) for out in outputs)  # not in the total
    # a weight set to > 0 later (a schedule) brings it into the total, with gradient, at every call
    loss.weights["watched"] = 0.5
    out = loss(logits, batch)
    assert watched.grad_modes[-1] is True and out["loss"].item() == pytest.approx(math.log(2) + 0.5 * 4)
    # a NaN in a watched term cannot reach the total; every term at weight 0 still gives a graph
    nan_loss = CompositeLoss({"only": {"loss": _NaNLoss(), "weight": 0.0}})
    out = nan_loss(logits, batch)
    out["loss"].backward()
    assert out["loss"].item() == 0.0 and torch.isnan(out["only"]) and torch.equal(logits.grad, torch.zeros_like(logits))
    with pytest.raises(ValueError, match="monitor_every must be a positive integer, got 0"):
        CompositeLoss({"pce": PartialCrossEntropyLoss()}, monitor_every=0)


class _NaNLoss(torch.nn.Module):
    def forward(self, logits, batch):
        return logits.sum() * float("nan")


def test_loss_terms_logger_averages_a_watched_term_over_the_steps_that_report_it():
    watched = _CountingLoss()
    loss = CompositeLoss({"pce": PartialCrossEntropyLoss(), "watched": {"loss": watched, "weight": 0.0}}, 2)
    logger = LossTermsLogger()
    _trainer(loss, epochs=2, handlers=[logger]).run()  # 2 batches per epoch: watched at steps 1 and 3
    assert logger.history["watched"] == [1.0, 2.0]  # one report per epoch, not halved by the other step


def test_trainer_hands_the_batch_to_the_loss_and_keeps_monai_events(caplog):
    loss = CompositeLoss(
        {"pce": PartialCrossEntropyLoss(), "size": {"loss": InequalityConstraintLoss(mode="penalty"), "weight": 1e-2}}
    )
    logger = LossTermsLogger()
    trainer = _trainer(loss, epochs=4, handlers=[logger])
    fired = {"forward": 0, "loss": 0, "backward": 0}
    trainer.add_event_handler(
        IterationEvents.FORWARD_COMPLETED, lambda e: fired.__setitem__("forward", fired["forward"] + 1)
    )
    trainer.add_event_handler(IterationEvents.LOSS_COMPLETED, lambda e: fired.__setitem__("loss", fired["loss"] + 1))
    trainer.add_event_handler(
        IterationEvents.BACKWARD_COMPLETED, lambda e: fired.__setitem__("backward", fired["backward"] + 1)
    )
    with caplog.at_level(logging.INFO, logger="wss_monai.loss_terms"):
        trainer.run()
    assert fired == {"forward": 8, "loss": 8, "backward": 8}
    assert {k for k in trainer.state.output[0] if k.startswith("loss/")} == {"loss/pce", "loss/size"}
    assert len(logger.history["pce"]) == 4 and len(logger.history["total"]) == 4
    assert logger.history["total"][-1] < logger.history["total"][0]  # it learns from the scribbles
    assert "epoch 4/4: total" in caplog.text and "pce" in caplog.text
    assert trainer.state.metrics["loss/size"] == pytest.approx(logger.history["size"][-1])


def test_trainer_names_a_missing_batch_key():
    trainer = _trainer(CompositeLoss({"pce": PartialCrossEntropyLoss(key="points")}), epochs=1)
    with pytest.raises(KeyError, match="needs the batch key 'points'"):
        trainer.run()


def test_non_finite_loss_stops_training_with_a_clear_error():
    class Exploding(torch.nn.Module):
        def forward(self, logits, batch):
            return logits.sum() * float("nan")

    with pytest.raises(FloatingPointError, match="the training loss is nan at iteration 1"):
        _trainer(Exploding(), epochs=1).run()


def test_log_barrier_schedule_and_checkpoint_resume(tmp_path):
    size = InequalityConstraintLoss(mode="log_barrier")
    loss = CompositeLoss({"pce": PartialCrossEntropyLoss(), "size": {"loss": size, "weight": 1e-2}})
    scheduler = LogBarrierScheduler(loss, t0=5.0, mu=1.1)
    assert size.t == 5.0
    trainer = _trainer(loss, epochs=3, handlers=[scheduler])
    saver = Checkpoint(
        {"log_barrier": scheduler, "trainer": trainer}, DiskSaver(str(tmp_path), require_empty=False), n_saved=1
    )
    trainer.add_event_handler(Events.EPOCH_COMPLETED, saver)
    trainer.run()
    assert size.t == pytest.approx(5.0 * 1.1**3)
    # a new run restores t from the checkpoint
    size2 = InequalityConstraintLoss(mode="log_barrier")
    scheduler2 = LogBarrierScheduler(size2, t0=5.0)
    state = torch.load(saver.last_checkpoint, weights_only=False)
    Checkpoint.load_objects({"log_barrier": scheduler2}, state)
    assert size2.t == pytest.approx(5.0 * 1.1**3) and scheduler2.t == size2.t


def test_log_barrier_schedule_reaches_1e9_and_stays_finite():
    size = InequalityConstraintLoss(mode="log_barrier")
    scheduler = LogBarrierScheduler(size, t0=5.0, mu=1.1)
    engine = type("E", (), {"state": type("S", (), {"epoch": 0})()})()
    for epoch in range(200):
        engine.state.epoch = epoch + 1
        scheduler(engine)
    assert 1e8 < size.t < 1e10
    logits = torch.randn(4, 3, 8, 8, requires_grad=True)
    bounds = torch.tensor([[0.0, 64.0], [5.0, 6.0], [0.0, 0.0]]).expand(4, 3, 2)
    value = size(logits, {"bounds": bounds})
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(logits.grad).all()


def test_log_barrier_scheduler_checks_its_arguments():
    with pytest.raises(ValueError, match="no log-barrier loss term"):
        LogBarrierScheduler(InequalityConstraintLoss(mode="penalty"))
    with pytest.raises(ValueError, match="mu must be at least 1, got 0.5"):
        LogBarrierScheduler(InequalityConstraintLoss(), mu=0.5)
    capped = LogBarrierScheduler(InequalityConstraintLoss(), t0=5.0, mu=10.0, t_max=20.0)
    engine = type("E", (), {"state": type("S", (), {"epoch": 1})()})()
    capped(engine)
    capped(engine)
    assert capped.t == 20.0


def test_resuming_a_trust_region_checkpoint_written_before_the_partial_ce_ramp(tmp_path, caplog):
    from wss_monai.handlers import LossWeightRamp
    from wss_monai.utils.config import resume

    loss = CompositeLoss({"pce": PartialCrossEntropyLoss(), "size": InequalityConstraintLoss()})
    scheduler = LogBarrierScheduler(loss, t0=5.0, mu=2.0)
    scheduler.t = 40.0
    path = tmp_path / "old.pt"
    torch.save({"log_barrier": scheduler.state_dict()}, path)
    ramp = LossWeightRamp(loss, "pce", weight=1.0, warmup=2)
    fresh = LogBarrierScheduler(loss, t0=5.0)
    with caplog.at_level(logging.WARNING):
        assert resume(path, {"log_barrier": fresh, "pce_weight_ramp": ramp})
    assert fresh.t == 40.0 and ramp.epochs == 0 and loss.weights["pce"] == 0.0
    assert re.search(r"old\.pt holds no 'pce_weight_ramp' \(written by an older version\)", caplog.text)
    with pytest.raises(KeyError, match=r"old\.pt' lacks \['other_ramp'\]"):
        resume(path, {"log_barrier": fresh, "other_ramp": ramp})
