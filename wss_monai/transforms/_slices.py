"""Shared helpers of the weak-label transforms: argument checks, label checks, per-slice application.

Every weak-label transform reads a channel-first class map ``(1, H, W[, D])`` (numpy array, torch
tensor or MONAI ``MetaTensor``), works on a numpy copy of its spatial part and converts its result
back to the input's type. With ``spatial_dims=2`` a 3D input is handled one 2D slice at a time
along the last axis (:func:`apply_per_slice`), as the 2D papers do.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Randomizable
from monai.utils import convert_data_type, convert_to_dst_type

__all__ = [
    "KeyLoopd",
    "apply_per_slice",
    "check_int",
    "check_number",
    "check_spatial_dims",
    "check_unlabelled",
    "class_map",
    "source_name",
    "to_input_type",
]


def _describe(values: np.ndarray, limit: int = 10) -> str:
    """Short text for a list of offending values: at most ``limit`` of them."""
    shown = [v.item() for v in values[:limit]]
    return f"{shown}" + (f" (and {values.size - limit} more)" if values.size > limit else "")


def check_int(name: str, value: Any, minimum: int) -> int:
    """Return ``value`` as an ``int`` or raise ``ValueError`` naming ``name`` and the value."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_number(
    name: str, value: Any, low: float | None = None, high: float | None = None, low_open: bool = False
) -> float:
    """Return ``value`` as a ``float`` in ``[low, high]`` (``(low, high]`` if ``low_open``) or raise."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        interval = f"{'(' if low_open or low is None else '['}{lo}, {hi}{']' if high is not None else ')'}"
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")
    return float(value)


def check_spatial_dims(spatial_dims: Any) -> int:
    """``spatial_dims`` must be 2 or 3."""
    if isinstance(spatial_dims, bool) or spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    return int(spatial_dims)


def check_unlabelled(unlabelled: Any, num_classes: int) -> float:
    """The unlabelled marker must be a finite number that is not a class index."""
    value = check_number("unlabelled", unlabelled)
    if value == int(value) and 0 <= value < num_classes:
        raise ValueError(f"unlabelled must not be a class index in [0, {num_classes - 1}], got {unlabelled!r}")
    return value


def source_name(data: Any) -> str | None:
    """File name stored in a ``MetaTensor``'s metadata (``filename_or_obj``), if any."""
    if isinstance(data, MetaTensor):
        name = data.meta.get("filename_or_obj")
        if name:
            return str(name)
    return None


def class_map(label: Any, num_classes: int, name: str = "label") -> np.ndarray:
    """Check a ``(1, H, W[, D])`` class map and return its spatial part as a new int64 numpy array.

    Args:
        label: channel-first integer-valued class map (numpy array or torch tensor, any dtype).
        num_classes: number of classes K; values must lie in ``[0, K - 1]``.
        name: name used in error messages.

    Raises:
        ValueError: wrong shape, or values that are not integers of ``[0, K - 1]``.
    """
    if not isinstance(label, (np.ndarray, torch.Tensor)):
        raise ValueError(f"{name} must be a numpy array or a torch tensor, got {type(label).__name__}")
    shape = tuple(label.shape)
    if len(shape) not in (3, 4) or shape[0] != 1 or min(shape[1:]) < 1:
        raise ValueError(f"{name} must have shape (1, H, W[, D]), got {shape}")
    array = np.asarray(convert_data_type(label, np.ndarray)[0])[0]
    values = np.unique(array)
    if array.dtype.kind == "b":
        values = values.astype(np.int64)
    bad = values[~np.isin(values, np.arange(num_classes))]
    if bad.size:
        raise ValueError(f"{name} values must lie in [0, {num_classes - 1}], got {_describe(bad)}")
    return array.astype(np.int64)  # always a copy: the input is never written to


def apply_per_slice(fn: Callable[[np.ndarray], np.ndarray], volume: np.ndarray, spatial_dims: int) -> np.ndarray:
    """Apply ``fn`` to the whole ``volume``, or to each 2D slice along the last axis.

    Args:
        fn: function of a 2D ``(H, W)`` or 3D ``(H, W, D)`` array returning an array.
        volume: spatial array ``(H, W)`` or ``(H, W, D)``.
        spatial_dims: 2 works slice by slice on a 3D ``volume`` (results stacked on a new last
            axis, e.g. ``(K,)`` per slice gives ``(K, D)``); 3, or a 2D ``volume``, calls ``fn`` once.

    Example:
        >>> import numpy as np
        >>> apply_per_slice(lambda s: np.array([s.sum()]), np.ones((2, 3, 4)), spatial_dims=2).shape
        (1, 4)
    """
    if volume.ndim == 2 or spatial_dims == 3:
        return fn(volume)
    return np.stack([fn(volume[..., z]) for z in range(volume.shape[-1])], axis=-1)


def to_input_type(result: np.ndarray, like: Any, spatial: bool = True) -> np.ndarray | torch.Tensor:
    """Convert a float32 numpy ``result`` to the type and device of ``like``.

    A spatial result (a weak label map) keeps ``like``'s ``MetaTensor`` metadata; a non-spatial
    one (tags, bounds) becomes a plain ``torch.Tensor`` when ``like`` is a ``MetaTensor``.
    """
    result = np.ascontiguousarray(result, dtype=np.float32)
    if not isinstance(like, torch.Tensor):
        return result
    if not spatial and isinstance(like, MetaTensor):
        like = like.as_tensor()
    return convert_to_dst_type(result, dst=like, dtype=torch.float32)[0]


class KeyLoopd(MapTransform):
    """Base of the ``…d`` wrappers: apply ``self.transform`` to each key, store under ``output_key``.

    Args:
        keys: keys of the inputs to transform.
        output_key: key under which the result is stored; ``None`` replaces each input in place.
            Only allowed with a single key.
        transform: the array transform to apply.
        allow_missing_keys: skip missing keys instead of raising ``KeyError``.
    """

    def __init__(
        self, keys: KeysCollection, output_key: str | None, transform: Callable, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if output_key is not None and len(self.keys) != 1:
            raise ValueError(
                f"output_key can only be used with a single key, got keys={list(self.keys)} and "
                f"output_key={output_key!r}; pass output_key=None to replace each key in place"
            )
        self.output_key = output_key
        self.transform = transform

    def __call__(self, data: Any) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key if self.output_key is None else self.output_key] = self.transform(d[key])
        return d


class RandomKeyLoopd(Randomizable, KeyLoopd):
    """:class:`KeyLoopd` around a random array transform: ``set_random_state`` seeds that transform.

    The draws depend on the label, so they are made inside the array transform's call; this
    wrapper's own ``randomize`` does nothing.
    """

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> RandomKeyLoopd:
        super().set_random_state(seed, state)
        self.transform.set_random_state(seed, state)
        return self

    def randomize(self, data: Any = None) -> None:
        """No-op: the draws are made by the array transform."""
