"""Batches made of whole volumes (per-volume constraint sums see every slice), their share per process, and
training items oversampled among those holding foreground."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

from wss_monai.data.slices import HeldVolumes, VolumeSliceDataset
from wss_monai.utils.distributed import get_rank, get_world_size

__all__ = ["DistributedBatchSampler", "ForegroundOversampler", "VolumeBatchSampler"]


def _replicas(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    """``(num_replicas, rank)`` checked, each defaulting to the process group's (1 and 0 without one)."""
    num_replicas = get_world_size() if num_replicas is None else num_replicas
    rank = get_rank() if rank is None else rank
    if int(num_replicas) != num_replicas or num_replicas < 1:
        raise ValueError(f"num_replicas must be a positive integer, got {num_replicas}")
    if int(rank) != rank or not 0 <= rank < num_replicas:
        raise ValueError(f"rank must be an integer in [0, {num_replicas - 1}], got {rank}")
    return int(num_replicas), int(rank)


def checked_fraction(fraction: float) -> float:
    """``foreground_oversample`` as a float, after checking that it is a number in [0, 1]."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
        raise ValueError(f"foreground_oversample must be a number in [0, 1], got {fraction!r}")
    return float(fraction)


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


class DistributedBatchSampler(Sampler[list[int]]):
    """Each process's share of the batches of a batch sampler, for ``torchrun`` training.

    Every rank draws the same sequence of batches from ``batch_sampler`` (a :class:`VolumeBatchSampler`
    shuffles with ``seed + epoch``, which no rank changes) and keeps batches ``rank, rank + R, rank + 2R, …``
    (``R`` processes), so the ranks' shares are disjoint and each rank has ``⌈n / R⌉`` batches of an
    epoch's ``n``: with ``drop_last=False`` the last ``R⌈n/R⌉ − n`` shares are filled with the first
    batches again (as :class:`torch.utils.data.DistributedSampler` pads its indices), with
    ``drop_last=True`` the last ``n mod R`` batches are left out and each rank has ``⌊n / R⌋``.

    ``set_epoch`` is passed on to ``batch_sampler``; as with a :class:`VolumeBatchSampler` alone, each
    pass advances its epoch by one, so resuming needs only ``set_epoch(resumed_epoch)``.

    Args:
        batch_sampler: yields lists of dataset indices, the same on every rank.
        num_replicas: number of processes ``R`` (default: the process group's size, 1 without one).
        rank: this process's rank (default: from the process group, 0 without one).
        drop_last: leave out the last batches rather than repeat the first ones.

    Example:
        >>> import torch
        >>> volumes = [{"image": torch.zeros(1, 2, 2, 1)} for _ in range(3)]
        >>> dataset = VolumeSliceDataset(volumes, image_keys=["image"])
        >>> inner = VolumeBatchSampler(dataset, shuffle=False)
        >>> [list(DistributedBatchSampler(inner, num_replicas=2, rank=r)) for r in (0, 1)]
        [[[0], [2]], [[1], [0]]]
    """

    def __init__(
        self,
        batch_sampler,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = False,
    ) -> None:
        if not hasattr(batch_sampler, "__iter__") or not hasattr(batch_sampler, "__len__"):
            raise TypeError(f"batch_sampler must be an iterable with a length, got {type(batch_sampler).__name__}")
        self.batch_sampler = batch_sampler
        (self.num_replicas, self.rank), self.drop_last = _replicas(num_replicas, rank), bool(drop_last)

    def set_epoch(self, epoch: int) -> None:
        """Sets the epoch of the wrapped sampler (when it has ``set_epoch``)."""
        if callable(getattr(self.batch_sampler, "set_epoch", None)):
            self.batch_sampler.set_epoch(epoch)

    def __len__(self) -> int:
        n = len(self.batch_sampler) / self.num_replicas
        return math.floor(n) if self.drop_last else math.ceil(n)

    def __iter__(self) -> Iterator[list[int]]:
        batches = list(self.batch_sampler)
        total = len(self) * self.num_replicas
        if not batches:
            return
        if total > len(batches):
            batches += (batches * math.ceil(total / len(batches)))[: total - len(batches)]
        yield from batches[self.rank : total : self.num_replicas]


class ForegroundOversampler(Sampler[int]):
    """Training items drawn so that about ``fraction`` of them hold foreground, for small or rare structures.

    nnU-Net's foreground oversampling (Isensee et al., Nature Methods 2021: a third of each batch forced to
    contain foreground), applied to the slices (or volumes) of a :class:`HeldVolumes` dataset: each of an
    epoch's ``len(dataset)`` draws is, with probability ``fraction``, an item whose ``key`` holds a value
    > 0 (a class of a label or scribble map, a box of a box-id map), and otherwise any item; drawn with
    replacement. Small lesions fill a few slices of a brain volume: with plain shuffling a network sees
    mostly empty slices and can settle on predicting none (docs/boxes.md, the lesion phantoms).

    The draws of epoch ``e`` come from a generator seeded with ``seed + e``, the same on every process;
    with ``num_replicas`` processes (``torchrun``) rank ``r`` keeps draws ``r, r + R, …`` of the epoch,
    padded to ``R ⌈n / R⌉`` draws. Each pass advances the epoch by one; ``set_epoch(e)`` jumps to epoch
    ``e`` (when resuming), as for :class:`VolumeBatchSampler`.

    Args:
        dataset: a :class:`HeldVolumes` dataset (:class:`VolumeSliceDataset`, ``WholeVolumeDataset``).
        key: the annotation the foreground is read from; one of the dataset's ``image_keys``, so that a weak
            recipe cannot steer its sampling with the full label it never trains on.
        fraction: the probability in [0, 1] that a draw is made among the items with foreground.
        seed: base seed of the draws.
        num_replicas: number of processes (default: the process group's size, 1 without one).
        rank: this process's rank (default: from the process group, 0 without one).

    Raises:
        TypeError: ``dataset`` is not a :class:`HeldVolumes` dataset.
        KeyError: ``key`` is not one of its ``image_keys``.
        ValueError: ``fraction`` is outside [0, 1], or it is > 0 and no item holds foreground.

    Example:
        >>> import torch
        >>> volumes = [{"image": torch.zeros(1, 2, 2, 4), "label": torch.zeros(1, 2, 2, 4)}]
        >>> volumes[0]["label"][0, 0, 0, 3] = 1
        >>> dataset = VolumeSliceDataset(volumes)
        >>> sampler = ForegroundOversampler(dataset, "label", fraction=1.0)
        >>> list(sampler)
        [3, 3, 3, 3]
    """

    def __init__(
        self,
        dataset: HeldVolumes,
        key: str,
        fraction: float,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        if not isinstance(dataset, HeldVolumes):
            raise TypeError(
                f"ForegroundOversampler needs a VolumeSliceDataset or WholeVolumeDataset, got {type(dataset).__name__}"
            )
        fraction = checked_fraction(fraction)
        self.num_replicas, self.rank = _replicas(num_replicas, rank)
        self.foreground = torch.nonzero(dataset.foreground_items(key)).flatten()
        if fraction > 0 and not len(self.foreground):
            raise ValueError(f"foreground_oversample {fraction}: no training item holds a value > 0 in {key!r}")
        self.size, self.key, self.fraction, self.seed = len(dataset), key, fraction, int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Sets the epoch whose draws the next pass uses."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return math.ceil(self.size / self.num_replicas)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1
        total = len(self) * self.num_replicas
        anywhere = torch.randint(self.size, (total,), generator=generator)
        if len(self.foreground):
            among = self.foreground[torch.randint(len(self.foreground), (total,), generator=generator)]
            forced = torch.rand(total, generator=generator) < self.fraction
            anywhere = torch.where(forced, among, anywhere)
        yield from anywhere[self.rank :: self.num_replicas].tolist()
