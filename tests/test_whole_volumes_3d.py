"""Whole-volume 3D training (configs/profiles/whole_volumes_3d.yaml): depth padding with a fill value
per key, the whole-volume dataset and its collate function, and end-to-end bundle runs on small phantoms."""

import doctest
import importlib
import json

import nibabel as nib
import numpy as np
import pytest
import torch
from bundle_helpers import ROOT, config_parser, run_bundle
from monai.transforms import Compose, RandFlipd

from wss_monai.bundle import bundle_configs
from wss_monai.constants import UNLABELLED
from wss_monai.data import PadDepthCollate, WholeVolumeDataset
from wss_monai.data.lesion_phantoms import make_wmh_phantoms
from wss_monai.data.phantoms import make_cardiac_phantoms
from wss_monai.transforms import DivisibleDepthPad, DivisibleDepthPadd, padded_depth

TRAIN = bundle_configs("acdc")
SCRIBBLES = ROOT / "configs/supervision/scribble_files.yaml"
FULL = ROOT / "configs/supervision/full.yaml"
PROFILE = ROOT / "configs/profiles/whole_volumes_3d.yaml"
# phantoms of 3 to 5 slices with a depth multiple of 4: batches mix depths 4 and 8, validation
# volumes of 5 slices take two sliding windows
MULTIPLE = 4
SMALL_3D = {
    "spatial_size": 32,
    "max_epochs": 2,
    "val_interval": 1,
    "num_validation": 2,
    "batch_size": 2,
    "volume_depth_multiple": MULTIPLE,
}


# ---- padding


def volume(depth: int, fill: float = 1.0, dtype=torch.float32) -> torch.Tensor:
    return torch.full((1, 3, 2, depth), fill, dtype=dtype)


@pytest.mark.parametrize(
    "depth, multiple, min_depth, expected", [(3, 4, 0, 4), (4, 4, 0, 4), (5, 4, 0, 8), (5, 4, 9, 12)]
)
def test_padded_depth_is_the_smallest_multiple_holding_both(depth, multiple, min_depth, expected):
    assert padded_depth(depth, multiple, min_depth) == expected


def test_padding_fills_images_with_0_weak_labels_with_unlabelled_and_ignore_with_true():
    scribble = torch.full((1, 3, 2, 5), float(UNLABELLED))
    scribble[0, 1, 1, :] = torch.tensor([0.0, 1.0, 2.0, 3.0, 0.0])  # an annotated voxel in each slice
    data = {"image": torch.randn(1, 3, 2, 5), "scribble": scribble, "ignore": torch.zeros(1, 3, 2, 5, dtype=torch.bool)}
    original = {k: v.clone() for k, v in data.items()}
    values = {"image": 0, "ignore": 1, "label": 0}  # scribble: the default, UNLABELLED
    out = DivisibleDepthPadd(["image", "scribble", "ignore"], multiple=4, values=values)(data)
    assert all(out[k].shape == (1, 3, 2, 8) for k in data)
    before, after = slice(0, 1), slice(6, 8)  # 3 slices of padding: 1 before, 2 after
    for pad in (before, after):
        assert (out["image"][..., pad] == 0).all()
        assert (out["scribble"][..., pad] == UNLABELLED).all()
        assert out["ignore"][..., pad].all() and out["ignore"].dtype == torch.bool
    for key in data:
        torch.testing.assert_close(out[key][..., 1:6], original[key])  # content kept, in place
        torch.testing.assert_close(data[key], original[key])  # input not mutated
    assert int((out["scribble"] >= 0).sum()) == int((scribble >= 0).sum())  # no annotation created


