"""Stage 1 of curriculum semi-supervision: the size regressor, trained by a MONAI ``SupervisedTrainer``.

Kervadec et al., "Curriculum semi-supervised segmentation", MICCAI 2019. A regression network ``R``
(:class:`wss_monai.networks.SizeRegressor`) learns the size (pixel count) of the target class from
the slices of the ``n`` fully annotated patients, with a squared error and the training set
augmented ×10 by random flips and 90° rotations; stage 2 bounds the target size of every unlabelled
slice by ``[(1 - γ) R(x), (1 + γ) R(x)]``.

The training is MONAI's ``SupervisedTrainer`` (:func:`build_size_regressor_trainer`):

- the data loader visits every slice ``augment`` times per epoch (:class:`AugmentedSlices`) in one
  seeded permutation per epoch (:class:`PermutationSampler`);
- its ``prepare_batch`` (:class:`DihedralAugmentPrepare`) applies a random flip / 90° rotation
  (:func:`wss_monai.networks.dihedral_augment`) to every copy but the first of each slice;
- the loss is :class:`ScaledMSELoss`, the squared error on sizes divided by the mean training size;
- handlers: :class:`wss_monai.handlers.EpochLossHistory` (mean loss per epoch), MONAI's
  ``StatsHandler`` (the log) and, from :func:`run_size_regressor_stage`, ``TensorBoardStatsHandler``.

The permutation and the augmentations are drawn from one generator seeded with ``seed``, in the order
of the iterations, and the global random state is not used.

Example:
    >>> import torch
    >>> x = torch.rand(4, 1, 16, 16)
    >>> net, history = train_size_regressor(x, (x > 0.5).sum((1, 2, 3)), epochs=2, batch_size=2,
    ...                                     augment=2, channels=(4,))
    >>> len(history), net(x).shape
    (2, torch.Size([4, 1]))
"""

from __future__ import annotations

import csv
import json
import logging
import math
import numbers
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.engines import SupervisedTrainer
from monai.handlers import StatsHandler, TensorBoardStatsHandler
from monai.inferers import SimpleInferer
from torch import nn
from torch.nn.modules.loss import _Loss
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler

from wss_monai.handlers.epoch_loss import EpochLossHistory
from wss_monai.networks.curriculum import save_size_regressor, slices_and_sizes
from wss_monai.networks.size_regressor import SizeRegressor, dihedral_augment, predict_sizes

__all__ = [
    "AugmentedSlices",
    "DihedralAugmentPrepare",
    "PermutationSampler",
    "ScaledMSELoss",
    "build_size_regressor_trainer",
    "run_size_regressor_stage",
    "train_size_regressor",
]

