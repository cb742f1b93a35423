"""Dual ascent for the Lagrangian constraint losses: one multiplier step per epoch, saved in checkpoints.

The constraint values of an epoch are recorded by a forward hook on each Lagrangian loss term: after
the term's ``forward`` (which itself changes no multiplier), the hook takes the constraint values that
forward computed (``recorded_values()``, detached) and hands them to the term's ``accumulate_duals``.
It records only when the logits require a gradient, i.e. during training, not in an evaluator running
the same loss under ``no_grad``. A module without ``recorded_values`` gets ``constraint_values``
evaluated again on the detached logits, under ``torch.no_grad()``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
from ignite.engine import Engine, Events
from torch import nn

from wss_monai.utils.distributed import all_gather_object, is_distributed

__all__ = ["DualAscentHandler", "hook_constraint_values"]

LAGRANGIAN_MODES = ("lagrangian", "relu_lagrangian")


def hook_constraint_values(module: nn.Module, callback: Callable[[torch.Tensor, torch.Tensor], None]):
    """Calls ``callback(z, ids)`` with ``module.constraint_values(logits, batch)`` after each training forward.

    ``module`` is called as ``module(logits, batch)``; only when ``logits.requires_grad`` with
    gradients enabled. The values are those the forward computed (``module.recorded_values()``, when
    the module keeps them), else computed again on ``logits.detach()`` under ``torch.no_grad()``.
    Returns the hook handle (``handle.remove()`` detaches it).
    """
    if not callable(getattr(module, "constraint_values", None)):
        raise TypeError(f"{type(module).__name__} has no constraint_values(logits, batch) method")

    def hook(mod, args, kwargs, output):
        logits = args[0] if args else kwargs.get("logits")
        batch = args[1] if len(args) > 1 else kwargs.get("batch")
        if not isinstance(logits, torch.Tensor) or not (logits.requires_grad and torch.is_grad_enabled()):
            return
        recorded = mod.recorded_values() if callable(getattr(mod, "recorded_values", None)) else None
        if recorded is None:
            with torch.no_grad():
                recorded = mod.constraint_values(logits.detach(), batch)
        z, ids = recorded
        callback(z.detach(), ids)

    return module.register_forward_hook(hook, with_kwargs=True)


class DualAscentHandler:
    """One dual-ascent step per epoch on every Lagrangian term of the given losses.

    At ``EPOCH_COMPLETED`` each term in mode ``"lagrangian"`` applies ``λ ← max(0, λ + step · z̄)``
    and each term in mode ``"relu_lagrangian"`` ``λ ← λ + step · mean max(0, z)`` (Nandwani et al.
    2019), with ``z̄`` the mean of the constraint values recorded during the epoch (normally one
    evaluation per item); see :class:`wss_monai.losses.inequality.InequalityConstraintLoss`. The
    accumulators are cleared at ``EPOCH_STARTED``. ``state_dict`` holds every term's multipliers, so
    passing the handler in a ``CheckpointSaver``'s ``save_dict`` resumes them.

    In a distributed run (``torchrun``) each process records the constraints of its own batches; before
    the step the accumulators of all processes are gathered and summed in rank order
    (``merge_duals`` of the term), so every process takes the same step and holds the same multipliers.

    Args:
        loss_modules: a loss (e.g. a ``CompositeLoss``) or several; their submodules in a Lagrangian
            mode are used, the others left alone.
        step: dual step size η (> 0).
        summary_writer: optional TensorBoard ``SummaryWriter``: ``lagrangian/<i>/mean``, ``/max`` and
            ``/active`` (share of multipliers > 0) per term.
    """

    def __init__(
        self,
        loss_modules: nn.Module | Sequence[nn.Module],
        step: float = 1e-2,
        summary_writer=None,
        name: str = "wss_monai.lagrangian",
    ) -> None:
        if not step > 0:
            raise ValueError(f"step must be positive, got {step}")
        roots = [loss_modules] if isinstance(loss_modules, nn.Module) else list(loss_modules)
        self.terms = [m for root in roots for m in root.modules() if getattr(m, "mode", None) in LAGRANGIAN_MODES]
        if not self.terms:
            raise ValueError(f"no Lagrangian loss term (a module with mode in {LAGRANGIAN_MODES}) was given")
        self.step = float(step)
        self.summary_writer = summary_writer
        self.logger = logging.getLogger(name)
        self._handles: list = []

    def attach(self, engine: Engine) -> None:
        if not self._handles:
            self._handles = [hook_constraint_values(term, term.accumulate_duals) for term in self.terms]
        engine.add_event_handler(Events.EPOCH_STARTED, self.reset)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def detach(self) -> None:
        """Removes the forward hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def reset(self, engine: Engine | None = None) -> None:
        for term in self.terms:
            term.reset_duals()

    def __call__(self, engine: Engine) -> None:
        epoch = engine.state.epoch
        if is_distributed():
            gathered = all_gather_object([term.dual_accumulator() for term in self.terms])  # [rank][term]
            for i, term in enumerate(self.terms):
                term.merge_duals([parts[i] for parts in gathered])
        for i, term in enumerate(self.terms):
            updated = term.dual_step(self.step)
            lam = term.multipliers
            mean = float(lam.mean()) if lam.numel() else 0.0
            peak = float(lam.max()) if lam.numel() else 0.0
            active = float((lam > 0).float().mean()) if lam.numel() else 0.0
            self.logger.info(
                "epoch %d: %s term %d: %d constraints stepped, λ mean %.4g max %.4g, %.1f%% > 0",
                epoch, term.mode, i, updated, mean, peak, 100 * active,
            )  # fmt: skip
            if self.summary_writer is not None:
                self.summary_writer.add_scalar(f"lagrangian/{i}/mean", mean, epoch)
                self.summary_writer.add_scalar(f"lagrangian/{i}/max", peak, epoch)
                self.summary_writer.add_scalar(f"lagrangian/{i}/active", active, epoch)

    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "terms": [{"dual_keys": t.dual_keys.clone(), "multipliers": t.multipliers.clone()} for t in self.terms],
        }

    def load_state_dict(self, state: dict) -> None:
        terms = state["terms"]
        if len(terms) != len(self.terms):
            raise ValueError(f"the checkpoint holds {len(terms)} Lagrangian terms, this handler has {len(self.terms)}")
        self.step = float(state["step"])
        for term, saved in zip(self.terms, terms):
            term.dual_keys = saved["dual_keys"].to(term.dual_keys.device, torch.long).clone()
            term.multipliers = saved["multipliers"].to(term.multipliers.device, term.multipliers.dtype).clone()
            term.reset_duals()
