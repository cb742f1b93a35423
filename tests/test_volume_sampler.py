from collections import Counter

import pytest
import torch
from torch.utils.data import DataLoader

from wss_monai.data.samplers import VolumeBatchSampler
from wss_monai.data.slices import VolumeSliceDataset

DEPTHS = (3, 2, 4, 1, 2)


def _dataset(skip_empty=False):
    volumes = []
    for v, depth in enumerate(DEPTHS):
        scribble = torch.full((1, 2, 2, depth), -1)
        scribble[..., ::2] = 1  # even slices annotated
        volumes.append({"image": torch.full((1, 2, 2, depth), float(v)), "scribble": scribble})
    return VolumeSliceDataset(
        volumes, image_keys=["image", "scribble"], skip_empty_key="scribble" if skip_empty else None
    )


def _check_epoch(dataset, batches, volumes_per_batch):
    seen = Counter(i for batch in batches for i in batch)
    assert sorted(seen) == list(range(len(dataset))) and set(seen.values()) == {1}  # every slice once
    for batch in batches:
        volumes = {dataset.index[i][0] for i in batch}
        assert len(volumes) <= volumes_per_batch
        # whole volumes: every slice of each volume in the batch is in the batch
        assert sorted(batch) == sorted(i for i, (v, _) in enumerate(dataset.index) if v in volumes)


@pytest.mark.parametrize("volumes_per_batch", [1, 2, 3])
def test_every_slice_once_per_epoch_in_whole_volumes(volumes_per_batch):
    dataset = _dataset()
    sampler = VolumeBatchSampler(dataset, volumes_per_batch=volumes_per_batch, seed=3)
    assert len(sampler) == -(-len(DEPTHS) // volumes_per_batch)
    for _ in range(3):
        batches = list(sampler)
        assert len(batches) == len(sampler)
        _check_epoch(dataset, batches, volumes_per_batch)


def test_slices_in_order_and_unshuffled_order():
    dataset = _dataset()
    batches = list(VolumeBatchSampler(dataset, shuffle=False))
    assert [[dataset.index[i] for i in b] for b in batches][:2] == [[(0, 0), (0, 1), (0, 2)], [(1, 0), (1, 1)]]
    # a dataset with skipped slices: only the slices it holds
    sparse = _dataset(skip_empty=True)
    _check_epoch(sparse, list(VolumeBatchSampler(sparse, volumes_per_batch=2)), 2)


def test_seeded_reproducible_and_set_epoch():
    dataset = _dataset()
    first = VolumeBatchSampler(dataset, seed=7)
    epochs = [list(first) for _ in range(4)]
    assert len({str(e) for e in epochs}) > 1  # consecutive passes reshuffle
    replay = VolumeBatchSampler(dataset, seed=7)
    assert [list(replay) for _ in range(4)] == epochs  # same seed: same sequence
    jump = VolumeBatchSampler(dataset, seed=7)
    jump.set_epoch(2)
    assert list(jump) == epochs[2] and list(jump) == epochs[3]  # resumes, then advances
    for e in (1, 1):  # set before every epoch, as for DistributedSampler
        jump.set_epoch(e)
        assert list(jump) == epochs[1]
    other = VolumeBatchSampler(dataset, seed=8)
    assert [list(other) for _ in range(4)] != epochs


def test_dataloader_batches_hold_whole_volumes_and_drop_last():
    dataset = _dataset()
    sampler = VolumeBatchSampler(dataset, volumes_per_batch=2, seed=0)
    loader = DataLoader(dataset, batch_sampler=sampler)
    sizes = Counter()
    for batch in loader:
        for v in batch["volume_index"].unique().tolist():
            sizes[v] = int((batch["volume_index"] == v).sum())
        assert torch.equal(batch["image"][:, 0, 0, 0], batch["volume_index"].float())
    assert [sizes[v] for v in range(len(DEPTHS))] == list(DEPTHS)
    dropping = VolumeBatchSampler(dataset, volumes_per_batch=2, drop_last=True)
    assert len(dropping) == 2 and all(len({dataset.index[i][0] for i in b}) == 2 for b in dropping)


def test_errors():
    with pytest.raises(ValueError, match="volumes_per_batch must be a positive integer, got 0"):
        VolumeBatchSampler(_dataset(), volumes_per_batch=0)
    with pytest.raises(TypeError, match="needs a VolumeSliceDataset"):
        VolumeBatchSampler(list(range(4)))
