"""ForegroundOversampler: the share of draws among the items with foreground, seeding, ranks, and errors."""

import pytest
import torch
from bundle_helpers import ROOT, config_parser, error_chain
from torch.utils.data import DataLoader

from wss_monai.bundle import bundle_configs, foreground_sampler
from wss_monai.data import (
    ForegroundOversampler,
    VolumeBatchSampler,
    VolumeSliceDataset,
    WholeVolumeDataset,
    make_atlas_phantoms,
)

FOREGROUND_SLICES = {(0, 1), (2, 0), (2, 3)}  # (volume, slice) pairs whose label holds a class


def _dataset(depths=(4, 3, 5)):
    volumes = []
    for v, depth in enumerate(depths):
        label = torch.zeros(1, 3, 3, depth, dtype=torch.long)
        for fv, fs in FOREGROUND_SLICES:
            if fv == v:
                label[0, 1, 2, fs] = 2
        volumes.append({"image": torch.full((1, 3, 3, depth), float(v)), "label": label})
    return VolumeSliceDataset(volumes, image_keys=["image", "label"])


def test_foreground_items_of_slices_volumes_box_ids_and_scribbles():
    dataset = _dataset()
    fg = dataset.foreground_items("label")
    assert {dataset.index[i] for i in torch.nonzero(fg).flatten().tolist()} == FOREGROUND_SLICES
    whole = WholeVolumeDataset(dataset.volumes, image_keys=["image", "label"])
    assert whole.foreground_items("label").tolist() == [True, False, True]
    # a scribble map: -1 unlabelled and 0 background are not foreground; a (K - 1, ...) box-id map: any channel
    scribble = torch.full((1, 2, 2, 3), -1)
    scribble[0, 0, 0, 0], scribble[0, 1, 1, 2] = 0, 1
    box_ids = torch.zeros(2, 2, 2, 3, dtype=torch.long)
    box_ids[1, :, :, 1] = 4
    volume = {"image": torch.zeros(1, 2, 2, 3), "scribble": scribble, "box_ids": box_ids}
    slices = VolumeSliceDataset([volume], image_keys=["image", "scribble", "box_ids"])
    assert slices.foreground_items("scribble").tolist() == [False, False, True]
    assert slices.foreground_items("box_ids").tolist() == [False, True, False]


@pytest.mark.parametrize("fraction", [0.0, 0.33, 1.0])
def test_share_of_foreground_draws_is_the_fraction_plus_the_rest_drawn_anywhere(fraction):
    dataset = _dataset()
    n, n_fg = len(dataset), len(FOREGROUND_SLICES)
    sampler = ForegroundOversampler(dataset, "label", fraction, seed=5)
    draws = torch.tensor([i for _ in range(2000) for i in sampler])
    assert len(draws) == 2000 * n and len(sampler) == n
    is_fg = dataset.foreground_items("label")[draws].float()
    expected = fraction + (1 - fraction) * n_fg / n  # 0.25, 0.4975, 1 with 3 of 12 slices
    assert abs(is_fg.mean().item() - expected) < 0.01
    if fraction == 0.0:  # plain uniform draws: every slice about as often
        counts = torch.bincount(draws, minlength=n).float() / len(draws)
        assert torch.allclose(counts, torch.full((n,), 1 / n), atol=0.01)


def test_seeded_epochs_set_epoch_and_ranks():
    dataset = _dataset()
    first = ForegroundOversampler(dataset, "label", 0.5, seed=3)
    epochs = [list(first) for _ in range(3)]
    assert epochs[0] != epochs[1]
    again = ForegroundOversampler(dataset, "label", 0.5, seed=3)
    assert [list(again) for _ in range(3)] == epochs
    again.set_epoch(1)
    assert list(again) == epochs[1]
    assert list(ForegroundOversampler(dataset, "label", 0.5, seed=4)) != epochs[0]
    # two processes: rank r keeps draws r, r + 2, ... of the same epoch (12 items: 6 each)
    shares = [list(ForegroundOversampler(dataset, "label", 0.5, seed=3, num_replicas=2, rank=r)) for r in (0, 1)]
    assert shares[0] == epochs[0][0::2] and shares[1] == epochs[0][1::2]