def test_padding_at_the_end_numpy_and_an_already_divisible_depth():
    array = np.arange(6, dtype=np.int64).reshape(1, 1, 2, 3)
    out = DivisibleDepthPad(multiple=2, value=-1, method="end")(array)
    assert isinstance(out, np.ndarray) and out.dtype == np.int64
    np.testing.assert_array_equal(out[..., :3], array)
    assert (out[..., 3] == -1).all()
    same = DivisibleDepthPad(multiple=3)(torch.ones(1, 1, 1, 6))
    assert same.shape == (1, 1, 1, 6)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: DivisibleDepthPad(multiple=0), r"multiple must be an integer >= 1, got 0"),
        (lambda: DivisibleDepthPad(multiple=2.5), r"multiple must be an integer >= 1, got 2.5"),
        (lambda: DivisibleDepthPad(min_depth=-1), r"min_depth must be an integer >= 0, got -1"),
        (lambda: DivisibleDepthPad(value=float("nan")), r"value must be a number in \(-inf, inf\), got nan"),
        (lambda: DivisibleDepthPad(method="edge"), r"method must be one of \('symmetric', 'end'\), got 'edge'"),
        (lambda: DivisibleDepthPadd("image", values=[0, -1]), r"values must map keys to fill values, got list"),
        (lambda: PadDepthCollate([], multiple=4), r"keys must name at least one \(C, H, W, D\) key, got \[\]"),
        (lambda: PadDepthCollate(["image"], multiple=0), r"multiple must be an integer >= 1, got 0"),
    ],
)
def test_bad_arguments_raise_with_the_value(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: DivisibleDepthPad(4)(torch.zeros(3, 2, 2)), r"volume must have shape \(C, H, W, D\), got \(3, 2, 2\)"),
        (lambda: DivisibleDepthPad(4)([[1.0]]), r"volume must be a numpy array or a torch tensor, got list"),
        (
            lambda: DivisibleDepthPad(4, value=-1)(volume(3, 0, torch.uint8)),
            r"value -1 cannot be stored in volume of dtype torch.uint8; convert its dtype first",
        ),
        (
            lambda: DivisibleDepthPad(4, value=2)(np.zeros((1, 1, 1, 3), dtype=bool)),
            r"value 2 cannot be stored in volume of dtype bool",
        ),
        (
            lambda: DivisibleDepthPadd(["image", "scribble"], 4)({"image": volume(3), "scribble": volume(4)}),
            r"keys to pad must share one depth \(last axis\), got \{'image': 3, 'scribble': 4\}",
        ),
    ],
)
def test_bad_inputs_raise_with_the_shape_or_dtype(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ---- dataset and collate


def volumes(depths=(3, 5, 2)) -> list[dict]:
    out, generator = [], torch.Generator().manual_seed(0)
    for v, depth in enumerate(depths):
        scribble = torch.full((1, 4, 4, depth), float(UNLABELLED))
        if v != 2:  # the last volume has no annotated voxel
            scribble[0, 1, 2, 0] = 1.0
        image = torch.randn(1, 4, 4, depth, generator=generator)
        out.append({"image": image, "scribble": scribble, "patient": f"p{v}"})
    return out


def test_dataset_gives_whole_volumes_and_skips_those_without_annotation():
    dataset = WholeVolumeDataset(volumes(), ["image", "scribble"], volume_keys=["patient"], skip_empty_key="scribble")
    assert len(dataset) == 2 and [dataset[i]["volume_index"] for i in range(2)] == [0, 1]
    item = dataset[1]
    assert item["image"].shape == (1, 4, 4, 5) and item["patient"] == "p1"
    assert len(WholeVolumeDataset(volumes(), ["image", "scribble"])) == 3


def test_dataset_errors_name_the_volume_and_shapes():
    bad = volumes()
    bad[1]["scribble"] = torch.zeros(1, 4, 3, 5)
    with pytest.raises(ValueError, match=r"'scribble' of volume 1 has shape \(1, 4, 3, 5\), expected \(C, 4, 4, 5\)"):
        WholeVolumeDataset(bad, ["image", "scribble"])
    with pytest.raises(KeyError, match=r"volume 0 \(p0\) lacks keys \['label'\]"):
        WholeVolumeDataset(volumes(), ["image", "label"])
    with pytest.raises(ValueError, match="no volume to train on"):
        WholeVolumeDataset(volumes()[2:], ["image", "scribble"], skip_empty_key="scribble")


def test_seeded_augmentation_is_reproducible():
    def draws(seed):
        flips = Compose([RandFlipd(["image", "scribble"], prob=0.5, spatial_axis=0)])
        dataset = WholeVolumeDataset(volumes(), ["image", "scribble"], transform=flips).set_random_state(seed)
        return [dataset[i % 3]["image"] for i in range(12)]

    first, again, other = draws(1), draws(1), draws(2)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


def test_collate_pads_a_batch_to_the_depth_multiple_holding_its_deepest_volume():
    dataset = WholeVolumeDataset(volumes(), ["image", "scribble"])
    collate = PadDepthCollate(["image", "scribble"], multiple=4, values={"image": 0})
    batch = collate([dataset[0], dataset[1]])  # depths 3 and 5 -> 8
    assert batch["image"].shape == (2, 1, 4, 4, 8) and batch["scribble"].shape == (2, 1, 4, 4, 8)
    assert batch["volume_index"].tolist() == [0, 1]
    # depth 3 in 8: 2 padded slices before, 3 after; depth 5: 1 before, 2 after
    for b, (lo, hi) in enumerate([(2, 5), (1, 6)]):
        inside = torch.zeros(8, dtype=torch.bool)
        inside[lo:hi] = True
        assert (batch["image"][b][..., ~inside] == 0).all() and (batch["scribble"][b][..., ~inside] == UNLABELLED).all()
        torch.testing.assert_close(batch["image"][b][..., inside], dataset[b]["image"])
    assert collate([dataset[0], dataset[2]])["image"].shape[-1] == 4  # depths 3 and 2 -> 4


@pytest.mark.parametrize("module", ["wss_monai.transforms.depth_pad", "wss_monai.data.volumes"])
def test_docstring_examples_run(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0


# ---- the profile through MONAI's bundle command line


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    return make_cardiac_phantoms(
        tmp_path_factory.mktemp("acdc3d"), num_patients=6, seed=3, shape=(32, 32), num_slices=(3, 5)
    )


@pytest.mark.slow
@pytest.mark.parametrize("recipe, key, fill", [(SCRIBBLES, "scribble", UNLABELLED), (FULL, "label", 0)])
def test_training_batches_are_padded_whole_volumes(phantoms, tmp_path, recipe, key, fill):
    parser = config_parser([*TRAIN, recipe, PROFILE], **SMALL_3D, dataset_dir=str(phantoms), output_dir=str(tmp_path))
    dataset = parser.get_parsed_content("train#dataset")
    dataset.set_random_state(seed=0)
    depths = set()
    for batch in parser.get_parsed_content("train#dataloader"):
        image, target = batch["image"], batch[key]
        assert image.ndim == 5 and image.shape[:4] == (2, 1, 32, 32) and target.shape == image.shape
        assert image.shape[-1] % MULTIPLE == 0
        depths.add(image.shape[-1])
        blank = (image == 0).flatten(0, 3).all(0)  # padded slices: the normalised image is never exactly 0
        assert (target[..., blank] == fill).all()
    assert 8 in depths and depths <= {4, 8}  # volumes of 3 or 5 slices, batched in twos


@pytest.fixture(scope="module")
def scribble_run(phantoms, tmp_path_factory):
    """`run training` of acdc + scribbles-from-files + the 3D profile, launched from outside the repository."""
    out = tmp_path_factory.mktemp("run3d")
    configs = [*TRAIN, SCRIBBLES, PROFILE]
    run_bundle("training", configs, cwd=out, base=SMALL_3D, dataset_dir=phantoms, output_dir=out)
    return out, configs


@pytest.mark.slow
def test_training_writes_a_3d_model_and_its_checkpoints(scribble_run):
    run, _ = scribble_run
    for name in ("models/model.pt", "models/model_final.pt", "timing.json", "validation/metrics.csv"):
        assert (run / name).is_file(), name
    final = torch.load(run / "models/model_final.pt", weights_only=False)
    assert {"model", "optimizer", "trainer", "lr_scheduler"} <= set(final)
    first_conv = next(v for k, v in final["model"].items() if k.endswith("conv.weight"))
    assert first_conv.shape == (16, 1, 3, 3, 3)  # 3D convolution on the bundle's single channel
    training = json.loads((run / "datalist.json").read_text())["training"]
    assert final["trainer"]["epoch_length"] == -(-len(training) // 2)  # whole volumes, two per batch
    assert final["trainer"]["iteration"] == 2 * final["trainer"]["epoch_length"]


@pytest.mark.slow
def test_evaluation_reuses_the_sliding_window_inferer(scribble_run, phantoms, tmp_path):
    run, configs = scribble_run
    evaluate = bundle_configs("acdc", *configs[len(TRAIN) :], kind="evaluate")
    run_bundle("evaluating", evaluate, cwd=tmp_path, base=SMALL_3D, dataset_dir=phantoms, output_dir=run)
    rows = (run / "eval/metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert header[:7] == "case,dice_rv,hd95_rv,dice_myo,hd95_myo,dice_lv,hd95_lv".split(",") and len(rows) == 5
    assert {"trimap_acc_w2", "trimap_dice_w16"} <= set(header)  # boundary bands, per slice of the volume
    summary = json.loads((run / "eval/summary.json").read_text())
    assert summary["num_cases"] == 4 and 0.0 <= summary["mean_dice"] <= 1.0


@pytest.mark.slow
def test_inference_writes_each_prediction_in_its_input_space(scribble_run, phantoms, tmp_path):
    run, _ = scribble_run
    inputs = tmp_path / "in"
    inputs.mkdir()
    sources = sorted((phantoms / "training").glob("patient00[12]/patient00?_frame??.nii.gz"))
    for source in sources:
        (inputs / source.name).write_bytes(source.read_bytes())
    # inference.yaml alone rebuilds the 3D U-Net and the sliding-window inferer from the run's config
    run_bundle("inferring", bundle_configs("acdc", kind="inference"), cwd=tmp_path, base={},
               input_dir=inputs, run_dir=run)  # fmt: skip
    assert {nib.load(s).shape[-1] for s in sources} != {MULTIPLE}  # depths off the window depth are covered
    for source in sources:
        image = nib.load(source)
        pred = nib.load(run / "predictions" / source.name.replace(".nii.gz", "_seg.nii.gz"))
        assert pred.shape == image.shape
        np.testing.assert_allclose(pred.affine, image.affine, atol=1e-5)
        assert set(np.unique(np.asarray(pred.dataobj)).tolist()) <= {0, 1, 2, 3}


@pytest.mark.slow
def test_full_supervision_trains_and_resumes(phantoms, tmp_path):
    configs = [*TRAIN, FULL, PROFILE]
    small = {**SMALL_3D, "max_epochs": 1}
    run_bundle("training", configs, cwd=tmp_path, base=small, dataset_dir=phantoms, output_dir=tmp_path)
    run_bundle(
        "training",
        configs,
        cwd=tmp_path,
        base=small,
        dataset_dir=phantoms,
        output_dir=tmp_path,
        max_epochs=2,
        resume_checkpoint=tmp_path / "models/model_final.pt",
    )
    final = torch.load(tmp_path / "models/model_final.pt", weights_only=False)
    assert final["trainer"]["max_epochs"] == 2 and final["trainer"]["iteration"] == 2 * final["trainer"]["epoch_length"]
    assert next(iter(final["model"].values())).ndim == 5


@pytest.mark.slow
def test_wmh_keeps_its_channels_and_ignores_the_padding(tmp_path):
    phantoms = make_wmh_phantoms(tmp_path / "wmh", num_subjects=4, seed=5, shape=(32, 32, 10))
    configs = bundle_configs("wmh", "configs/lesion/gdl_boundary_3d.yaml", PROFILE)
    overrides = {**SMALL_3D, "num_validation": 1}
    parser = config_parser(configs, **overrides, dataset_dir=str(phantoms), output_dir=str(tmp_path / "run"))
    network = parser.get_parsed_content("network")
    batch = next(iter(parser.get_parsed_content("train#dataloader")))
    assert batch["image"].shape == (2, 2, 32, 32, 12)  # FLAIR + T1, 10 slices padded to 12
    padded = torch.zeros(12, dtype=torch.bool)
    padded[[0, 11]] = True
    assert batch["ignore"][..., padded].all() and not batch["ignore"][..., ~padded].all()
    assert (batch["image"][..., padded] == 0).all() and (batch["label"][..., padded] == 0).all()
    assert (batch["dist_map"][..., padded] == 0).all()
    logits = network(batch["image"])
    losses = parser.get_parsed_content("train#loss")(logits, batch)
    assert logits.shape == (2, 2, 32, 32, 12) and all(torch.isfinite(v) for v in losses.values())
