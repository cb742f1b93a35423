"""The two-circles toy experiment of the log-barrier paper, trained with the MONAI engines.

Kervadec et al., "Constrained deep networks: Lagrangian optimization via log-barrier extensions"
(EUSIPCO 2022), toy experiment: each image holds two equal discs of different intensity and the
**darker** one is the target (:mod:`wss_monai.data.toy_circles`). No pixel is labelled: a network is
trained only from two constraints per image on the soft target ``S_1``,

- size: ``0.9 τ ≤ Σ_p S_1(p) ≤ 1.1 τ`` (τ the true size, 2 constraints),
- centroid: ``c - 20 ≤ Σ_p S_1(p) c_p / Σ_p S_1(p) ≤ c + 20`` per axis (4 constraints),

handled by one of :data:`TWO_CIRCLES_METHODS`:

- ``"penalty"``: ``Σ max(0, z)²`` (Kervadec et al., MedIA 2019);
- ``"log_barrier"``: the log-barrier extension ``ψ_t(z)``, ``t = t0`` then ``×mu`` per epoch
  (:class:`wss_monai.handlers.LogBarrierScheduler`; the paper uses ``t0 = 1``, ``mu = 1.1`` here);
- ``"lagrangian"``: ``Σ λ_i z_i``, one multiplier per constraint, ``λ ← max(0, λ + η z̄)`` once per
  epoch (:class:`wss_monai.handlers.DualAscentHandler`);
- ``"relu_lagrangian"``: ``Σ λ_i max(0, z_i)``, ``λ ← λ + η mean max(0, z)`` (Nandwani et al. 2019);
- ``"proposals"``: cross-entropy to the latent ``argmin KL(P‖S)`` under the **size** bounds (Pathak
  et al. 2015, :class:`wss_monai.losses.LagrangianProposalLoss`); the library's solver handles size
  bounds only, so the centroid bounds are not used by this method;
- ``"full"``: cross-entropy on the full labels (MONAI ``DiceCELoss`` with ``lambda_dice = 0``), the
  upper reference.

Every constraint cost is summed per image, averaged over the batch and weighted by ``weight / |Ω|``
(``1e-2 / |Ω|`` as the authors' code, which divides each term by ``W·H``). Whatever the method, the
constraints are evaluated on every training forward by a :class:`wss_monai.handlers.ConstraintMonitor`
(share satisfied per epoch, and stability: the share of those satisfied at epoch ``e`` still
satisfied at ``e + 1``), and a MONAI ``SupervisedEvaluator`` computes the Dice of the target on the
validation images after every epoch.

Outputs under ``output_dir``: ``metrics.csv`` (one row per epoch: seconds of training, validation
Dice, satisfaction, stability, each loss term, ``t`` or the mean multiplier), ``constraints.csv``
(from the monitor), ``summary.json`` (settings, history and :func:`summarise_history`),
``model.pt`` (the final network weights) and ``tensorboard/``.

Example:
    >>> from wss_monai.data.toy_circles import make_two_circles
    >>> import tempfile
    >>> data = (make_two_circles(4, size=16, radius_range=(2, 3)),
    ...         make_two_circles(2, size=16, radius_range=(2, 3), first_index=4))
    >>> summary = run_two_circles("log_barrier", tempfile.mkdtemp(), data, max_epochs=1, batch_size=2,
    ...                           channels=(4, 8), strides=(2,))
    >>> summary["epochs"], 0.0 <= summary["satisfied"] <= 1.0
    (1, True)
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.engines import SupervisedEvaluator
from monai.handlers import MeanDice, ValidationHandler, from_engine
from monai.inferers import SimpleInferer
from monai.losses import DiceCELoss
from monai.networks.nets import UNet
from monai.transforms import AsDiscreted
from monai.utils import set_determinism
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter

from wss_monai.data.toy_circles import TwoCircles, TwoCirclesDataset, load_two_circles
from wss_monai.engines.trainer import WeakSupervisionTrainer
from wss_monai.handlers.constraint_monitor import ConstraintMonitor
from wss_monai.handlers.lagrangian import DualAscentHandler
from wss_monai.handlers.log_barrier import LogBarrierScheduler
from wss_monai.handlers.loss_terms import LossTermsLogger
from wss_monai.losses.composite import CompositeLoss, TargetLoss
from wss_monai.losses.inequality import InequalityConstraintLoss, LagrangianProposalLoss

__all__ = [
    "TWO_CIRCLES_METHODS",
    "ConstrainedCompositeLoss",
    "EpochRecorder",
    "build_two_circles_loss",
    "run_two_circles",
    "summarise_history",
]

logger = logging.getLogger(__name__)

TWO_CIRCLES_METHODS = ("penalty", "lagrangian", "relu_lagrangian", "proposals", "log_barrier", "full")
CONSTRAINT_TERMS = {"size": ("size_bounds", "size"), "centroid": ("centroid_bounds", "centroid")}
"""Term name → (batch key of its bounds, constraint function)."""
PROPOSAL_KEY = "proposal_bounds"


class _Handles:
    """Several hook handles removed together."""

    def __init__(self, handles: Sequence) -> None:
        self.handles = list(handles)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []


class ConstrainedCompositeLoss(CompositeLoss):
    """A :class:`wss_monai.losses.CompositeLoss` whose watched terms' constraints are seen as one set.

    ``constraint_values(logits, batch)`` concatenates the ``(z, ids)`` of every term named in
    ``watch`` (each an :class:`wss_monai.losses.InequalityConstraintLoss`), flattened per image to
    ``(G, K)`` with ``K`` the total number of constraints of an image; the ids are made disjoint
    across terms (``id · n + j`` for the ``j``-th of ``n`` watched terms). A
    :class:`wss_monai.handlers.ConstraintMonitor` on this loss therefore counts all of them, and a
    watched term may carry weight 0 to be monitored without being optimised.

    Args:
        terms: as for :class:`wss_monai.losses.CompositeLoss`.
        watch: names of the terms whose constraints are joined.
    """

    def __init__(self, terms: Mapping[str, nn.Module | Mapping], watch: Sequence[str]) -> None:
        super().__init__(terms)
        self.watch = list(watch)
        self.always_evaluated = set(self.watch)  # their value hooks need each training forward
        missing = [name for name in self.watch if name not in self.terms]
        if not self.watch or missing:
            raise ValueError(f"watch must name some of the terms {list(self.terms)}, got {list(watch)}")
        for name in self.watch:
            if not callable(getattr(self.terms[name], "constraint_values", None)):
                raise TypeError(f"watched term {name!r} ({type(self.terms[name]).__name__}) has no constraint_values")

    def _join(self, pairs: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        values = [z.flatten(1) for z, _ in pairs]
        ids = [i.flatten(1) * len(self.watch) + j for j, (_, i) in enumerate(pairs)]
        return torch.cat(values, dim=1), torch.cat(ids, dim=1)

    def constraint_values(self, logits: torch.Tensor, batch: Mapping) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z, ids)`` of every watched constraint, both ``(G, K)``; ``z ≤ 0`` where a constraint holds."""
        return self._join([self.terms[name].constraint_values(logits, batch) for name in self.watch])

    def register_value_hook(self, callback) -> _Handles:
        """Calls ``callback(z, ids)`` with the joined values of the watched terms after each training forward.

        Every watched term hands over the values its own forward computed (its value hook); once the
        whole loss has run, the values of that forward are joined and passed on. Returns one handle
        that removes every hook.
        """
        latest: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

        def keep(name):
            return lambda z, ids: latest.__setitem__(name, (z, ids))

        def join(module, args, output):
            if len(latest) == len(self.watch):
                pairs = [latest[name] for name in self.watch]
                latest.clear()
                callback(*self._join(pairs))

        handles = [self.terms[name].register_value_hook(keep(name)) for name in self.watch]
        return _Handles([*handles, self.register_forward_hook(join)])


