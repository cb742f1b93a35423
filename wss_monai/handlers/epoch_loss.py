"""The mean training loss of each epoch, weighted by batch size, kept as a history and as an engine metric."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ignite.engine import Engine, Events

__all__ = ["EpochLossHistory"]


def _first(output: Any) -> Any:
    """MONAI engines may decollate the output into a list of per-item dicts that all carry the batch's loss."""
    return output[0] if isinstance(output, list) and output else output


class EpochLossHistory:
    """Appends ``Σ_b loss_b · n_b / Σ_b n_b`` over the iterations ``b`` of each epoch to ``self.history``.

    ``n_b`` is the number of items of iteration ``b`` (the last batch of an epoch may be smaller), so
    the value is the mean per-item loss of the epoch when the loss is a per-batch mean. The sum runs
    in Python floats. The value is also stored in ``engine.state.metrics[metric_name]``, where MONAI's
    ``StatsHandler`` and ``TensorBoardStatsHandler`` log it at the end of the epoch; attach this
    handler before them.

    Args:
        metric_name: key of the value in ``engine.state.metrics``.
        loss_transform: engine output → the iteration's scalar loss (default: ``output["loss"]``).
        batch_size_transform: engine batch → its number of items (default: the length of the first
            tensor found in the batch, or of the batch itself).

    Example:
        >>> from ignite.engine import Engine
        >>> batches = [{"loss": 1.0, "n": 2}, {"loss": 4.0, "n": 1}]
        >>> engine = Engine(lambda e, b: {"loss": b["loss"]})
        >>> history = EpochLossHistory(batch_size_transform=lambda b: b["n"])
        >>> history.attach(engine)
        >>> _ = engine.run(batches, max_epochs=1)
        >>> history.history, engine.state.metrics["loss"]
        ([2.0], 2.0)
    """

    def __init__(
        self,
        metric_name: str = "loss",
        loss_transform: Callable[[Any], Any] | None = None,
        batch_size_transform: Callable[[Any], int] | None = None,
    ) -> None:
        self.metric_name = str(metric_name)
        self.loss_transform = loss_transform or (lambda output: _first(output)["loss"])
        self.batch_size_transform = batch_size_transform or self._batch_size
        self.history: list[float] = []
        self._sum = 0.0
        self._count = 0

    @staticmethod
    def _batch_size(batch: Any) -> int:
        if isinstance(batch, dict):
            batch = next((v for v in batch.values() if hasattr(v, "shape") and len(v.shape)), batch)
        elif isinstance(batch, (list, tuple)) and batch and hasattr(batch[0], "shape"):
            batch = batch[0]
        return int(batch.shape[0]) if hasattr(batch, "shape") else len(batch)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._accumulate)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._write)

    def _reset(self, engine: Engine) -> None:
        self._sum, self._count = 0.0, 0

    def _accumulate(self, engine: Engine) -> None:
        size = int(self.batch_size_transform(engine.state.batch))
        loss = self.loss_transform(engine.state.output)
        self._sum += float(loss.detach() if hasattr(loss, "detach") else loss) * size
        self._count += size

    def _write(self, engine: Engine) -> None:
        if not self._count:
            return
        value = self._sum / self._count
        self.history.append(value)
        engine.state.metrics[self.metric_name] = value
