"""EpochLossHistory: the batch-size-weighted mean loss of each epoch."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine

from wss_monai.handlers import EpochLossHistory


def run(batches, handler, epochs=1):
    engine = Engine(lambda e, batch: {"loss": batch["loss"]})
    handler.attach(engine)
    engine.run(batches, max_epochs=epochs)
    return engine


def test_weighted_by_the_items_of_each_batch():
    # batch sizes 3, 3, 1 with mean losses 1, 2, 8: (3 + 6 + 8) / 7, not (1 + 2 + 8) / 3
    batches = [{"image": torch.zeros(n, 1), "loss": torch.tensor(v)} for n, v in ((3, 1.0), (3, 2.0), (1, 8.0))]
    handler = EpochLossHistory()
    engine = run(batches, handler, epochs=2)
    assert handler.history == pytest.approx([17 / 7, 17 / 7])
    assert engine.state.metrics["loss"] == pytest.approx(17 / 7)


def test_reset_each_epoch_and_custom_names():
    losses = iter([1.0, 3.0, 5.0, 7.0])
    engine = Engine(lambda e, batch: (next(losses), batch))
    handler = EpochLossHistory("train_loss", loss_transform=lambda out: out[0], batch_size_transform=len)
    handler.attach(engine)
    engine.run([[0, 0], [0]], max_epochs=2)
    assert handler.history == pytest.approx([(2 * 1 + 3) / 3, (2 * 5 + 7) / 3])
    assert engine.state.metrics["train_loss"] == pytest.approx(17 / 3)


def test_decollated_batches_and_outputs():
    # a MONAI engine with decollate=True: lists of per-item dicts, every item carrying the batch's loss
    batches = [[{"image": torch.zeros(1)}] * 2, [{"image": torch.zeros(1)}]]
    engine = Engine(lambda e, batch: [{"loss": 4.0 if len(batch) == 2 else 1.0}] * len(batch))
    handler = EpochLossHistory()
    handler.attach(engine)
    engine.run(batches, max_epochs=1)
    assert handler.history == pytest.approx([(2 * 4 + 1) / 3])