def _constraint_terms(mode: str, weights: Mapping[str, float], t0: float, multiplier_init: float) -> dict:
    return {
        name: {
            "loss": InequalityConstraintLoss(
                key=key,
                function=function,
                mode=mode,
                classes=[1],
                index_key="index",
                t=t0,
                multiplier_init=multiplier_init,
            ),
            "weight": weights[name],
        }
        for name, (key, function) in CONSTRAINT_TERMS.items()
    }


def build_two_circles_loss(
    method: str,
    num_pixels: int,
    weight: float = 1e-2,
    centroid_scale: float = 1.0,
    t0: float = 1.0,
    multiplier_init: float = 0.0,
    proposal_lr: float = 5e-5,
    proposal_max_iter: int = 500,
) -> ConstrainedCompositeLoss:
    """The loss of one method: terms ``size`` and ``centroid`` (always watched), plus ``proposal`` or ``ce``.

    Args:
        method: one of :data:`TWO_CIRCLES_METHODS`.
        num_pixels: |Ω|, the number of pixels of an image; each constraint term has weight ``weight / |Ω|``.
        weight: constraint weight before the division by |Ω| (1e-2 in the authors' code).
        centroid_scale: the centroid term's weight is ``centroid_scale · weight / |Ω|`` (1 in the authors' code).
        t0: initial log-barrier t.
        multiplier_init: initial Lagrange multiplier.
        proposal_lr, proposal_max_iter: dual solver of the proposals (Pathak: 5e-5 per voxel, 500 steps).

    For ``"proposals"`` and ``"full"`` the size and centroid terms are quadratic penalties with
    weight 0: computed and monitored, never optimised.
    """
    if method not in TWO_CIRCLES_METHODS:
        raise ValueError(f"method must be one of {TWO_CIRCLES_METHODS}, got {method!r}")
    if isinstance(num_pixels, bool) or not isinstance(num_pixels, int) or num_pixels < 1:
        raise ValueError(f"num_pixels must be a positive integer, got {num_pixels!r}")
    if not weight > 0 or not math.isfinite(weight):
        raise ValueError(f"weight must be a finite positive number, got {weight!r}")
    if not centroid_scale > 0 or not math.isfinite(centroid_scale):
        raise ValueError(f"centroid_scale must be a finite positive number, got {centroid_scale!r}")
    if method in ("proposals", "full"):
        terms = _constraint_terms("penalty", {"size": 0.0, "centroid": 0.0}, t0, multiplier_init)
        if method == "proposals":
            main = LagrangianProposalLoss(key=PROPOSAL_KEY, classes=[1], lr=proposal_lr, max_iter=proposal_max_iter)
            terms = {"proposal": main, **terms}
        else:
            terms = {"ce": TargetLoss(DiceCELoss(to_onehot_y=True, softmax=True, lambda_dice=0.0)), **terms}
    else:
        weights = {"size": weight / num_pixels, "centroid": centroid_scale * weight / num_pixels}
        terms = _constraint_terms(method, weights, t0, multiplier_init)
    return ConstrainedCompositeLoss(terms, watch=list(CONSTRAINT_TERMS))


