"""Checks at load time: a bad file stops the run with its name and the offending values."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

__all__ = ["CheckFinited", "CheckImageShaped", "CheckLabelsd", "check_one_image_key", "source_name"]


def check_one_image_key(keys: tuple, output_key: Hashable = "output") -> None:
    """Raises ``ValueError`` unless a transform that writes one result from one image has exactly one
    key in ``keys`` and a usable ``output_key`` (a hashable name, not ``None``)."""
    if len(keys) != 1:
        raise ValueError(f"keys must name one image key, got {list(keys)}")
    if not isinstance(output_key, Hashable) or output_key is None:
        raise ValueError(f"output_key must be a key name, got {output_key!r}")


def source_name(value: Any, key: Hashable) -> str:
    """The file a loaded array came from (``MetaTensor.meta['filename_or_obj']``), else the key."""
    if isinstance(value, MetaTensor):
        name = value.meta.get("filename_or_obj")
        if name:
            return f"{key!r} ({name})"
    return repr(key)


class CheckFinited(MapTransform):
    """Raises ``ValueError`` naming the file and the count when an array holds NaN or inf values.

    Example:
        >>> import torch
        >>> CheckFinited("image")({"image": torch.tensor([[float("nan"), 1.0]])})
        Traceback (most recent call last):
        ...
        ValueError: 'image' holds 1 NaN/inf values out of 2; clean or mask the intensities first
    """

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            values = torch.as_tensor(d[key])
            bad = int((~torch.isfinite(values)).sum()) if values.is_floating_point() else 0
            if bad:
                raise ValueError(
                    f"{source_name(d[key], key)} holds {bad} NaN/inf values out of {values.numel()}; "
                    "clean or mask the intensities first"
                )
        return d


class CheckImageShaped(MapTransform):
    """Checks channel-first images ``(C, H, W, D)``: the number of spatial axes and of channels a network takes.

    Placed after ``EnsureChannelFirstd``, it turns what would be a convolution's shape error deep in the
    network (a 4D series given where a 3D volume was expected, a missing modality) into an error naming
    the file.

    Args:
        keys: image keys.
        num_channels: channels the network takes (``None``: any).
        spatial_dims: spatial axes after the channel (3 for volumes).

    Example:
        >>> import torch
        >>> CheckImageShaped("image", num_channels=1)({"image": torch.zeros(30, 8, 8, 4)})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: 'image' has 30 channels (shape (30, 8, 8, 4)) but the network takes 1; ...
    """

    def __init__(
        self,
        keys: KeysCollection,
        num_channels: int | None = None,
        spatial_dims: int = 3,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if num_channels is not None and (isinstance(num_channels, bool) or int(num_channels) < 1):
            raise ValueError(f"num_channels must be an integer >= 1 or None, got {num_channels!r}")
        self.num_channels = None if num_channels is None else int(num_channels)
        self.spatial_dims = int(spatial_dims)

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            shape = tuple(d[key].shape)
            name = source_name(d[key], key)
            if len(shape) != self.spatial_dims + 1:
                raise ValueError(
                    f"{name} has shape {shape}: expected a channel axis and {self.spatial_dims} spatial axes"
                )
            if self.num_channels is not None and shape[0] != self.num_channels:
                raise ValueError(
                    f"{name} has {shape[0]} channels (shape {shape}) but the network takes {self.num_channels}; "
                    "a 4D series (time or modalities on the last axis) is read as channels: give one 3D volume "
                    "per channel"
                )
        return d


class CheckLabelsd(MapTransform):
    """Checks label maps: integer values in ``[0, num_classes)`` and the reference image's grid.

    Args:
        keys: label keys, channel-first ``(1, H, W[, D])``.
        num_classes: number of classes; other values raise ``ValueError`` listing them.
        reference_key: key of the image the label must match in spatial shape and affine
            (``None``: no comparison).
        extra_values: values allowed on top of the classes (e.g. an unlabelled marker).
        atol: tolerance on the affine difference, in mm.
    """

    def __init__(
        self,
        keys: KeysCollection,
        num_classes: int,
        reference_key: str | None = "image",
        extra_values: tuple[int, ...] = (),
        atol: float = 1e-3,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        self.num_classes, self.reference_key = int(num_classes), reference_key
        self.extra_values, self.atol = tuple(int(v) for v in extra_values), float(atol)

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            label = d[key]
            name = source_name(label, key)
            values = torch.unique(torch.as_tensor(label))
            allowed = set(range(self.num_classes)) | set(self.extra_values)
            bad = [v for v in values.tolist() if v not in allowed]
            if bad:
                raise ValueError(f"{name} holds values {bad[:10]} outside the classes 0..{self.num_classes - 1}")
            if self.reference_key is None:
                continue
            if self.reference_key not in d:
                raise KeyError(f"reference key {self.reference_key!r} missing; keys present: {sorted(map(str, d))}")
            ref = d[self.reference_key]
            ref_name = source_name(ref, self.reference_key)
            if tuple(label.shape[1:]) != tuple(ref.shape[1:]):
                raise ValueError(
                    f"{name} has spatial shape {tuple(label.shape[1:])} but {ref_name} has {tuple(ref.shape[1:])}"
                )
            if isinstance(label, MetaTensor) and isinstance(ref, MetaTensor):
                diff = float(np.abs(np.asarray(label.affine) - np.asarray(ref.affine)).max())
                if diff > self.atol:
                    raise ValueError(
                        f"{name} and {ref_name} have different affines (max difference {diff:.4g} mm); "
                        "resample the label onto the image grid first"
                    )
        return d