logger = logging.getLogger(__name__)
stats_logger = logging.getLogger(f"{__name__}.stats")
"""The logger of the engine's ``StatsHandler``, created here so that MONAI's ``get_logger`` adds no stdout handler."""


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class ScaledMSELoss(_Loss):
    """Squared error of sizes divided by a per-class scale: ``mean((R(x)/s - τ/s)²)``.

    With ``s`` the mean training size of each class, this has the minimiser of the squared error in
    pixels² on numbers of order 1 (Kervadec et al. 2019 train the regressor with a squared error).

    Args:
        scale: ``(K,)`` positive scales (one number for all classes).
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (``(B, K)``).

    Example:
        >>> import torch
        >>> ScaledMSELoss(scale=[10.0])(torch.tensor([[12.0]]), torch.tensor([[10.0]]))
        tensor(0.0400)
    """

    def __init__(self, scale: float | Sequence[float] | torch.Tensor = 1.0, reduction: str = "mean") -> None:
        super().__init__(reduction=reduction)
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        values = torch.as_tensor(scale, dtype=torch.float32).detach().reshape(-1).cpu().clone()
        if not values.numel() or not torch.isfinite(values).all() or (values <= 0).any():
            raise ValueError(f"scale must be finite positive numbers, got {scale!r}")
        self.register_buffer("scale", values)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Args: input: predicted sizes ``(B, K)``. target: true sizes ``(B, K)``."""
        if input.ndim != 2 or input.shape != target.shape:
            raise ValueError(
                f"input and target must both have shape (B, K), got {tuple(input.shape)} and {tuple(target.shape)}"
            )
        if self.scale.numel() not in (1, input.shape[1]):
            raise ValueError(f"scale has {self.scale.numel()} values for K = {input.shape[1]} outputs")
        return nn.functional.mse_loss(input / self.scale, target / self.scale, reduction=self.reduction)


class AugmentedSlices(Dataset):
    """``augment`` copies of each of N slices: item ``i`` is slice ``i mod N``, copy ``i div N``.

    Item: ``{"image": (C, H, W), "size": (K,), "copy": int}``; copy 0 is the slice as is, the others
    are augmented by :class:`DihedralAugmentPrepare` once batched.
    """

    def __init__(self, images: torch.Tensor, sizes: torch.Tensor, augment: int = 1) -> None:
        if images.shape[0] != sizes.shape[0]:
            raise ValueError(f"images and sizes must count the same slices, got {images.shape[0]} and {sizes.shape[0]}")
        self.images, self.sizes = images, sizes
        self.augment = _check_int("augment", augment, 1)

    def __len__(self) -> int:
        return self.images.shape[0] * self.augment

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        slice_index, copy = index % self.images.shape[0], index // self.images.shape[0]
        return {"image": self.images[slice_index], "size": self.sizes[slice_index], "copy": copy}


class PermutationSampler(Sampler[int]):
    """One ``torch.randperm(num_samples, generator=generator)`` per pass, drawn when the pass starts."""

    def __init__(self, num_samples: int, generator: torch.Generator) -> None:
        self.num_samples = _check_int("num_samples", num_samples, 1)
        self.generator = generator

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        yield from torch.randperm(self.num_samples, generator=self.generator).tolist()


class DihedralAugmentPrepare:
    """MONAI ``prepare_batch``: ``(image, size)`` of a batch of :class:`AugmentedSlices` on the device.

    Every item with ``copy > 0`` gets a random flip / 90° rotation (:func:`dihedral_augment`, drawn
    from ``generator`` for the whole batch, on the CPU before the transfer); with ``generator=None``
    nothing is augmented.
    """

    def __init__(self, generator: torch.Generator | None = None) -> None:
        self.generator = generator

    def __call__(self, batchdata: Mapping, device: Any = None, non_blocking: bool = False, **kwargs: Any):
        images = batchdata["image"]
        if self.generator is not None:
            augmented = (torch.as_tensor(batchdata["copy"]) > 0).reshape(-1, 1, 1, 1)
            images = torch.where(augmented, dihedral_augment(images, self.generator), images)
        sizes = batchdata["size"]
        return (
            images.to(device=device, non_blocking=non_blocking, **kwargs),
            sizes.to(device=device, non_blocking=non_blocking, **kwargs),
        )


def _check_budget(epochs: Any, batch_size: Any, augment: Any, lr: Any, weight_decay: Any) -> tuple[int, int, int]:
    epochs = _check_int("epochs", epochs, 1)
    batch_size = _check_int("batch_size", batch_size, 1)
    augment = _check_int("augment", augment, 1)
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a finite positive number, got {lr!r}")
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
    return epochs, batch_size, augment


def _log_every(epochs: int):
    """Event filter of the epochs the old loop logged: every ``epochs // 10`` and the last one."""
    interval = max(1, epochs // 10)
    return lambda engine, epoch: epoch % interval == 0 or epoch == epochs


def _prepare_inputs(images: Any, sizes: Any) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.as_tensor(np.asarray(images) if isinstance(images, np.ndarray) else images).float()
    sizes = torch.as_tensor(np.asarray(sizes) if isinstance(sizes, np.ndarray) else sizes).float()
    if images.ndim != 4 or images.shape[0] < 1:
        raise ValueError(f"images must have shape (N, C, H, W) with N >= 1, got {tuple(images.shape)}")
    if sizes.ndim == 1:
        sizes = sizes[:, None]
    if sizes.ndim != 2 or sizes.shape[0] != images.shape[0]:
        raise ValueError(
            f"sizes must have shape (N,) or (N, K) with N = {images.shape[0]} images, got {tuple(sizes.shape)}"
        )
    if not torch.isfinite(images).all():
        raise ValueError("images contain NaN or inf values")
    if not torch.isfinite(sizes).all() or (sizes < 0).any():
        raise ValueError("sizes must be finite and >= 0")
    return images, sizes


def build_size_regressor_trainer(
    model: nn.Module,
    images: torch.Tensor,
    sizes: torch.Tensor,
    epochs: int = 50,
    batch_size: int = 16,
    lr: float = 1e-3,
    augment: int = 10,
    seed: int = 0,
    weight_decay: float = 0.0,
    device: str | torch.device | None = None,
    train_handlers: Sequence[Any] = (),
) -> tuple[SupervisedTrainer, EpochLossHistory]:
    """A MONAI ``SupervisedTrainer`` fitting ``model`` to ``sizes`` with Adam and :class:`ScaledMSELoss`.

    Args:
        model: ``(B, C, H, W)`` → ``(B, K)``; its ``scale`` buffer, if any, scales the loss (else 1).
        images: ``(N, C, H, W)`` float slices. sizes: ``(N, K)`` float target sizes in pixels.
        epochs, batch_size, lr, weight_decay: the budget and Adam.
        augment: copies of each slice per epoch (1: no augmentation).
        seed: seeds the generator of the order and the augmentations.
        device: ``None``: the model's device.
        train_handlers: more handlers, attached after the loss history (which sets
            ``engine.state.metrics["loss"]``) and before the ``StatsHandler``.

    Returns:
        ``(trainer, history)``: run ``trainer.run()``; ``history.history[e]`` is then the mean
        training loss of epoch ``e``.
    """
    epochs, batch_size, augment = _check_budget(epochs, batch_size, augment, lr, weight_decay)
    if device is not None:
        model = model.to(device)
    try:
        device = next(model.parameters()).device
    except StopIteration as error:
        raise ValueError("model has no parameters to train") from error
    scale = getattr(model, "scale", None)
    scale = torch.ones(sizes.shape[1]) if not isinstance(scale, torch.Tensor) else scale.detach().float().cpu()

    generator = torch.Generator().manual_seed(int(seed))
    dataset = AugmentedSlices(images, sizes, augment)
    loader = DataLoader(
        dataset,
        batch_sampler=BatchSampler(PermutationSampler(len(dataset), generator), batch_size, drop_last=False),
        generator=torch.Generator().manual_seed(int(seed)),  # the loader's base seed: not the global generator
    )
    trainer = SupervisedTrainer(
        device=device,
        max_epochs=epochs,
        train_data_loader=loader,
        network=model,
        optimizer=torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay),
        loss_function=ScaledMSELoss(scale).to(device),
        inferer=SimpleInferer(),
        prepare_batch=DihedralAugmentPrepare(generator if augment > 1 else None),
        optim_set_to_none=True,
        decollate=False,
    )
    history = EpochLossHistory()
    history.attach(trainer)
    for handler in train_handlers:
        handler.attach(trainer)
    stats = StatsHandler(iteration_log=False, epoch_log=_log_every(epochs), name=stats_logger.name, tag_name="loss")
    stats.logger.propagate = True  # MONAI's get_logger turns propagation off; the records go to the app's handlers
    stats.attach(trainer)
    return trainer, history