def add_proposal_bounds(item: dict) -> dict:
    """Adds ``proposal_bounds`` ``(1, 2)``: the size bounds in the layout of ``LagrangianProposalLoss``."""
    return {**item, PROPOSAL_KEY: item["size_bounds"][:, 0]}


def summarise_history(rows: Sequence[Mapping], last: int = 10) -> dict:
    """Summary of the per-epoch rows of :class:`EpochRecorder`.

    Returns:
        ``dice_mean`` and ``dice_std`` (population std) of the validation Dice over the last ``last``
        epochs, ``dice_best``, ``dice_last``, ``satisfied`` (share of the training constraints holding
        in the last epoch), ``stability`` (mean over the last ``last`` epochs where it is defined),
        ``seconds_per_epoch`` (median training seconds per epoch, validation excluded) and ``epochs``.
    """
    if not rows:
        raise ValueError("rows must hold at least one epoch")
    tail = list(rows)[-int(last) :]
    dice = np.array([r["dice"] for r in tail], dtype=float)
    stability = np.array([r["stability"] for r in tail], dtype=float)
    stability = stability[np.isfinite(stability)]
    return {
        "epochs": len(rows),
        "dice_mean": float(dice.mean()),
        "dice_std": float(dice.std()),
        "dice_best": float(max(r["dice"] for r in rows)),
        "dice_last": float(rows[-1]["dice"]),
        "satisfied": float(rows[-1]["satisfied"]),
        "stability": float(stability.mean()) if stability.size else math.nan,
        "seconds_per_epoch": float(np.median([r["seconds"] for r in rows])),
    }


