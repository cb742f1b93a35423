"""2D slices drawn from preprocessed 3D volumes, for slice-wise training as in the 2D papers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.data import MetaTensor
from monai.transforms import apply_transform

from wss_monai.data.seeded import SeededTransformDataset

__all__ = ["HeldVolumes", "VolumeSliceDataset"]


def _plain(value: Any) -> Any:
    return value.as_tensor() if isinstance(value, MetaTensor) else value


class HeldVolumes(SeededTransformDataset):
    """Base of the datasets that read each volume of ``volumes`` once and serve items cut from them.

    Holds the volumes, the key lists and the seeded ``transform``; checks that a volume has its keys
    and a ``(C, H, W, D)`` first image key (:meth:`checked_depth`); builds an item from its arrays, the
    ``volume_keys`` and ``volume_index`` and transforms it (:meth:`finish_item`); tells which items hold
    foreground (:meth:`foreground_items`). Subclasses set ``self.index`` (volume indices, or
    ``(volume, slice)`` pairs) and ``__getitem__``.
    """

    def __init__(
        self,
        volumes: Sequence[dict],
        image_keys: Sequence[str],
        volume_keys: Sequence[str],
        transform: Callable | None,
    ) -> None:
        self.volumes = [volumes[v] for v in range(len(volumes))]
        self.image_keys, self.volume_keys = list(image_keys), list(volume_keys)
        self.transform = transform
        self.index: list = []

    def checked_depth(self, v: int, volume: dict, keys: Sequence[str]) -> int:
        """The depth of volume ``v`` after checking that it holds ``keys`` and a 4D first image key."""
        missing = [k for k in keys if k not in volume]
        if missing:
            raise KeyError(f"volume {v} ({volume.get('patient', '?')}) lacks keys {missing}; has {sorted(volume)}")
        first = volume[self.image_keys[0]]
        if first.ndim != 4:
            raise ValueError(f"{self.image_keys[0]!r} of volume {v} must be (C, H, W, D), got {tuple(first.shape)}")
        return first.shape[-1]

    def __len__(self) -> int:
        return len(self.index)

    def foreground_items(self, key: str) -> torch.Tensor:
        """``(len(self),)`` bool: which items hold a value > 0 in ``key`` (a class in a label or scribble
        map, a box in a box-id map).

        Raises:
            KeyError: ``key`` is not one of the ``image_keys`` (only those reach the loss: another key,
                such as the full label of a weak recipe, must not steer the sampling).
        """
        if key not in self.image_keys:
            raise KeyError(f"foreground key {key!r} is not one of the keys the loss sees, {self.image_keys}")
        per_slice = [(torch.as_tensor(volume[key]) > 0).flatten(0, -2).any(0) for volume in self.volumes]
        return torch.tensor(
            [bool(per_slice[e[0]][e[1]]) if isinstance(e, tuple) else bool(per_slice[e].any()) for e in self.index],
            dtype=torch.bool,
        )

    def finish_item(self, v: int, item: dict) -> dict:
        """``item`` with volume ``v``'s ``volume_keys`` and ``volume_index``, through ``transform``."""
        item.update({key: self.volumes[v][key] for key in self.volume_keys})
        item["volume_index"] = v
        return apply_transform(self.transform, item) if self.transform is not None else item


class VolumeSliceDataset(HeldVolumes):
    """Every slice along the last spatial axis of every volume of ``volumes``, as one item.

    ``volumes`` is usually a ``CacheDataset`` of volumes already loaded, normalised, resized and
    given their weak labels. Each volume is read **once**, when this dataset is built, and kept:
    a ``CacheDataset`` re-runs everything from its first random transform on every access, so
    without this a seeded scribble or point generator would draw new weak labels at each fetch.
    Here they are drawn once per volume (in volume order, from the seeded generators) and stay
    fixed for the whole training, as in the papers.

    Each item is a dict with, for each key of ``image_keys`` (channel-first ``(C, H, W, D)``), the
    slice ``(C, H, W)``; for each key of ``slice_keys`` (a trailing slice axis, e.g. tags ``(K, D)``
    or bounds ``(K, 2, D)``), its value at that slice; every other key of the volume copied as is
    (``volume_keys``); plus ``volume_index`` and ``slice_index``.

    Args:
        volumes: sequence of volume dicts.
        image_keys: keys holding ``(C, H, W, D)`` arrays.
        slice_keys: keys holding per-slice values on their last axis.
        volume_keys: keys copied unchanged (e.g. ``patient``, volume-level ``bounds``).
        transform: applied to each slice dict (2D augmentation); seeded through ``set_random_state``.
        skip_empty_key: if given, slices where this key holds no value ≥ 0 (e.g. a scribble slice with no
            annotated voxel) are left out.
    """

    def __init__(
        self,
        volumes: Sequence[dict],
        image_keys: Sequence[str] = ("image", "label"),
        slice_keys: Sequence[str] = (),
        volume_keys: Sequence[str] = (),
        transform: Callable | None = None,
        skip_empty_key: str | None = None,
    ) -> None:
        super().__init__(volumes, image_keys, volume_keys, transform)
        self.slice_keys = list(slice_keys)
        index: list[tuple[int, int]] = []
        for v, volume in enumerate(self.volumes):
            depth = self.checked_depth(v, volume, self.image_keys + self.slice_keys + self.volume_keys)
            for key in self.image_keys + self.slice_keys:
                if volume[key].shape[-1] != depth:
                    raise ValueError(f"{key!r} of volume {v} has {volume[key].shape[-1]} slices, expected {depth}")
            slices = range(depth)
            if skip_empty_key is not None:
                annotated = (torch.as_tensor(volume[skip_empty_key]) >= 0).flatten(0, -2).any(0)
                slices = [int(s) for s in torch.nonzero(annotated).flatten()]
            index.extend((v, s) for s in slices)
        if not index:
            raise ValueError("no slice to train on: the volumes are empty or every slice was skipped")
        self.index = index

    def __getitem__(self, i: int) -> dict:
        v, s = self.index[i]
        item = {key: _plain(self.volumes[v][key][..., s]) for key in self.image_keys + self.slice_keys}
        item["slice_index"] = s
        return self.finish_item(v, item)
