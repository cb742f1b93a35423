"""Batches made of whole volumes, so that per-volume constraint sums see every slice."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

from wss_monai.data.slices import VolumeSliceDataset

__all__ = ["VolumeBatchSampler"]


class VolumeBatchSampler(Sampler[list[int]]):
    """Yields batches of dataset indices holding all slices of ``volumes_per_batch`` whole volumes.

    Used as ``DataLoader(dataset, batch_sampler=VolumeBatchSampler(dataset))`` for the 3D constraints
    (``per="volume"``), whose sums over a volume need all its slices in one batch. Within a batch the
    slices come volume by volume, in slice order; the batch size follows the volumes' depths (slices
    left out by ``skip_empty_key`` are not in the dataset, hence not in the sums either).

    Shuffling permutes the volumes with a generator seeded by ``seed + epoch``. Each pass over the
    sampler uses the current ``epoch`` and then advances it by one, so consecutive epochs differ and a
    new sampler with the same seed replays the same sequence; ``set_epoch(e)`` jumps to epoch ``e``
    (when resuming, or called before every epoch as for ``DistributedSampler``).

    Args:
        dataset: a :class:`VolumeSliceDataset` (or any dataset with its ``index`` of ``(volume, slice)`` pairs).
        volumes_per_batch: number of whole volumes per batch.
        shuffle: shuffle the order of the volumes each epoch.
        seed: base seed of the shuffling.
        drop_last: drop the last batch when it has fewer than ``volumes_per_batch`` volumes.

    Example:
        >>> import torch
        >>> volumes = [{"image": torch.zeros(1, 2, 2, d)} for d in (2, 3)]
        >>> dataset = VolumeSliceDataset(volumes, image_keys=["image"])
        >>> list(VolumeBatchSampler(dataset, shuffle=False))
        [[0, 1], [2, 3, 4]]
    """

    def __init__(
        self,
        dataset: VolumeSliceDataset,
        volumes_per_batch: int = 1,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        index = getattr(dataset, "index", None)
        if index is None or callable(index):
            raise TypeError(
                f"VolumeBatchSampler needs a VolumeSliceDataset (an 'index' of (volume, slice) pairs), "
                f"got {type(dataset).__name__}"
            )
        if int(volumes_per_batch) != volumes_per_batch or volumes_per_batch < 1:
            raise ValueError(f"volumes_per_batch must be a positive integer, got {volumes_per_batch}")
        pairs = torch.as_tensor(list(index), dtype=torch.long).reshape(-1, 2)
        if not pairs.shape[0]:
            raise ValueError("the dataset has no slice")
        # dataset indices grouped by volume, each volume's slices in slice order
        order = torch.argsort(pairs[:, 0] * (int(pairs[:, 1].max()) + 1) + pairs[:, 1])
        volumes, counts = torch.unique_consecutive(pairs[order, 0], return_counts=True)
        self.volume_ids = volumes.tolist()
        self.slices = list(torch.split(order, counts.tolist()))
        self.volumes_per_batch, self.shuffle, self.seed, self.drop_last = (
            int(volumes_per_batch), bool(shuffle), int(seed), bool(drop_last)
        )  # fmt: skip
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Sets the epoch whose shuffle the next pass uses."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = len(self.slices) / self.volumes_per_batch
        return math.floor(n) if self.drop_last else math.ceil(n)

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(len(self.slices), generator=generator).tolist()
        else:
            order = list(range(len(self.slices)))
        self.epoch += 1
        for start in range(0, len(self) * self.volumes_per_batch, self.volumes_per_batch):
            chosen = order[start : start + self.volumes_per_batch]
            yield torch.cat([self.slices[v] for v in chosen]).tolist()
