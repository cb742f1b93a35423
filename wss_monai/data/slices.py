"""2D slices drawn from preprocessed 3D volumes, for slice-wise training as in the 2D papers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Randomizable, apply_transform
from torch.utils.data import Dataset

__all__ = ["VolumeSliceDataset"]


def _plain(value: Any) -> Any:
    return value.as_tensor() if isinstance(value, MetaTensor) else value


class VolumeSliceDataset(Dataset, Randomizable):
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
        self.volumes = [volumes[v] for v in range(len(volumes))]
        self.image_keys, self.slice_keys, self.volume_keys = list(image_keys), list(slice_keys), list(volume_keys)
        self.transform = transform
        index: list[tuple[int, int]] = []
        for v, volume in enumerate(self.volumes):
            missing = [k for k in self.image_keys + self.slice_keys + self.volume_keys if k not in volume]
            if missing:
                raise KeyError(f"volume {v} ({volume.get('patient', '?')}) lacks keys {missing}; has {sorted(volume)}")
            first = volume[self.image_keys[0]]
            if first.ndim != 4:
                raise ValueError(f"{self.image_keys[0]!r} of volume {v} must be (C, H, W, D), got {tuple(first.shape)}")
            depth = first.shape[-1]
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

    def __len__(self) -> int:
        return len(self.index)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        if isinstance(self.transform, Randomizable):
            self.transform.set_random_state(seed, state)
        return self

    def randomize(self, data: Any = None) -> None:
        pass

    def __getitem__(self, i: int) -> dict:
        v, s = self.index[i]
        volume = self.volumes[v]
        item = {key: _plain(volume[key][..., s]) for key in self.image_keys + self.slice_keys}
        item.update({key: volume[key] for key in self.volume_keys})
        item["volume_index"] = v
        item["slice_index"] = s
        return apply_transform(self.transform, item) if self.transform is not None else item