def train_size_regressor(
    images: torch.Tensor | np.ndarray,
    sizes: torch.Tensor | np.ndarray,
    epochs: int = 50,
    batch_size: int = 16,
    lr: float = 1e-3,
    augment: int = 10,
    seed: int = 0,
    model: nn.Module | None = None,
    weight_decay: float = 0.0,
    device: str | torch.device | None = None,
    train_handlers: Sequence[Any] = (),
    **model_kwargs: Any,
) -> tuple[nn.Module, list[float]]:
    """Fits a size regressor on labelled slices with a squared error (Kervadec et al. 2019).

    Each epoch visits every slice ``augment`` times in a random order: once as is and
    ``augment - 1`` times under a random flip / 90° rotation (:func:`dihedral_augment`), i.e. the
    training set is augmented ×``augment`` (×10 in the paper). The loss is the mean squared error
    between ``R(x) / s`` and ``τ / s``, with ``s`` the mean training size of each class (the new
    model's ``scale``): the same minimiser as the squared error in pixels², on numbers of order 1.
    The engine is :func:`build_size_regressor_trainer`.

    Args:
        images: ``(N, C, H, W)`` labelled slices.
        sizes: ``(N,)`` or ``(N, K)`` target sizes in pixels, ≥ 0.
        epochs: passes over the augmented set.
        batch_size: slices per step.
        lr: Adam learning rate.
        augment: augmentation factor ≥ 1 (1: no augmentation).
        seed: seeds the initial weights, the order and the augmentations (the global RNG is untouched).
        model: a module to train (``(B, C, H, W)`` → ``(B, K)``); ``None`` builds a
            :class:`SizeRegressor` from ``model_kwargs`` with ``scale`` set from ``sizes``.
        weight_decay: Adam weight decay.
        device: where to train; ``None``: the model's device (CPU for a new model).
        train_handlers: more engine handlers (e.g. MONAI's ``TensorBoardStatsHandler``).
        model_kwargs: arguments of :class:`SizeRegressor` (only without ``model``).

    Returns:
        ``(model in eval mode, history)`` with ``history[e]`` the mean training loss of epoch ``e``.
    """
    epochs, batch_size, augment = _check_budget(epochs, batch_size, augment, lr, weight_decay)
    images, sizes = _prepare_inputs(images, sizes)
    if model is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = SizeRegressor(in_channels=images.shape[1], num_outputs=sizes.shape[1], **model_kwargs)
        model.set_scale(sizes.mean(0).clamp_min(1.0))
    elif model_kwargs:
        raise ValueError(f"model_kwargs {sorted(model_kwargs)} only apply when no model is given")
    trainer, history = build_size_regressor_trainer(
        model,
        images,
        sizes,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        augment=augment,
        seed=seed,
        weight_decay=weight_decay,
        device=device,
        train_handlers=train_handlers,
    )
    trainer.run()
    return trainer.network.eval(), history.history


