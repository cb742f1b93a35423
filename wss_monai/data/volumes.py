"""Whole preprocessed volumes as training items, for 3D training (``configs/profiles/whole_volumes_3d.yaml``)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.data import list_data_collate

from wss_monai.constants import UNLABELLED
from wss_monai.data.slices import HeldVolumes, _plain
from wss_monai.transforms._slices import check_int
from wss_monai.transforms.depth_pad import DivisibleDepthPadd, padded_depth

__all__ = ["PadDepthCollate", "WholeVolumeDataset"]


class WholeVolumeDataset(HeldVolumes):
    """Every volume of ``volumes`` as one item: the 3D counterpart of :class:`~wss_monai.data.VolumeSliceDataset`.

    As there, each volume is read **once**, when this dataset is built, and kept, so that the weak
    labels drawn by seeded random transforms of a ``CacheDataset`` stay fixed for the whole training;
    ``transform`` (the augmentation) is seeded through ``set_random_state``.

    Each item is a dict with, for each key of ``image_keys``, the volume ``(C, H, W, D)`` as a plain
    tensor; every key of ``volume_keys`` copied as is; and ``volume_index``. Depths may differ from
    volume to volume: :class:`PadDepthCollate` pads them to a common one when they are batched.

    Args:
        volumes: sequence of volume dicts.
        image_keys: keys holding ``(C, H, W, D)`` arrays of one spatial shape per volume.
        volume_keys: keys copied unchanged (e.g. ``patient``).
        transform: applied to each volume dict (3D augmentation); seeded through ``set_random_state``.
        skip_empty_key: if given, volumes where this key holds no value ≥ 0 (no annotated voxel) are left out.

    Example:
        >>> import torch
        >>> volumes = [{"image": torch.zeros(1, 2, 2, d), "scribble": torch.full((1, 2, 2, d), -1.0)} for d in (2, 3)]
        >>> volumes[1]["scribble"][0, 0, 0, 0] = 1
        >>> dataset = WholeVolumeDataset(volumes, image_keys=["image", "scribble"], skip_empty_key="scribble")
        >>> len(dataset), dataset[0]["volume_index"], tuple(dataset[0]["image"].shape)
        (1, 1, (1, 2, 2, 3))
    """

    def __init__(
        self,
        volumes: Sequence[dict],
        image_keys: Sequence[str] = ("image", "label"),
        volume_keys: Sequence[str] = (),
        transform: Callable | None = None,
        skip_empty_key: str | None = None,
    ) -> None:
        if not list(image_keys):
            raise ValueError("image_keys must name at least one (C, H, W, D) key, got []")
        super().__init__(volumes, image_keys, volume_keys, transform)
        index: list[int] = []
        for v, volume in enumerate(self.volumes):
            self.checked_depth(v, volume, self.image_keys + self.volume_keys)
            first = volume[self.image_keys[0]]
            for key in self.image_keys:
                if volume[key].ndim != 4 or tuple(volume[key].shape[1:]) != tuple(first.shape[1:]):
                    raise ValueError(
                        f"{key!r} of volume {v} has shape {tuple(volume[key].shape)}, expected (C, "
                        f"{', '.join(str(n) for n in first.shape[1:])}) like {self.image_keys[0]!r}"
                    )
            if skip_empty_key is None or bool((torch.as_tensor(volume[skip_empty_key]) >= 0).any()):
                index.append(v)
        if not index:
            raise ValueError("no volume to train on: the volumes are empty or every volume was skipped")
        self.index = index

    def __getitem__(self, i: int) -> dict:
        v = self.index[i]
        return self.finish_item(v, {key: _plain(self.volumes[v][key]) for key in self.image_keys})


class PadDepthCollate:
    """Collate function padding the volumes of a batch to one depth, with a fill value per key.

    The common depth is the smallest multiple of ``multiple`` that holds the deepest volume of the
    batch (:func:`wss_monai.transforms.padded_depth`); each key is padded with
    :class:`wss_monai.transforms.DivisibleDepthPadd` (``"symmetric"``) and the batch is then collated
    by MONAI's ``list_data_collate``. Used as ``DataLoader(..., collate_fn=PadDepthCollate(...))``.

    Args:
        keys: keys of the ``(C, H, W, D)`` volumes to pad; the other keys are collated as they are.
        multiple: the batch depth is a multiple of it (the product of the network's depth strides, or more).
        values: key → fill value (e.g. ``{"image": 0, "label": 0, "ignore": 1}``).
        default_value: fill value of the keys not in ``values`` (weak label maps): :data:`UNLABELLED`.

    Example:
        >>> import torch
        >>> items = [{"image": torch.ones(1, 1, 1, d), "scribble": torch.zeros(1, 1, 1, d)} for d in (3, 5)]
        >>> batch = PadDepthCollate(["image", "scribble"], multiple=2, values={"image": 0})(items)
        >>> tuple(batch["image"].shape), batch["scribble"][0].flatten().tolist()
        ((2, 1, 1, 1, 6), [-1.0, 0.0, 0.0, 0.0, -1.0, -1.0])
    """

    def __init__(
        self,
        keys: Sequence[str],
        multiple: int = 1,
        values: Mapping[Hashable, float] | None = None,
        default_value: float = UNLABELLED,
    ) -> None:
        self.keys = [keys] if isinstance(keys, str) else list(keys)
        if not self.keys:
            raise ValueError("keys must name at least one (C, H, W, D) key, got []")
        self.multiple = check_int("multiple", multiple, 1)
        self.values, self.default_value = values, default_value
        # built once here so that bad values raise now, not at the first batch
        DivisibleDepthPadd(self.keys, multiple, 0, values, default_value)

    def __call__(self, items: Sequence[Mapping]) -> Any:
        depth = padded_depth(max(item[key].shape[-1] for item in items for key in self.keys), self.multiple)
        pad = DivisibleDepthPadd(self.keys, self.multiple, depth, self.values, self.default_value)
        return list_data_collate([pad(item) for item in items])
