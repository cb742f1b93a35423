"""Weighted sums of named loss terms, each reported on its own."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from wss_monai.losses.base import WeakLoss

__all__ = ["CompositeLoss", "TargetLoss"]


class TargetLoss(WeakLoss):
    """Adapts a MONAI loss ``loss(logits, target)`` to the batch interface by reading ``batch[target_key]``.

    Used for full supervision (e.g. ``DiceCELoss(to_onehot_y=True, softmax=True)`` on ``"label"``),
    so that MONAI's losses are reused, not rewritten.
    """

    def __init__(self, loss: nn.Module, target_key: str = "label") -> None:
        super().__init__()
        self.loss, self.target_key = loss, target_key

    def forward(self, logits: torch.Tensor, batch: Mapping) -> torch.Tensor:
        target = self.read(batch, self.target_key).to(logits.device)
        return self.loss(logits, target)


def _disabled(spec) -> bool:
    """Whether a term of :class:`CompositeLoss` is a disabled config component (its module left out)."""
    if isinstance(spec, Mapping):
        return spec.get("loss") is None and set(spec) <= {"loss", "weight"}
    return spec is None


class CompositeLoss(nn.Module):
    """``L = Σ_i w_i L_i(logits, batch)`` over named terms, returning every term next to the total.

    Args:
        terms: name → loss term, or name → ``{"loss": term, "weight": w}``. A term is any module
            called as ``term(logits, batch)`` and returning a scalar. A term whose module is a
            config component with ``_disabled_: true`` (e.g. a variant a recipe did not choose) is
            left out: given as ``None``, or as a mapping with ``"loss": None`` or a weight alone.
        monitor_every: a term of weight 0 is only watched: it is computed without gradient, left
            out of the total, and only on every ``monitor_every``-th call (e.g. 10 for an energy
            that costs a tenth of a training step); on the other calls it is absent from the
            output. The weight is read at every call, so a term a schedule ramps up from 0 joins
            the total when its weight does.

    Returns:
        A dict with ``"loss"`` (the weighted total, differentiable) and each term's unweighted value
        under its name, so a person can see in the logs which term drives training. A term may
        return a dict: its ``"loss"`` is the term's value and every other entry a value to log,
        reported (detached) as ``"<term>_<entry>"`` (e.g. ``adm_proposal_energy``).

    Example:
        >>> import torch
        >>> from wss_monai.losses import PartialCrossEntropyLoss
        >>> loss = CompositeLoss({"pce": {"loss": PartialCrossEntropyLoss(), "weight": 2.0}})
        >>> out = loss(torch.zeros(1, 2, 2, 2), {"scribble": torch.tensor([[[[0, 1], [-1, -1]]]])})
        >>> round(out["loss"].item(), 4), round(out["pce"].item(), 4)
        (1.3863, 0.6931)
    """

    def __init__(self, terms: Mapping[str, nn.Module | Mapping], monitor_every: int = 1) -> None:
        super().__init__()
        if isinstance(monitor_every, bool) or not isinstance(monitor_every, int) or monitor_every < 1:
            raise ValueError(f"monitor_every must be a positive integer, got {monitor_every!r}")
        self.monitor_every, self._calls = monitor_every, 0
        self.always_evaluated: set[str] = set()  # terms run with gradient at every call even at weight 0
        terms = {name: spec for name, spec in terms.items() if not _disabled(spec)}
        if not terms:
            raise ValueError("terms must name at least one loss term")
        self.terms = nn.ModuleDict()
        self.weights: dict[str, float] = {}
        for name, spec in terms.items():
            if name == "loss":
                raise ValueError("'loss' is reserved for the total; choose another term name")
            if isinstance(spec, Mapping):
                unknown = set(spec) - {"loss", "weight"}
                if "loss" not in spec or unknown:
                    raise ValueError(
                        f"term {name!r} must be a module or {{'loss': ..., 'weight': ...}}, got keys {sorted(spec)}"
                    )
                module, weight = spec["loss"], float(spec.get("weight", 1.0))
            else:
                module, weight = spec, 1.0
            if not isinstance(module, nn.Module):
                raise TypeError(f"term {name!r} must be a torch module, got {type(module).__name__}")
            self.terms[name] = module
            self.weights[name] = weight

    def forward(self, logits: torch.Tensor, batch: Mapping) -> dict[str, torch.Tensor]:
        values, extras = {}, {}
        watch = self._calls % self.monitor_every == 0
        self._calls += 1
        for name, term in self.terms.items():
            if self.weights[name] != 0 or name in self.always_evaluated:
                value = term(logits, batch)
            elif watch:
                with torch.no_grad():
                    value = term(logits, batch)
            else:
                continue
            if isinstance(value, Mapping):
                if "loss" not in value:
                    raise KeyError(f"term {name!r} returned a dict without 'loss'; keys {sorted(value)}")
                extras.update({f"{name}_{k}": v.detach() for k, v in value.items() if k != "loss"})
                value = value["loss"]
            values[name] = value
        active = [self.weights[name] * value.mean() for name, value in values.items() if self.weights[name] != 0]
        total = sum(active) if active else (logits * 0).sum()  # still a graph: a step with zero gradients
        return {"loss": total, **values, **extras}