def _error_rows(model: nn.Module, images: torch.Tensor, sizes: torch.Tensor, names, gamma: float) -> list[dict]:
    predicted = predict_sizes(model, images)
    rows = []
    for (case, s), true, pred in zip(names, sizes.tolist(), predicted.tolist()):
        for k, (t, p) in enumerate(zip(true, pred)):
            rows.append(
                {
                    "case": case,
                    "slice": s,
                    "output": k,
                    "true_size": t,
                    "predicted_size": round(p, 3),
                    "abs_error": round(abs(p - t), 3),
                    "within_bounds": int((1 - gamma) * p <= t <= (1 + gamma) * p),
                }
            )
    return rows


def _summary(rows: list[dict]) -> dict:
    if not rows:
        return {"num_slices": 0}
    errors = np.array([r["abs_error"] for r in rows])
    true = np.array([r["true_size"] for r in rows])
    present = true > 0
    relative = errors[present] / true[present]
    return {
        "num_slices": len(rows),
        "mae_pixels": float(errors.mean()),
        "mean_true_size": float(true.mean()),
        "median_relative_error_present": float(np.median(relative)) if present.any() else None,
        "share_within_bounds": float(np.mean([r["within_bounds"] for r in rows])),
    }


def run_size_regressor_stage(
    train_volumes: Iterable[Mapping],
    validation_volumes: Iterable[Mapping],
    output_dir: str | Path,
    classes: Sequence[int] = (3,),
    spatial_size: int | None = None,
    gamma: float = 0.1,
    epochs: int = 50,
    batch_size: int = 16,
    lr: float = 1e-3,
    augment: int = 10,
    seed: int = 0,
    device: str | torch.device | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    checkpoint_name: str = "size_regressor.pt",
) -> dict:
    """Stage 1: fit the size regressor on the labelled slices, save it, and tabulate its errors.

    Writes ``<output_dir>/models/<checkpoint_name>``, ``<output_dir>/size_regressor/validation_sizes.csv``
    (one row per validation slice and output: true and predicted size, absolute error, whether the true
    size lies in the bounds ``[(1 - γ) R, (1 + γ) R]``), ``summary.json`` (training history, mean
    absolute error in pixels, median relative error on slices holding the class, share within bounds,
    on the training and validation slices) and ``size_regressor/tensorboard/`` (the loss per epoch).

    Returns:
        The summary dict.
    """
    output_dir = Path(output_dir)
    table_dir = output_dir / "size_regressor"
    images, sizes, _ = slices_and_sizes(train_volumes, classes)
    logger.info("stage 1: %d labelled slices, mean size %s px", images.shape[0], sizes.mean(0).tolist())
    kwargs = dict(model_kwargs or {})
    board = TensorBoardStatsHandler(log_dir=str(table_dir / "tensorboard"), iteration_log=False, tag_name="loss")
    model, history = train_size_regressor(
        images,
        sizes,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        augment=augment,
        seed=seed,
        device=device,
        train_handlers=[board],
        **kwargs,
    )
    board.close()
    model = model.cpu()
    table_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = save_size_regressor(
        model, output_dir / "models" / checkpoint_name, classes, spatial_size, kwargs, gamma=gamma, history=history
    )
    train_rows = _error_rows(model, images, sizes, [("", 0)] * images.shape[0], gamma)
    val_volumes = list(validation_volumes)
    val_rows: list[dict] = []
    if val_volumes:
        val_images, val_sizes, val_names = slices_and_sizes(val_volumes, classes)
        val_rows = _error_rows(model, val_images, val_sizes, val_names, gamma)
    with open(table_dir / "validation_sizes.csv", "w", newline="") as handle:
        fields = ["case", "slice", "output", "true_size", "predicted_size", "abs_error", "within_bounds"]
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(val_rows)
    summary = {
        "checkpoint": str(checkpoint),
        "classes": [int(c) for c in classes],
        "gamma": gamma,
        "epochs": epochs,
        "augment": augment,
        "seed": seed,
        "history": history,
        "training": _summary(train_rows),
        "validation": _summary(val_rows),
    }
    (table_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    logger.info(
        "stage 1 done: validation MAE %.1f px, %.0f%% of true sizes within the ±%g bounds",
        summary["validation"].get("mae_pixels", float("nan")),
        100 * summary["validation"].get("share_within_bounds", float("nan")),
        gamma,
    )
    return summary
