"""A MONAI ``SupervisedTrainer`` whose loss sees the whole batch, not only a label tensor.

Weak losses need more than the network output and one target: a scribble map, size bounds, the
volume a slice came from. :class:`WeakSupervisionTrainer` keeps MONAI's iteration logic and events
(``FORWARD_COMPLETED``, ``LOSS_COMPLETED``, ``BACKWARD_COMPLETED``, ``MODEL_COMPLETED``), so that
every standard handler works, and changes two things:

- :class:`BatchDictPrepare` hands the loss the batch dictionary (tensors moved to the device) in
  place of the label;
- a loss that returns a dict (:class:`wss_monai.losses.CompositeLoss`) has its total optimised and
  each named term stored in the engine output as ``"loss/<name>"`` (a detached scalar, so MONAI's
  decollation keeps it) for the loggers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from monai.engines import SupervisedTrainer
from torch import nn

__all__ = ["BatchDictPrepare", "WeakSupervisionTrainer", "LOSS_TERM_PREFIX"]

LOSS_TERM_PREFIX = "loss/"
"""Each named term of a dict-returning loss is stored in the engine output as ``"loss/<name>"``."""


class BatchDictPrepare:
    """``prepare_batch`` returning ``(batch[image_key], batch)`` with every tensor on the device."""

    def __init__(self, image_key: str = "image") -> None:
        self.image_key = image_key

    def __call__(self, batchdata: Mapping, device: Any = None, non_blocking: bool = False, **kwargs: Any):
        if not isinstance(batchdata, Mapping):
            raise TypeError(f"a weak-supervision batch must be a dictionary, got {type(batchdata).__name__}")
        if self.image_key not in batchdata:
            raise KeyError(f"batch has no {self.image_key!r} key; keys present: {sorted(batchdata)}")
        batch = {
            key: value.to(device=device, non_blocking=non_blocking, **kwargs)
            if isinstance(value, torch.Tensor)
            else value
            for key, value in batchdata.items()
        }
        return batch[self.image_key], batch


class _RecordingLoss(nn.Module):
    """Calls the user's loss with ``(pred, batch)``, records its named terms on the engine, returns the total."""

    def __init__(self, loss: nn.Module, trainer: WeakSupervisionTrainer) -> None:
        super().__init__()
        self.loss = loss
        self._trainer = [trainer]  # a list, so the engine is not registered as a submodule

    def forward(self, pred: torch.Tensor, batch: Mapping) -> torch.Tensor:
        out = self.loss(pred, batch)
        state = self._trainer[0].state
        if isinstance(out, Mapping):
            if "loss" not in out:
                raise KeyError(f"a loss returning a dict must hold the total under 'loss'; got keys {sorted(out)}")
            if isinstance(state.output, dict):
                for name, value in out.items():
                    if name != "loss":
                        state.output[LOSS_TERM_PREFIX + name] = value.detach().float().mean()
            out = out["loss"]
        if not torch.isfinite(out).all():
            raise FloatingPointError(
                f"the training loss is {out.detach().cpu().tolist()} at iteration {state.iteration}; "
                "check the learning rate, the loss weights and the input intensities"
            )
        return out


class WeakSupervisionTrainer(SupervisedTrainer):
    """``SupervisedTrainer`` for weak supervision: ``loss_function(pred, batch_dict)``.

    Args:
        image_key: batch key of the network input.
        *args, **kwargs: as for :class:`monai.engines.SupervisedTrainer`; ``prepare_batch`` defaults to
            :class:`BatchDictPrepare`.
    """

    def __init__(self, *args: Any, image_key: str = "image", **kwargs: Any) -> None:
        kwargs.setdefault("prepare_batch", BatchDictPrepare(image_key))
        super().__init__(*args, **kwargs)
        self.loss_function = _RecordingLoss(self.loss_function, self)