class EpochRecorder:
    """One row per training epoch: training seconds, validation Dice, constraint satisfaction, loss terms.

    Attach in two steps: :meth:`attach` (the clock) **before** the validation handler, so that the
    seconds exclude validation, and :meth:`attach_writer` **after** it and after the monitor, so that
    the row sees this epoch's Dice and constraint statistics. Each row is appended to ``self.rows``,
    written to ``<output_dir>/metrics.csv`` (rewritten every epoch) and to TensorBoard.

    Args:
        evaluator: the engine whose ``state.metrics[dice_key]`` holds the validation Dice.
        monitor: the :class:`ConstraintMonitor` of the training constraints.
        output_dir: folder of ``metrics.csv``.
        dice_key: name of the Dice metric of ``evaluator``.
        barrier: optional :class:`LogBarrierScheduler` (its ``t`` during the epoch is recorded).
        duals: optional :class:`DualAscentHandler` (the mean multiplier after the epoch is recorded).
        summary_writer: optional TensorBoard ``SummaryWriter``.
    """

    def __init__(
        self,
        evaluator: Engine,
        monitor: ConstraintMonitor,
        output_dir: str | Path,
        dice_key: str = "val_dice",
        barrier: LogBarrierScheduler | None = None,
        duals: DualAscentHandler | None = None,
        summary_writer=None,
    ) -> None:
        self.evaluator, self.monitor, self.dice_key = evaluator, monitor, dice_key
        self.output_dir = Path(output_dir)
        self.barrier, self.duals, self.summary_writer = barrier, duals, summary_writer
        self.rows: list[dict] = []
        self._start = 0.0
        self._seconds = math.nan
        self._t = math.nan

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._begin)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._stop)

    def attach_writer(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._write)

    def _begin(self, engine: Engine) -> None:
        self._t = self.barrier.t if self.barrier is not None else math.nan
        self._start = time.perf_counter()

    def _stop(self, engine: Engine) -> None:
        self._seconds = time.perf_counter() - self._start

    def _write(self, engine: Engine) -> None:
        if not self.monitor.history or self.monitor.history[-1]["epoch"] != engine.state.epoch:
            raise RuntimeError("attach_writer must be called after the ConstraintMonitor is attached")
        stats = self.monitor.history[-1]
        multipliers = math.nan
        if self.duals is not None:
            lam = torch.cat([duals.multipliers.flatten() for duals in self.duals.duals])
            multipliers = float(lam.mean()) if lam.numel() else 0.0
        row = {
            "epoch": int(engine.state.epoch),
            "seconds": self._seconds,
            "dice": float(self.evaluator.state.metrics[self.dice_key]),
            "satisfied": stats["satisfied"],
            "stability": stats["stability"],
            "t": self._t,
            "multiplier_mean": multipliers,
        }
        row.update({k: float(v) for k, v in engine.state.metrics.items() if str(k).startswith("loss/")})
        self.rows.append(row)
        logger.info(
            "epoch %d: %.1f s, val Dice %.4f, %.1f%% constraints satisfied",
            row["epoch"], row["seconds"], row["dice"], 100 * row["satisfied"],
        )  # fmt: skip
        if self.summary_writer is not None:
            self.summary_writer.add_scalar("val/dice", row["dice"], row["epoch"])
            self.summary_writer.add_scalar("time/seconds_per_epoch", row["seconds"], row["epoch"])
        self.write_csv()

    def write_csv(self) -> Path:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        path = self.output_dir / "metrics.csv"
        fields = list(dict.fromkeys(key for row in self.rows for key in row))
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(self.rows)
        return path


