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

    Each term is averaged over the iterations that reported it (a watched term of
    :class:`wss_monai.losses.CompositeLoss` with ``monitor_every > 1`` reports on some only).

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
        self._counts: dict[str, int] = defaultdict(int)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._accumulate)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._write)

    def _reset(self, engine: Engine) -> None:
        self._sums.clear()
        self._counts.clear()

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
            self._counts[name] += 1

    def _reduce(self) -> dict[str, float]:
        """Each term's mean over the epoch's iterations that reported it, over every process."""
        if not is_distributed():
            return {name: total / self._counts[name] for name, total in self._sums.items()}
        names = list(dict.fromkeys(name for names in all_gather_object(list(self._sums)) for name in names))
        local = [self._sums.get(name, 0.0) for name in names] + [self._counts.get(name, 0) for name in names]
        totals = all_reduce_sum(torch.tensor(local, dtype=torch.float64)).tolist()
        return {name: totals[i] / totals[len(names) + i] for i, name in enumerate(names)}

    def _write(self, engine: Engine) -> None:
        means = self._reduce()
        if not means:
            return
        for name, value in means.items():
            self.history[name].append(value)
            engine.state.metrics[f"loss/{name}"] = value
            if self.summary_writer is not None:
                self.summary_writer.add_scalar(f"loss/{name}", value, engine.state.epoch)
        text = "  ".join(f"{name} {value:.4g}" for name, value in means.items())
        self.logger.info("epoch %d/%s: %s", engine.state.epoch, engine.state.max_epochs, text)
