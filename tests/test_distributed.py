"""The pieces of multi-process training that run without a process group: batch shares, merged duals, helpers."""

import pytest
import torch

from wss_monai.data.samplers import DistributedBatchSampler, VolumeBatchSampler
from wss_monai.data.slices import VolumeSliceDataset
from wss_monai.handlers.lagrangian import DualVariables
from wss_monai.losses.inequality import InequalityConstraintLoss
from wss_monai.utils.distributed import (
    NullSummaryWriter,
    all_gather_object,
    all_reduce_mean,
    all_reduce_sum,
    init_distributed,
    is_main_process,
    main_process_summary_writer,
)


def _volume_sampler(depths=(2, 3, 1, 2, 2), seed=4):
    volumes = [{"image": torch.zeros(1, 2, 2, d)} for d in depths]
    return VolumeBatchSampler(VolumeSliceDataset(volumes, image_keys=["image"]), seed=seed)


@pytest.mark.parametrize("num_replicas", [1, 2, 3])
def test_ranks_share_the_batches_of_an_epoch_without_overlap(num_replicas):
    inner = _volume_sampler()
    inner.set_epoch(3)
    batches = list(inner)  # the epoch every rank draws
    shares = []
    for rank in range(num_replicas):
        sampler = DistributedBatchSampler(_volume_sampler(), num_replicas=num_replicas, rank=rank, drop_last=True)
        sampler.set_epoch(3)
        shares.append(list(sampler))
    assert len({len(share) for share in shares}) == 1 and len(shares[0]) == len(batches) // num_replicas
    flat = [tuple(b) for share in shares for b in share]
    assert len(flat) == len(set(flat)) and set(flat) <= {tuple(b) for b in batches}


def test_padding_repeats_the_first_batches_and_epochs_advance():
    sampler = DistributedBatchSampler(_volume_sampler(), num_replicas=3, rank=2)
    assert len(sampler) == 2  # 5 batches over 3 ranks: 2 each, the 6th is the 1st again
    inner = _volume_sampler()
    first, second = list(inner), list(inner)  # epochs 0 and 1
    assert first != second
    assert list(sampler) == [first[2], first[0]]
    assert list(sampler) == [second[2], second[0]]


def test_batch_sampler_arguments_are_checked():
    with pytest.raises(ValueError, match="rank must be an integer in \\[0, 1\\], got 2"):
        DistributedBatchSampler(_volume_sampler(), num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="num_replicas must be a positive integer, got 0"):
        DistributedBatchSampler(_volume_sampler(), num_replicas=0, rank=0)
    with pytest.raises(TypeError, match="batch_sampler must be an iterable with a length"):
        DistributedBatchSampler(3)


def _batch(slices, upper):
    bounds = torch.tensor([[[0.0, 16.0], [2.0, u]] for u in upper])
    return {
        "bounds": bounds,
        "volume_index": torch.zeros(len(slices), dtype=torch.long),
        "slice_index": torch.tensor(slices),
    }


def test_merged_duals_step_as_one_process_that_saw_every_batch():
    logits = torch.zeros(2, 2, 4, 4)
    batches = [_batch([0, 1], [12.0, 5.0]), _batch([2, 1], [4.0, 7.0])]
    term = InequalityConstraintLoss(function="size", mode="lagrangian")
    one = DualVariables("lagrangian")
    ranks = [DualVariables("lagrangian") for _ in batches]
    for rank, batch in zip(ranks, batches):
        for duals in (one, rank):
            duals.accumulate(*term.constraint_values(logits, batch))
    parts = [rank.accumulator() for rank in ranks]
    for rank in ranks:
        rank.merge(parts)
        rank.step(0.5)
    one.step(0.5)
    for rank in ranks:
        assert torch.equal(rank.keys, one.keys)
        torch.testing.assert_close(rank.multipliers, one.multipliers)
    # size 8 against upper bounds 12 (slice 0), 5 and 7 (slice 1: mean violation 2), 4 (slice 2)
    assert one.multipliers[:, 0, 0, 1].tolist() == [0.0, 1.0, 2.0]


def test_helpers_are_identities_in_one_process(tmp_path):
    x = torch.tensor([1.0, 2.0])
    assert torch.equal(all_reduce_sum(x), x) and all_reduce_sum(x) is not x
    assert torch.equal(all_reduce_mean(x), x)
    assert all_gather_object({"a": 1}) == [{"a": 1}] and is_main_process()
    assert main_process_summary_writer(str(tmp_path / "tb")).__class__.__name__ == "SummaryWriter"
    assert NullSummaryWriter().add_scalars("a", {}, 0) is None
    with pytest.raises(TypeError, match="floating-point"):
        all_reduce_mean(torch.tensor([1]))
    with pytest.raises(ValueError, match="dist_backend must be one of"):
        init_distributed("mpi")
