"""Dual ascent for the Lagrangian constraint losses: the multipliers, one step per epoch, saved in checkpoints.

The multipliers live here, in one :class:`DualVariables` table per Lagrangian loss term; the term
reads its table in ``forward`` and never changes it. The constraint values of an epoch reach the
table through the term's value hook (``register_value_hook``: the values its forward computed,
detached), only when the logits require a gradient, i.e. during training, not in an evaluator
running the same loss under ``no_grad``. A module without value hooks gets ``constraint_values``
evaluated again on the detached logits, under ``torch.no_grad()``, from a forward hook.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import torch
from ignite.engine import Engine, Events
from torch import nn

from wss_monai.losses.constraints import LAGRANGIAN_MODES
from wss_monai.utils.distributed import all_gather_object, is_distributed

__all__ = ["DualAscentHandler", "DualVariables", "hook_constraint_values"]


def hook_constraint_values(module: nn.Module, callback: Callable[[torch.Tensor, torch.Tensor], None]):
    """Calls ``callback(z, ids)`` with ``module.constraint_values(logits, batch)`` after each training forward.

    ``module`` is called as ``module(logits, batch)``; only when ``logits.requires_grad`` with
    gradients enabled. A module with ``register_value_hook`` (e.g.
    :class:`wss_monai.losses.InequalityConstraintLoss`) hands over the values its forward computed;
    any other is evaluated again on ``logits.detach()`` under ``torch.no_grad()``.
    Returns the hook handle (``handle.remove()`` detaches it).
    """
    if not callable(getattr(module, "constraint_values", None)):
        raise TypeError(f"{type(module).__name__} has no constraint_values(logits, batch) method")
    if callable(getattr(module, "register_value_hook", None)):
        return module.register_value_hook(lambda z, ids: callback(z.detach(), ids))

    def hook(mod, args, kwargs, output):
        logits = args[0] if args else kwargs.get("logits")
        batch = args[1] if len(args) > 1 else kwargs.get("batch")
        if not isinstance(logits, torch.Tensor) or not (logits.requires_grad and torch.is_grad_enabled()):
            return
        with torch.no_grad():
            z, ids = mod.constraint_values(logits.detach(), batch)
        callback(z.detach(), ids)

    return module.register_forward_hook(hook, with_kwargs=True)


class DualVariables:
    """The Lagrange multipliers of one loss term, one per constraint, and the epoch accumulator of its dual step.

    A constraint is identified by an integer id ``item_key · K + local`` (``K = C'·M·2``, ``local`` the
    position in ``(C', M, 2)``; see :meth:`wss_monai.losses.InequalityConstraintLoss.constraint_values`).
    The table holds ``keys`` ``(N,)`` (sorted item keys) and ``multipliers`` ``(N, C', M, 2)``, on the
    CPU, grown on demand; an item not seen yet has the multiplier ``init``.

    Args:
        mode: ``"lagrangian"`` (``λ ← max(0, λ + η z̄)``) or ``"relu_lagrangian"``
            (``λ ← λ + η mean max(0, z)``, Nandwani et al. 2019).
        init: multiplier of a constraint not updated yet (≥ 0).

    Example:
        >>> import torch
        >>> duals = DualVariables("lagrangian")
        >>> z = torch.tensor([[[[-1.0, 2.0]]]])      # one item, one class, one moment, two sides
        >>> ids = torch.tensor([[[[0, 1]]]])
        >>> duals.accumulate(z, ids); duals.step(0.5)
        2
        >>> duals.lookup(ids).flatten().tolist()
        [0.0, 1.0]
    """

    def __init__(self, mode: str = "lagrangian", init: float = 0.0) -> None:
        if mode not in LAGRANGIAN_MODES:
            raise ValueError(f"mode must be one of {LAGRANGIAN_MODES}, got {mode!r}")
        if not init >= 0:
            raise ValueError(f"init must be non-negative, got {init}")
        self.mode, self.init = mode, float(init)
        self.keys = torch.zeros(0, dtype=torch.long)
        self.multipliers = torch.zeros(0, 0, 0, 2)
        self._sums = torch.zeros(0, 0, 0, 2)
        self._counts = torch.zeros(0, 0, 0, 2)

    def _check_layout(self, layout: tuple[int, ...]) -> None:
        if self.keys.numel() and tuple(self.multipliers.shape[1:]) != tuple(layout):
            raise ValueError(
                f"the constraint layout (C', M, 2) changed from {tuple(self.multipliers.shape[1:])} to {tuple(layout)}"
            )

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """The multipliers of the constraints ``ids`` ``(G, C', M, 2)``, on ``ids``' device; ``init`` if unseen."""
        self._check_layout(tuple(ids.shape[1:]))
        per_item = math.prod(ids.shape[1:])
        init = torch.full(ids.shape, self.init, device=ids.device)
        if not self.keys.numel() or not ids.numel():
            return init
        keys = (ids[:, 0, 0, 0] // per_item).cpu()
        rows = torch.searchsorted(self.keys, keys).clamp_max(self.keys.numel() - 1)
        found = (self.keys[rows] == keys).to(ids.device)
        values = self.multipliers[rows].to(ids.device)
        return torch.where(found.reshape(-1, 1, 1, 1), values, init)

    def _grow(self, keys: torch.Tensor, layout: tuple[int, ...]) -> torch.Tensor:
        """Rows of ``keys`` in the table, adding the unseen keys (kept sorted)."""
        keys = keys.cpu()
        if not self.keys.numel():
            self.multipliers = self.multipliers.new_zeros(0, *layout)
            self._sums = self.multipliers.new_zeros(0, *layout)
            self._counts = self.multipliers.new_zeros(0, *layout)
        new = torch.unique(keys[~torch.isin(keys, self.keys)])
        if new.numel():
            merged = torch.cat([self.keys, new])
            order = torch.argsort(merged)
            fill = self.multipliers.new_full((new.numel(), *layout), self.init)
            zeros = self.multipliers.new_zeros((new.numel(), *layout))
            self.keys = merged[order]
            self.multipliers = torch.cat([self.multipliers, fill])[order]
            self._sums = torch.cat([self._sums, zeros])[order]
            self._counts = torch.cat([self._counts, zeros])[order]
        return torch.searchsorted(self.keys, keys)

    @torch.no_grad()
    def accumulate(self, z: torch.Tensor, ids: torch.Tensor) -> None:
        """Adds constraint values ``(G, C', M, 2)`` (detached) to the epoch accumulator; unseen items join the table.

        ``z`` for ``"lagrangian"``, ``max(0, z)`` for ``"relu_lagrangian"``; :meth:`step` uses the mean
        over the evaluations of each constraint in the epoch.
        """
        if z.shape != ids.shape or z.ndim != 4 or z.shape[-1] != 2:
            raise ValueError(
                f"z and ids must both have shape (G, C', M, 2), got {tuple(z.shape)} and {tuple(ids.shape)}"
            )
        if not z.numel():
            return
        layout = tuple(z.shape[1:])
        self._check_layout(layout)
        rows = self._grow(ids[:, 0, 0, 0] // math.prod(layout), layout)
        values = z.detach().to(self._sums)
        if self.mode == "relu_lagrangian":
            values = values.clamp_min(0)
        self._sums.index_add_(0, rows, values)
        self._counts.index_add_(0, rows, torch.ones_like(values))

    @torch.no_grad()
    def step(self, step: float) -> int:
        """Applies one dual-ascent step to every constraint accumulated since the last one; returns their number.

        ``"lagrangian"``: ``λ ← max(0, λ + step · mean z)``; ``"relu_lagrangian"``:
        ``λ ← λ + step · mean max(0, z)``. The accumulator is cleared.
        """
        if not step > 0:
            raise ValueError(f"step must be positive, got {step}")
        seen = self._counts > 0
        mean = self._sums / self._counts.clamp_min(1)
        updated = self.multipliers + step * mean
        if self.mode == "lagrangian":
            updated = updated.clamp_min(0)
        self.multipliers = torch.where(seen, updated, self.multipliers)
        self.reset()
        return int(seen.sum())

    def reset(self) -> None:
        """Clears the epoch accumulator (the multipliers are kept)."""
        self._sums = torch.zeros_like(self.multipliers)
        self._counts = torch.zeros_like(self.multipliers)

    def accumulator(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The epoch accumulator as copies ``(keys (N,), sums (N, C', M, 2), counts (N, C', M, 2))``.

        What :meth:`merge` takes from each process of a distributed run.
        """
        return self.keys.clone(), self._sums.clone(), self._counts.clone()

    @torch.no_grad()
    def merge(self, parts) -> None:
        """Replaces the epoch accumulator by the sum of ``parts``, each an :meth:`accumulator` of one process.

        Every process of a distributed run calls it with the same ``parts`` in rank order, so all end
        with the same keys (the union, unseen ones at ``init``) and the same sums, added in the same
        order; the next :meth:`step` then gives every process the same multipliers. Every process
        must hold the same multipliers before (true from the start and after each step).
        """
        layouts = {tuple(sums.shape[1:]) for keys, sums, _ in parts if keys.numel()}
        if not layouts:
            return
        if len(layouts) > 1:
            raise ValueError(f"the processes hold constraint layouts {sorted(layouts)}; they must agree")
        layout = layouts.pop()
        self._check_layout(layout)
        for keys, _, _ in parts:
            if keys.numel():
                self._grow(keys, layout)
        self.reset()
        for keys, sums, counts in parts:
            if keys.numel():
                rows = torch.searchsorted(self.keys, keys.cpu())
                self._sums.index_add_(0, rows, sums.to(self._sums))
                self._counts.index_add_(0, rows, counts.to(self._counts))

    def state_dict(self) -> dict:
        return {"dual_keys": self.keys.clone(), "multipliers": self.multipliers.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.keys = state["dual_keys"].to("cpu", torch.long).clone()
        self.multipliers = state["multipliers"].to("cpu", torch.float32).clone()
        self.reset()


class DualAscentHandler:
    """One dual-ascent step per epoch on every Lagrangian term of the given losses.

    At ``EPOCH_COMPLETED`` each term in mode ``"lagrangian"`` applies ``λ ← max(0, λ + step · z̄)``
    and each term in mode ``"relu_lagrangian"`` ``λ ← λ + step · mean max(0, z)`` (Nandwani et al.
    2019), with ``z̄`` the mean of the constraint values recorded during the epoch (normally one
    evaluation per item); see :class:`wss_monai.losses.inequality.InequalityConstraintLoss`. The
    multipliers are held here, one :class:`DualVariables` per term (``self.duals``); each term gets
    its table as ``term.dual_variables`` and reads it in ``forward``. The accumulators are cleared at
    ``EPOCH_STARTED``. ``state_dict`` holds every term's multipliers, so passing the handler in a
    ``CheckpointSaver``'s ``save_dict`` resumes them.

    In a distributed run (``torchrun``) each process records the constraints of its own batches; before
    the step the accumulators of all processes are gathered and summed in rank order
    (:meth:`DualVariables.merge`), so every process takes the same step and holds the same multipliers.

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
        self.duals = [DualVariables(term.mode, getattr(term, "multiplier_init", 0.0)) for term in self.terms]
        for term, duals in zip(self.terms, self.duals):
            term.dual_variables = duals
        self.summary_writer = summary_writer
        self.logger = logging.getLogger(name)
        self._handles: list = []

    def attach(self, engine: Engine) -> None:
        if not self._handles:
            self._handles = [hook_constraint_values(t, d.accumulate) for t, d in zip(self.terms, self.duals)]
        engine.add_event_handler(Events.EPOCH_STARTED, self.reset)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def detach(self) -> None:
        """Removes the hooks that record the constraint values."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def reset(self, engine: Engine | None = None) -> None:
        for duals in self.duals:
            duals.reset()

    def __call__(self, engine: Engine) -> None:
        epoch = engine.state.epoch
        if is_distributed():
            gathered = all_gather_object([duals.accumulator() for duals in self.duals])  # [rank][term]
            for i, duals in enumerate(self.duals):
                duals.merge([parts[i] for parts in gathered])
        for i, (term, duals) in enumerate(zip(self.terms, self.duals)):
            updated = duals.step(self.step)
            lam = duals.multipliers
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
        return {"step": self.step, "terms": [duals.state_dict() for duals in self.duals]}

    def load_state_dict(self, state: dict) -> None:
        terms = state["terms"]
        if len(terms) != len(self.duals):
            raise ValueError(f"the checkpoint holds {len(terms)} Lagrangian terms, this handler has {len(self.duals)}")
        self.step = float(state["step"])
        for duals, saved in zip(self.duals, terms):
            duals.load_state_dict(saved)
