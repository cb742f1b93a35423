"""Pad the depth of channel-first volumes to a multiple, with its own fill value for each key.

Whole-volume 3D training (``configs/profiles/whole_volumes_3d.yaml``) stacks volumes of different
depths in one batch, and a U-Net with depth strides needs a depth divisible by their product. The
padding must not create annotations: an image pads with 0, a weak label map with
:data:`wss_monai.constants.UNLABELLED`, an ignore mask with 1 (ignored). MONAI's ``DivisiblePadd``
takes one fill value for all its keys, hence this transform.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends

from wss_monai.constants import UNLABELLED
from wss_monai.transforms._slices import check_int, check_number

__all__ = ["PAD_METHODS", "DivisibleDepthPad", "DivisibleDepthPadd", "padded_depth"]

PAD_METHODS = ("symmetric", "end")


def padded_depth(depth: int, multiple: int, min_depth: int = 0) -> int:
    """``D' = m · ⌈max(D, min_depth) / m⌉``: the smallest multiple of ``m`` that holds both depths.

    Example:
        >>> padded_depth(10, 16), padded_depth(21, 16), padded_depth(5, 4, min_depth=10)
        (16, 32, 12)
    """
    return -(-max(int(depth), int(min_depth)) // int(multiple)) * int(multiple)


def _check_value(value: float, dtype: Any, what: str) -> None:
    """``value`` must be stored exactly by ``dtype`` (-1 in a uint8 map would become 255)."""
    if isinstance(dtype, torch.dtype):
        floating = dtype.is_floating_point or dtype.is_complex
        info = None if floating or dtype == torch.bool else torch.iinfo(dtype)
    else:
        floating = np.dtype(dtype).kind in "fc"
        info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    if dtype in (torch.bool, np.bool_):
        ok = value in (0, 1)
    else:
        ok = floating or (info is not None and value == int(value) and info.min <= value <= info.max)
    if not ok:
        raise ValueError(f"value {value:g} cannot be stored in {what} of dtype {dtype}; convert its dtype first")


class DivisibleDepthPad(Transform):
    """Pads the last axis of a ``(C, H, W, D)`` volume with ``value`` up to ``D' = m · ⌈max(D, d₀) / m⌉``.

    ``m`` is ``multiple`` and ``d₀`` is ``min_depth`` (e.g. the deepest volume of a batch, so that all
    of them stack). ``"symmetric"`` puts ``⌊(D' − D) / 2⌋`` slices before and the rest after, as
    MONAI's sliding-window inference pads a volume thinner than its window; ``"end"`` puts all of
    them after the last slice. A volume already deep enough is returned unpadded (as a copy).

    The metadata of a ``MetaTensor`` (its affine) is not updated: the result is a plain tensor,
    meant for training batches; at inference let the inferer pad and crop.

    Args:
        multiple: ``m ≥ 1``.
        min_depth: ``d₀ ≥ 0``.
        value: fill value; it must fit the input's dtype (``-1`` into ``uint8`` raises).
        method: ``"symmetric"`` or ``"end"``.

    Input ``(C, H, W, D)`` numpy array or torch tensor; output ``(C, H, W, D')`` of the same dtype
    and device, numpy for numpy and a plain ``torch.Tensor`` otherwise.

    Example:
        >>> import torch
        >>> scribble = torch.tensor([0.0, 2.0]).reshape(1, 1, 1, 2)   # (C, H, W, D) = (1, 1, 1, 2)
        >>> DivisibleDepthPad(multiple=4, value=-1)(scribble).flatten().tolist()
        [-1.0, 0.0, 2.0, -1.0]
        >>> DivisibleDepthPad(multiple=2, min_depth=5, method="end")(torch.ones(1, 1, 1, 3)).flatten().tolist()
        [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, multiple: int = 1, min_depth: int = 0, value: float = 0.0, method: str = "symmetric") -> None:
        self.multiple = check_int("multiple", multiple, 1)
        self.min_depth = check_int("min_depth", min_depth, 0)
        self.value = check_number("value", value)
        if method not in PAD_METHODS:
            raise ValueError(f"method must be one of {PAD_METHODS}, got {method!r}")
        self.method = method

    def __call__(self, volume: Any) -> np.ndarray | torch.Tensor:
        """Args:
            volume: ``(C, H, W, D)`` array.

        Returns:
            ``(C, H, W, D')`` array filled with ``value`` outside the input's slices.
        """
        if not isinstance(volume, (np.ndarray, torch.Tensor)):
            raise ValueError(f"volume must be a numpy array or a torch tensor, got {type(volume).__name__}")
        if volume.ndim != 4 or min(volume.shape) < 1:
            raise ValueError(f"volume must have shape (C, H, W, D), got {tuple(volume.shape)}")
        _check_value(self.value, volume.dtype, "volume")
        depth = volume.shape[-1]
        target = padded_depth(depth, self.multiple, self.min_depth)
        before = (target - depth) // 2 if self.method == "symmetric" else 0
        shape = (*volume.shape[:-1], target)
        if isinstance(volume, np.ndarray):
            out = np.full(shape, self.value, dtype=volume.dtype)
        else:
            volume = volume.as_tensor() if isinstance(volume, MetaTensor) else volume
            out = torch.full(shape, self.value, dtype=volume.dtype, device=volume.device)
        out[..., before : before + depth] = volume
        return out


class DivisibleDepthPadd(MapTransform):
    """Dictionary wrapper of :class:`DivisibleDepthPad`, with the fill value looked up per key.

    Args:
        keys: keys of ``(C, H, W, D)`` volumes sharing one depth ``D``.
        multiple: see :class:`DivisibleDepthPad`.
        min_depth: see :class:`DivisibleDepthPad`.
        values: key → fill value, e.g. ``{"image": 0, "label": 0, "ignore": 1}``; entries for keys
            not in ``keys`` are allowed (one mapping serves every recipe).
        default_value: fill value of the keys not in ``values``; :data:`UNLABELLED` by default, so
            that a weak label map gains no annotation.
        method: see :class:`DivisibleDepthPad`.
        allow_missing_keys: skip missing keys instead of raising ``KeyError``.

    Example:
        >>> import torch
        >>> pad = DivisibleDepthPadd(["image", "scribble"], multiple=4, values={"image": 0})
        >>> d = pad({"image": torch.ones(1, 1, 1, 3), "scribble": torch.zeros(1, 1, 1, 3)})
        >>> d["image"].flatten().tolist(), d["scribble"].flatten().tolist()
        ([1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, -1.0])
    """

    backend = DivisibleDepthPad.backend

    def __init__(
        self,
        keys: KeysCollection,
        multiple: int = 1,
        min_depth: int = 0,
        values: Mapping[Hashable, float] | None = None,
        default_value: float = UNLABELLED,
        method: str = "symmetric",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if values is not None and not isinstance(values, Mapping):
            raise ValueError(f"values must map keys to fill values, got {type(values).__name__}: {values!r}")
        values = dict(values or {})
        self.pads = {
            key: DivisibleDepthPad(multiple, min_depth, values.get(key, default_value), method) for key in self.keys
        }

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        depths = {key: d[key].shape[-1] for key in self.key_iterator(d)}
        if len(set(depths.values())) > 1:
            raise ValueError(f"keys to pad must share one depth (last axis), got {depths}")
        for key in self.key_iterator(d):
            d[key] = self.pads[key](d[key])
        return d