def _load_data(data: str | Path | Sequence[TwoCircles]) -> tuple[TwoCircles, TwoCircles]:
    if isinstance(data, (str, Path)):
        folder = Path(data).expanduser()
        return load_two_circles(folder / "train.npz"), load_two_circles(folder / "val.npz")
    if isinstance(data, Sequence) and len(data) == 2 and all(isinstance(d, TwoCircles) for d in data):
        return data[0], data[1]
    raise ValueError(
        "data must be a folder with train.npz and val.npz (write_two_circles) or a pair (train, val) of "
        f"TwoCircles, got {type(data).__name__}"
    )


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def run_two_circles(
    method: str,
    output_dir: str | Path,
    data: str | Path | Sequence[TwoCircles],
    max_epochs: int = 25,
    batch_size: int = 8,
    learning_rate: float = 2e-3,
    channels: Sequence[int] = (8, 16, 32),
    strides: Sequence[int] = (2, 2),
    num_res_units: int = 0,
    weight: float = 1e-2,
    centroid_scale: float = 10.0,
    t0: float = 1.0,
    mu: float = 1.1,
    dual_step: float = 1.0,
    multiplier_init: float = 0.0,
    proposal_lr: float = 5e-5,
    proposal_max_iter: int = 500,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> dict:
    """Trains one method on the two-circles set and writes its per-epoch metrics; returns the summary.

    The network is a 2D MONAI ``UNet`` (1 → 2 channels, ``channels``/``strides``), trained by a
    :class:`wss_monai.engines.WeakSupervisionTrainer` with Adam for ``max_epochs`` epochs over the
    training images in a seeded shuffled order; after each epoch a ``SupervisedEvaluator`` computes
    the mean Dice of the target (argmax) over the validation images. The defaults are the settings
    of ``docs/two_circles.md`` (the centroid term weighted 10 times the size term, as discussed there).

    Args:
        method: one of :data:`TWO_CIRCLES_METHODS`.
        output_dir: folder of ``metrics.csv``, ``constraints.csv``, ``summary.json``, ``model.pt`` and
            ``tensorboard/``.
        data: folder with ``train.npz`` and ``val.npz`` (:func:`wss_monai.data.write_two_circles`), or
            a pair ``(train, val)`` of :class:`TwoCircles`.
        max_epochs, batch_size, learning_rate: the training budget (Adam).
        channels, strides, num_res_units: the UNet.
        weight, centroid_scale: constraint weights, divided by |Ω| (see :func:`build_two_circles_loss`).
        t0, mu: log-barrier schedule ``t = t0 · mu^(epoch - 1)``.
        dual_step: dual step η of the Lagrangian methods, per pixel of violation.
        multiplier_init: initial multipliers of the Lagrangian methods.
        proposal_lr, proposal_max_iter: the proposals' dual solver.
        seed: seeds MONAI's ``set_determinism`` (network initialisation) and the shuffling.
        device: torch device.

    Returns:
        :func:`summarise_history` of the run, with ``method``, ``settings`` and ``history`` (the rows).
    """
    if method not in TWO_CIRCLES_METHODS:
        raise ValueError(f"method must be one of {TWO_CIRCLES_METHODS}, got {method!r}")
    max_epochs = _check_positive_int("max_epochs", max_epochs)
    batch_size = _check_positive_int("batch_size", batch_size)
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be positive, got {learning_rate!r}")
    if not dual_step > 0:
        raise ValueError(f"dual_step must be positive, got {dual_step!r}")
    train, val = _load_data(data)
    if train.images.shape[1:] != val.images.shape[1:]:
        raise ValueError(
            f"training and validation images differ in shape: {train.images.shape[1:]} vs {val.images.shape[1:]}"
        )
    spatial = tuple(int(s) for s in train.images.shape[2:])
    settings = {
        "method": method,
        "image_size": list(spatial),
        "num_train": len(train.images),
        "num_val": len(val.images),
        "max_epochs": max_epochs,
        "batch_size": batch_size,
        "learning_rate": float(learning_rate),
        "channels": [int(c) for c in channels],
        "strides": [int(s) for s in strides],
        "num_res_units": int(num_res_units),
        "weight": float(weight),
        "centroid_scale": float(centroid_scale),
        "t0": float(t0),
        "mu": float(mu),
        "dual_step": float(dual_step),
        "multiplier_init": float(multiplier_init),
        "proposal_lr": float(proposal_lr),
        "proposal_max_iter": int(proposal_max_iter),
        "seed": int(seed),
    }
    output_dir = Path(output_dir).expanduser()
    output_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)

    set_determinism(seed=int(seed))
    transform = add_proposal_bounds if method == "proposals" else None
    train_loader = DataLoader(
        TwoCirclesDataset(train, transform=transform),
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(int(seed)),
    )
    val_loader = DataLoader(TwoCirclesDataset(val), batch_size=max(batch_size, 16), shuffle=False)
    network = UNet(
        spatial_dims=2,
        in_channels=1,
        out_channels=2,
        channels=tuple(channels),
        strides=tuple(strides),
        num_res_units=int(num_res_units),
    ).to(device)
    optimizer = torch.optim.Adam(network.parameters(), lr=float(learning_rate))
    loss = build_two_circles_loss(
        method,
        num_pixels=int(math.prod(spatial)),
        weight=weight,
        centroid_scale=centroid_scale,
        t0=t0,
        multiplier_init=multiplier_init,
        proposal_lr=proposal_lr,
        proposal_max_iter=proposal_max_iter,
    ).to(device)

    writer = SummaryWriter(log_dir=str(output_dir / "tensorboard"))
    dice_metric = {"val_dice": MeanDice(include_background=False, output_transform=from_engine(["pred", "label"]))}
    evaluator = SupervisedEvaluator(
        device=device,
        val_data_loader=val_loader,
        network=network,
        inferer=SimpleInferer(),
        postprocessing=AsDiscreted(keys=["pred", "label"], argmax=[True, False], to_onehot=[2, 2]),
        key_val_metric=dice_metric,
    )
    trainer = WeakSupervisionTrainer(
        device=device,
        max_epochs=max_epochs,
        train_data_loader=train_loader,
        network=network,
        optimizer=optimizer,
        loss_function=loss,
        inferer=SimpleInferer(),
    )
    barrier = LogBarrierScheduler(loss, t0=t0, mu=mu, summary_writer=writer) if method == "log_barrier" else None
    duals = None
    if method in ("lagrangian", "relu_lagrangian"):
        duals = DualAscentHandler(loss, step=dual_step, summary_writer=writer)
    monitor = ConstraintMonitor(loss, output_dir=str(output_dir), summary_writer=writer)
    recorder = EpochRecorder(evaluator, monitor, output_dir, barrier=barrier, duals=duals, summary_writer=writer)
    # order at EPOCH_COMPLETED: clock, loss terms, schedule / dual step, monitor, validation, row
    recorder.attach(trainer)
    LossTermsLogger(summary_writer=writer).attach(trainer)
    for handler in (barrier, duals):
        if handler is not None:
            handler.attach(trainer)
    monitor.attach(trainer)
    ValidationHandler(validator=evaluator, interval=1, epoch_level=True).attach(trainer)
    recorder.attach_writer(trainer)

    logger.info(
        "two circles: %s, %d train / %d val images of %s, %d epochs",
        method, len(train.images), len(val.images), spatial, max_epochs,
    )  # fmt: skip
    try:
        trainer.run()
    finally:
        writer.close()
        if duals is not None:
            duals.detach()
    torch.save(network.state_dict(), output_dir / "model.pt")
    summary = {"method": method, **summarise_history(recorder.rows), "settings": settings, "history": recorder.rows}
    (output_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