def test_dataloader_batches_and_errors():
    dataset = _dataset()
    loader = DataLoader(dataset, batch_size=4, sampler=ForegroundOversampler(dataset, "label", 1.0, seed=0))
    batches = list(loader)
    assert len(batches) == 3 and all((b["label"] > 0).flatten(1).any(1).all() for b in batches)
    with pytest.raises(KeyError, match=r"foreground key 'scribble' is not one of the keys the loss sees"):
        ForegroundOversampler(dataset, "scribble", 0.5)
    with pytest.raises(ValueError, match=r"foreground_oversample must be a number in \[0, 1\], got 1.5"):
        ForegroundOversampler(dataset, "label", 1.5)
    empty = VolumeSliceDataset([{"image": torch.zeros(1, 2, 2, 2), "label": torch.zeros(1, 2, 2, 2)}])
    with pytest.raises(ValueError, match=r"no training item holds a value > 0 in 'label'"):
        ForegroundOversampler(empty, "label", 0.2)
    with pytest.raises(TypeError, match=r"needs a VolumeSliceDataset or WholeVolumeDataset, got list"):
        ForegroundOversampler([1, 2], "label", 0.2)
    assert foreground_sampler(dataset, None, 0.0, seed=0) is None
    with pytest.raises(ValueError, match=r"needs foreground_key.*--foreground_key label"):
        foreground_sampler(dataset, None, 0.3, seed=0)
    with pytest.raises(ValueError, match=r"cannot be combined with the recipe's batch_sampler \(VolumeBatchSampler\)"):
        foreground_sampler(dataset, "label", 0.3, seed=0, batch_sampler=VolumeBatchSampler(dataset))


@pytest.fixture(scope="module")
def atlas_phantoms(tmp_path_factory):
    return make_atlas_phantoms(tmp_path_factory.mktemp("atlas"), num_cases=3, seed=1, shape=(32, 32, 14))


@pytest.fixture
def common(atlas_phantoms, tmp_path):
    """The overrides of every parsed atlas config here: the phantoms, a fresh output folder, 32² slices."""
    return {"dataset_dir": str(atlas_phantoms), "output_dir": str(tmp_path / "out"), "num_validation": 1,
            "spatial_size": 32}  # fmt: skip


@pytest.mark.parametrize(
    "recipe, key", [("configs/lesion/gdl.yaml", "label"), ("configs/supervision/boxes.yaml", "box_ids")]
)
def test_bundle_loader_draws_the_recipes_annotation(recipe, key, common):
    parser = config_parser(bundle_configs("atlas", ROOT / recipe), foreground_oversample=1.0, batch_size=4, **common)
    sampler = parser.get_parsed_content("train#sampler")
    assert isinstance(sampler, ForegroundOversampler) and sampler.key == key
    batch = next(iter(parser.get_parsed_content("train#dataloader")))
    assert (batch[key] > 0).flatten(1).any(1).all()  # every slice of the batch holds a lesion (or its box)
    plain = config_parser(bundle_configs("atlas", ROOT / recipe), **common)
    assert plain.get_parsed_content("train#sampler") is None
    loader = plain.get_parsed_content("train#dataloader")
    assert isinstance(loader.sampler, torch.utils.data.RandomSampler)  # shuffled as before
    size = config_parser(bundle_configs("atlas", ROOT / "configs/supervision/size.yaml"), foreground_oversample=0.3,
                         **common)  # fmt: skip
    with pytest.raises(Exception) as info:
        size.get_parsed_content("train#sampler")
    assert "needs foreground_key" in error_chain(info.value)


def test_multi_gpu_config_keeps_the_oversampler(common):
    configs = bundle_configs("atlas", ROOT / "configs/lesion/gdl.yaml", kind="multi_gpu_train")
    parser = config_parser(configs, foreground_oversample=0.5, **common)
    sampler = parser.get_parsed_content("train#sampler")  # one process without a process group: 1 replica
    assert isinstance(sampler, ForegroundOversampler) and (sampler.num_replicas, sampler.rank) == (1, 0)
    assert parser.get_parsed_content("train#dataloader").sampler is sampler
