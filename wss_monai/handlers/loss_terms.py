"""Per-epoch means of each named loss term, to the log and to TensorBoard."""

from __future__ import annotations

import logging
from collections import defaultdict

import torch
from ignite.engine import Engine, Events

from wss_monai.engines.trainer import LOSS_TERM_PREFIX
from wss_monai.utils.distributed import all_gather_object, all_reduce_sum, is_distributed

__all__ = ["LossTermsLogger"]


class LossTermsLogger:
    """Averages the ``"loss/<term>"`` entries of the engine output over each epoch and logs one line per epoch.

    Also writes ``loss/<term>`` scalars to a TensorBoard ``SummaryWriter`` when given, and keeps the
    history in ``self.history`` (``{term: [epoch means]}``) and in ``engine.state.metrics`` as
    ``loss/<term>``, where checkpoint and metric handlers can read it.

    In a distributed run (``torchrun``) the sums and counts of every process are added before the
    means are taken, so each process holds the means over all batches of the epoch.
    """

    def __init__(self, summary_writer=None, name: str = "wss_monai.loss_terms") -> None:
        self.summary_writer = summary_writer
        self.logger = logging.getLogger(name)
        self.history: dict[str, list[float]] = defaultdict(list)
        self._sums: dict[str, float] = defaultdict(float)
        self._count = 0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._accumulate)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._write)

    def _reset(self, engine: Engine) -> None:
        self._sums.clear()
        self._count = 0

    def _accumulate(self, engine: Engine) -> None:
        output = engine.state.output
        if isinstance(output, list):  # MONAI engines decollate the output: every item carries the same loss
            output = output[0] if output else {}
        if not isinstance(output, dict):
            return
        terms = {"total": float(output["loss"])} if "loss" in output else {}
        terms.update(
            {k[len(LOSS_TERM_PREFIX) :]: float(v) for k, v in output.items() if str(k).startswith(LOSS_TERM_PREFIX)}
        )
        for name, value in terms.items():
            self._sums[name] += value
        self._count += 1

    def _reduce(self) -> tuple[dict[str, float], int]:
        """The sums and count of the epoch over every process (this process's own when not distributed)."""
        if not is_distributed():
            return dict(self._sums), self._count
        names = list(dict.fromkeys(name for names in all_gather_object(list(self._sums)) for name in names))
        local = [self._sums.get(name, 0.0) for name in names] + [self._count]
        totals = all_reduce_sum(torch.tensor(local, dtype=torch.float64))
        return dict(zip(names, totals[:-1].tolist())), int(totals[-1])

    def _write(self, engine: Engine) -> None:
        sums, count = self._reduce()
        if not count:
            return
        means = {name: total / count for name, total in sums.items()}
        for name, value in means.items():
            self.history[name].append(value)
            engine.state.metrics[f"loss/{name}"] = value
            if self.summary_writer is not None:
                self.summary_writer.add_scalar(f"loss/{name}", value, engine.state.epoch)
        text = "  ".join(f"{name} {value:.4g}" for name, value in means.items())
        self.logger.info("epoch %d/%s: %s", engine.state.epoch, engine.state.max_epochs, text)
