import csv
import math

import pytest
import torch
from ignite.engine import Engine
from torch import nn

from wss_monai.handlers.constraint_monitor import ConstraintMonitor
from wss_monai.losses.inequality import InequalityConstraintLoss

A, B, C = 10, 11, 12  # three constraint ids

# epoch → list of iterations, each (ids, z); z ≤ 0 holds
SCRIPT = {
    1: [([A, B], [-1.0, 0.0]), ([C], [2.0])],  # satisfied {A, B}
    2: [([A], [0.5]), ([B, C], [-3.0, -1.0])],  # satisfied {B, C}: of {A, B}, only B still holds
    3: [([A, B, C], [-1.0, -1.0, -1.0]), ([], [])],  # satisfied {A, B, C}: B and C still hold
}


class ScriptedLoss(nn.Module):
    """A stand-in loss whose constraint values come from the batch: no network, no softmax."""

    def forward(self, logits, batch):
        return logits.sum() * 0

    def constraint_values(self, logits, batch):
        return torch.tensor(batch["z"]), torch.tensor(batch["ids"])


class Writer:
    def __init__(self):
        self.scalars = []

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))


def _run(monitor, loss):
    def step(engine, _):
        ids, z = SCRIPT[engine.state.epoch][(engine.state.iteration - 1) % 2]
        loss(torch.zeros(1, requires_grad=True), {"z": z, "ids": ids})
        loss(torch.zeros(1), {"z": [5.0] * len(ids), "ids": ids})  # no gradient: not recorded

    engine = Engine(step)
    monitor.attach(engine)
    engine.run([0, 1], max_epochs=3, epoch_length=2)
    return engine


def test_scripted_sequence_satisfied_share_and_stability(tmp_path):
    loss, writer = ScriptedLoss(), Writer()
    monitor = ConstraintMonitor(loss, output_dir=tmp_path / "run", summary_writer=writer)
    engine = _run(monitor, loss)
    rows = monitor.history
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert [r["satisfied"] for r in rows] == pytest.approx([2 / 3, 2 / 3, 1.0])
    assert math.isnan(rows[0]["stability"])
    assert rows[1]["stability"] == pytest.approx(0.5)  # {A, B} → {B, C}
    assert rows[2]["stability"] == pytest.approx(1.0)  # {B, C} → {A, B, C}
    assert engine.state.metrics["constraints/stability"] == pytest.approx(1.0)
    with open(tmp_path / "run" / "constraints.csv") as f:
        table = list(csv.DictReader(f))
    assert [float(r["stability"]) for r in table[1:]] == pytest.approx([0.5, 1.0])
    assert list(table[0]) == ["epoch", "satisfied", "stability"] and table[0]["stability"] == "nan"
    tags = [(tag, step) for tag, _, step in writer.scalars]
    assert ("constraints/satisfied", 1) in tags and ("constraints/stability", 1) not in tags
    assert ("constraints/stability", 2) in tags


def test_record_directly_last_value_counts_and_unseen_constraints_are_left_out():
    monitor = ConstraintMonitor(ScriptedLoss())
    monitor.record(torch.tensor([-1.0, -1.0, -1.0]), torch.tensor([A, B, C]))
    assert monitor.end_epoch(1)["satisfied"] == 1.0
    monitor.record(torch.tensor([-1.0, 1.0]), torch.tensor([A, A]))  # A: last value violated
    row = monitor.end_epoch(2)
    assert row["satisfied"] == 0.0 and row["stability"] == 0.0  # B, C not seen again: not counted
    state = monitor.state_dict()
    resumed = ConstraintMonitor(ScriptedLoss())
    resumed.load_state_dict(state)
    resumed.record(torch.tensor([-1.0]), torch.tensor([A]))
    assert math.isnan(resumed.end_epoch(3)["stability"])  # nothing held at epoch 2
    assert len(resumed.history) == 3 and monitor.write_csv() is None


def test_monitor_on_the_inequality_loss_and_errors():
    loss = InequalityConstraintLoss(function="size", mode="penalty")
    monitor = ConstraintMonitor(loss)
    batch = {
        "bounds": torch.tensor([[[0.0, 16.0], [2.0, 12.0]], [[0.0, 16.0], [2.0, 5.0]]]),
        "volume_index": torch.tensor([0, 0]),
        "slice_index": torch.tensor([0, 1]),
    }
    engine = Engine(lambda e, b: loss(torch.zeros(2, 2, 4, 4, requires_grad=True), batch))
    monitor.attach(engine)
    engine.run([0], max_epochs=1)
    assert monitor.history[0]["satisfied"] == pytest.approx(3 / 4)  # item 1's upper bound 5 < 8
    with pytest.raises(TypeError, match="has no constraint_values"):
        ConstraintMonitor(nn.Identity())
    with pytest.raises(ValueError, match="z and ids must have the same shape"):
        monitor.record(torch.zeros(2), torch.zeros(3))
