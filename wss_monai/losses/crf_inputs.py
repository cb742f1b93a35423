"""Input checks shared by the CRF losses: the image beside the logits, finite values, voxel spacing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from wss_monai.losses.base import WeakLoss

__all__ = [
    "check_channel_values",
    "check_scale_factor",
    "check_sigma",
    "check_sigmas",
    "check_spacing",
    "crf_inputs",
    "softmax_probabilities",
]


def check_sigma(name: str, value: float) -> float:
    """``value`` as a float, or a ``ValueError`` naming ``name`` unless it is a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < float(value) < float("inf"):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_sigmas(name: str, value: float | Sequence[float]) -> list[float]:
    """One σ or one per image channel, as a non-empty list of finite floats > 0 (errors name ``name``)."""
    values = list(value) if isinstance(value, Sequence) else [value]
    if not values:
        raise ValueError(f"{name} must hold at least one value")
    return [check_sigma(name, v) for v in values]


def check_scale_factor(value: float | Sequence[float]) -> list[float]:
    """The factor(s) of a downsampled copy, each in (0, 1]: one value or one per spatial axis."""
    factors = [check_sigma("scale_factor", f) for f in (list(value) if isinstance(value, Sequence) else [value])]
    if not factors or any(f > 1 for f in factors):
        raise ValueError(f"scale_factor must be in (0, 1] (a downsampled copy), got {value!r}")
    return factors


def check_channel_values(
    loss: WeakLoss, name: str, values: Sequence[float], image: torch.Tensor, image_key: str, dims: int
) -> None:
    """Checks a per-channel list (``name``) against the image's channels and ``loss.scale_factor`` (if any)
    against the spatial dimensions, before any filtering."""
    factors = getattr(loss, "scale_factor", None)
    if factors is not None and len(factors) not in (1, dims):
        raise ValueError(f"scale_factor must hold 1 or {dims} values for {dims}D images, got {factors}")
    if len(values) not in (1, image.shape[1]):
        raise ValueError(f"{name} holds {len(values)} values but image {image_key!r} has {image.shape[1]} channels")


def check_spacing(spacing: Sequence[float] | None, spatial_dims: int) -> list[float] | None:
    """The voxel spacing as floats, checked against the number of spatial dimensions."""
    if spacing is None:
        return None
    values = [float(s) for s in spacing]
    if len(values) != spatial_dims or not all(0 < s < float("inf") for s in values):
        raise ValueError(f"spacing must hold {spatial_dims} finite values > 0 (one per spatial axis), got {spacing!r}")
    return values


def crf_inputs(loss: WeakLoss, logits: torch.Tensor, batch: Mapping, image_key: str) -> tuple[torch.Tensor, int]:
    """The image of ``batch[image_key]``, checked against ``logits``; returns ``(image, spatial_dims)``.

    Raises:
        ValueError: logits not ``(B, K, H, W[, D])`` or not finite, an image whose batch size or
            spatial shape differs from the logits', or an image with NaN or inf values.
    """
    loss.check_logits(logits)
    if not torch.isfinite(logits).all():
        raise ValueError(f"{type(loss).__name__}: the logits contain NaN or inf values")
    image = loss.read(batch, image_key).to(logits.device)
    if image.ndim != logits.ndim or image.shape[0] != logits.shape[0] or image.shape[2:] != logits.shape[2:]:
        raise ValueError(
            f"{type(loss).__name__}: image {image_key!r} of shape {tuple(image.shape)} does not match the "
            f"logits {tuple(logits.shape)}; expected (B, C, *spatial) with the same B and spatial size"
        )
    if not torch.isfinite(image).all():
        raise ValueError(f"{type(loss).__name__}: image {image_key!r} contains NaN or inf values")
    return image.float(), logits.ndim - 2


def softmax_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the class axis, in float32 for half inputs (fp16 training) and float64 kept."""
    return torch.softmax(logits if logits.dtype == torch.float64 else logits.float(), dim=1)
