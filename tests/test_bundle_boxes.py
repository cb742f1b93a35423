"""The promise12 and atlas bundles with the box recipes: readers on tiny trees, MONAI's property checks, and
one short run per bundle (two epochs, phantoms at 32 x 32) followed by inference writing files."""

import json
import math
import re

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from bundle_helpers import ROOT, SMALL, config_parser, error_chain, run_bundle, run_bundles
from monai.bundle import ConfigWorkflow, verify_metadata

from wss_monai.bundle import bundle_configs
from wss_monai.data import (
    find_atlas_cases,
    find_promise12_cases,
    make_atlas_datalist,
    make_atlas_phantoms,
    make_cardiac_phantoms,
    make_promise12_datalist,
    make_promise12_phantoms,
)
from wss_monai.losses import BoxConstraintLoss
from wss_monai.transforms import tight_boxes
from wss_monai.transforms.box_segments import boxes_from_ids

BOXES = ROOT / "configs/supervision/boxes.yaml"
SIZE = ROOT / "configs/supervision/size.yaml"
QUICK = {
    "promise12": ROOT / "configs/profiles/cpu_quick.yaml",
    "atlas": ROOT / "configs/profiles/lesion_cpu_quick.yaml",
}


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    root = tmp_path_factory.mktemp("box_phantoms")
    return {
        "promise12": make_promise12_phantoms(
            root / "promise12", num_cases=4, seed=1, shape=(32, 32), num_slices=(4, 5)
        ),
        "atlas": make_atlas_phantoms(root / "atlas", num_cases=4, seed=1, shape=(32, 32, 14), layout="r1.1"),
    }


# ---------------------------------------------------------------------------------------------- readers


def _mhd(array_xyz, path, spacing=(0.5, 0.5, 3.0)):
    image = sitk.GetImageFromArray(np.transpose(array_xyz, (2, 1, 0)))
    image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))


def test_promise12_reader_on_a_tiny_tree_and_its_errors(tmp_path):
    part = tmp_path / "TrainingData_Part1"
    part.mkdir()
    for case in ("Case01", "Case00"):
        _mhd(np.random.default_rng(0).random((8, 8, 3)).astype(np.float32), part / f"{case}.mhd")
        _mhd(np.zeros((8, 8, 3), np.uint8), part / f"{case}_segmentation.mhd")
    cases = find_promise12_cases(tmp_path)
    assert [c["patient"] for c in cases] == ["Case00", "Case01"]
    datalist = make_promise12_datalist(tmp_path, num_validation=1, seed=0)
    assert len(datalist["training"]) == 1 and len(datalist["validation"]) == 1
    _mhd(np.zeros((8, 8, 3), np.uint8), part / "Case01_segmentation.mhd", spacing=(0.5, 0.5, 4.0))
    with pytest.raises(ValueError, match=r"label .*Case01_segmentation.mhd and image .*Case01.mhd differ in spacing"):
        make_promise12_datalist(tmp_path)
    (part / "Case00.raw").unlink()
    with pytest.raises(ValueError, match=r"cannot read PROMISE12 image .*Case00.mhd"):
        make_promise12_datalist(tmp_path)
    (part / "Case01_segmentation.mhd").unlink()
    with pytest.raises(FileNotFoundError, match=r"segmentation missing for .*Case01.mhd"):
        find_promise12_cases(tmp_path)


def _nifti(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.eye(4)), str(path))


def test_atlas_r11_masks_are_or_fused_and_the_bids_layout_is_read(tmp_path):
    session = tmp_path / "r11/Site2/031768/t01"
    _nifti(session / "031768_t1w_deface_stx.nii.gz", np.ones((6, 6, 4), np.float32))
    first, second = np.zeros((6, 6, 4), np.float32), np.zeros((6, 6, 4), np.float32)
    first[1, 1, 1], second[4, 4, 2] = 1.0, 0.5  # two masks of the same case, one not exactly 1
    _nifti(session / "031768_LesionSmooth_stx.nii.gz", first)
    _nifti(session / "031768_LesionSmooth_1_stx.nii.gz", second)
    datalist = make_atlas_datalist(tmp_path / "r11", tmp_path / "run/datalist.json", num_validation=0)
    (case,) = datalist["training"]
    assert case["patient"] == "Site2_031768" and case["case"] == "Site2_031768_t01"
    fused = np.asarray(nib.load(case["label"]).dataobj)
    assert case["label"].startswith(str(tmp_path / "run/atlas_labels")) and fused.dtype == np.uint8
    assert fused.sum() == 2 and fused[1, 1, 1] == 1 and fused[4, 4, 2] == 1

    anat = tmp_path / "bids/Training/R001/sub-r001s001/ses-1/anat"
    stem = "sub-r001s001_ses-1_space-MNI152NLin2009aSym"
    _nifti(anat / f"{stem}_T1w.nii.gz", np.ones((6, 6, 4), np.float32))
    _nifti(anat / f"{stem}_label-L_desc-T1lesion_mask.nii.gz", (first > 0).astype(np.uint8))
    (bids,) = find_atlas_cases(tmp_path / "bids")
    assert bids["patient"] == "sub-r001s001" and bids["label"].endswith("T1lesion_mask.nii.gz")
    (anat / f"{stem}_label-L_desc-T1lesion_mask.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"lesion mask missing for .*sub-r001s001_ses-1_.*_T1w.nii.gz"):
        find_atlas_cases(tmp_path / "bids", layout="bids")
    for mask in session.glob("*LesionSmooth*"):
        mask.unlink()
    with pytest.raises(FileNotFoundError, match=r"no \*LesionSmooth\*.nii.gz lesion mask next to .*031768_t1w"):
        find_atlas_cases(tmp_path / "r11")


# ---------------------------------------------------------------------------------------------- configs


@pytest.mark.parametrize("with_boxes", [False, True], ids=["full", "boxes"])
@pytest.mark.parametrize("bundle", ["promise12", "atlas"])
def test_metadata_passes_and_train_configs_pass_monai_property_checks(bundle, with_boxes, phantoms, tmp_path):
    meta_file = ROOT / f"bundles/{bundle}/configs/metadata.json"
    verify_metadata(meta_file=str(meta_file), filepath=str(ROOT / "bundles/schema/meta_schema.json"))
    out = json.loads(meta_file.read_text())["network_data_format"]["outputs"]["pred"]["channel_def"]
    files = [str(f) for f in bundle_configs(bundle, *([BOXES] if with_boxes else []))]
    workflow = ConfigWorkflow(config_file=files, workflow_type="train", logging_file=False, output_dir=str(tmp_path),
                              dataset_dir=str(phantoms[bundle]), **SMALL)  # fmt: skip
    workflow.initialize()
    assert workflow.check_properties() == []
    assert list(out.values()) == workflow.parser["class_names"]


def test_box_recipe_on_acdc_in_3d_needs_the_whole_volume_profile(tmp_path):
    root = make_cardiac_phantoms(tmp_path / "acdc", num_patients=3, seed=0, shape=(32, 32), num_slices=(3, 4))
    common = {"dataset_dir": str(root), "output_dir": str(tmp_path / "out"), "num_validation": 1, "spatial_size": 32}
    parser = config_parser(bundle_configs("acdc", BOXES), box_dims=3, **common)
    with pytest.raises(Exception) as info:
        parser.get_parsed_content("weak_transforms")
    assert "box_dims 3 (boxes per volume) needs whole-volume training" in error_chain(info.value)
    whole = ROOT / "configs/profiles/whole_volumes_3d.yaml"
    parser = config_parser(bundle_configs("acdc", BOXES, whole), box_dims=3, box_loss="masked_ce", **common)
    batch = next(iter(parser.get_parsed_content("train#dataloader")))
    assert batch["box_ids"].shape[:2] == (2, 3) and batch["box_ids"].ndim == 5
    logits = torch.zeros(*batch["box_target"].shape[:1], 4, *batch["box_target"].shape[2:], requires_grad=True)
    values = parser.get_parsed_content("train#loss")(logits, batch)
    values["loss"].backward()
    assert set(values) == {"loss", "masked_ce"} and torch.isfinite(logits.grad).all()
    parser = config_parser(bundle_configs("acdc", BOXES), box_loss="boxes", **common)
    with pytest.raises(Exception) as info:
        parser.get_parsed_content("box_recipe")
    assert re.search(
        r"box_loss must be one of \('prior', 'masked_ce', 'deepcut'\), got 'boxes'", error_chain(info.value)
    )


def test_box_prior_after_a_masked_ce_warm_up_hands_the_loss_over(tmp_path):
    root = make_cardiac_phantoms(tmp_path / "acdc", num_patients=3, seed=0, shape=(32, 32), num_slices=(3, 4))
    common = {"dataset_dir": str(root), "output_dir": str(tmp_path / "out"), "num_validation": 1, "spatial_size": 32}
    parser = config_parser(bundle_configs("acdc", BOXES), box_warmup_epochs=3, **common)
    stop, start = (parser.get_parsed_content(f"box_warmup#{k}") for k in ("masked_ce_stop", "box_start"))
    loss = parser.get_parsed_content("train#loss")  # the same object, its weights set by the two handlers
    assert loss.weights == {"boxes": 0.0, "masked_ce": 1.0}  # the first epoch: masked CE alone
    assert [(stop.weight_after(e), start.weight_after(e)) for e in (2, 3, 10)] == [(1.0, 0.0), (0.0, 1e-4), (0.0, 1e-4)]
    assert {"box_warmup_masked_ce", "box_warmup_boxes", "log_barrier"} <= set(parser.get_parsed_content("recipe_state"))
    batch = next(iter(parser.get_parsed_content("train#dataloader")))
    assert {"box_ids", "box_target"} <= set(batch)  # both supervisions' inputs are sliced
    parser = config_parser(bundle_configs("acdc", BOXES), box_loss="deepcut", box_warmup_epochs=3, **common)
    with pytest.raises(Exception) as info:
        parser.get_parsed_content("box_recipe")
    assert re.search(r"box_warmup_epochs \(3\) is the masked cross-entropy warm-up of box_loss 'prior'; "
                     r"box_loss is 'deepcut'", error_chain(info.value))  # fmt: skip
    parser = config_parser(bundle_configs("acdc", BOXES), box_warmup_epochs=-1, **common)
    with pytest.raises(Exception) as info:
        parser.get_parsed_content("box_recipe")
    assert "box_warmup_epochs must be an integer >= 0, got -1" in error_chain(info.value)


def test_masked_generalised_dice_on_the_box_target(tmp_path):
    root = make_atlas_phantoms(tmp_path / "atlas", num_cases=3, seed=1, shape=(32, 32, 14))
    common = {"dataset_dir": str(root), "output_dir": str(tmp_path / "out"), "num_validation": 1, "spatial_size": 32}
    configs = bundle_configs("atlas", BOXES)
    parser = config_parser(configs, box_loss="masked_ce", box_masked_loss="gdl", foreground_oversample=1.0, **common)
    loss = parser.get_parsed_content("train#loss")
    batch = next(iter(parser.get_parsed_content("train#dataloader")))
    logits = torch.randn(batch["box_target"].shape[0], 2, 32, 32, generator=torch.Generator().manual_seed(0))
    # by hand: w_k = 1 / (Σ one-hot_k)², Dice of the weighted sums over the batch's images, 1 - mean
    probs, onehot = torch.softmax(logits, 1), torch.cat([batch["box_target"] == k for k in (0, 1)], 1).float()
    w = 1.0 / onehot.sum((2, 3)) ** 2
    w = torch.where(torch.isinf(w), torch.zeros_like(w), w)
    w = torch.where(w == 0, w.max(1, keepdim=True).values, w)  # MONAI: an absent class gets the largest weight
    numer = 2 * (w * (probs * onehot).sum((2, 3))).sum(1) + 1e-5
    denom = (w * (probs + onehot).sum((2, 3))).sum(1) + 1e-5
    values = loss(logits, batch)
    assert torch.allclose(values["masked_ce"], (1 - numer / denom).mean(), atol=1e-5)
    assert (batch["box_target"] == 1).flatten(1).any(1).all()  # every slice drawn holds a box (oversampling 1)
    weighted = config_parser(configs, box_term_weights={"emptiness": 0.01}, **common)
    assert weighted.get_parsed_content("train#loss").terms["boxes"].term_weights == {
        "tightness": 1.0, "emptiness": 0.01, "size": 1.0
    }  # fmt: skip
    whole = ROOT / "configs/profiles/whole_volumes_3d.yaml"
    for bad, message in (
        ({"box_masked_loss": "dice"}, r"box_masked_loss must be one of \('ce', 'gdl'\), got 'dice'"),
        ({"box_masked_loss": "gdl", "box_dims": 3}, r"box_masked_loss 'gdl' is for 2D networks"),
    ):
        overlays = (BOXES, whole) if "box_dims" in bad else (BOXES,)
        parser = config_parser(bundle_configs("atlas", *overlays), box_loss="masked_ce", **bad, **common)
        with pytest.raises(Exception) as info:
            parser.get_parsed_content("box_recipe")
        assert re.search(message, error_chain(info.value)), error_chain(info.value)


def test_masked_ce_kept_beside_the_constraints_after_the_warm_up(tmp_path):
    root = make_cardiac_phantoms(tmp_path / "acdc", num_patients=3, seed=0, shape=(32, 32), num_slices=(3, 4))
    common = {"dataset_dir": str(root), "output_dir": str(tmp_path / "out"), "num_validation": 1, "spatial_size": 32}
    configs = bundle_configs("acdc", BOXES)
    parser = config_parser(configs, box_warmup_epochs=2, box_masked_ce_after_warmup=0.3, **common)
    stop = parser.get_parsed_content("box_warmup#masked_ce_stop")
    assert [stop.weight_after(e) for e in range(4)] == [1.0, 1.0, 0.3, 0.3]
    loss = parser.get_parsed_content("train#loss")
    assert loss.weights["masked_ce"] == 1.0
    stop.load_state_dict({**stop.state_dict(), "epochs": 2})  # resumed after the warm-up's two epochs
    assert loss.weights["masked_ce"] == 0.3 and stop.state_dict()["after_stop"] == 0.3
    for bad, message in (
        (
            {"box_warmup_epochs": 0},
            r"box_masked_ce_after_warmup \(0.3\) weighs .* needs box_loss 'prior' and "
            r"box_warmup_epochs > 0",
        ),
        ({"box_warmup_epochs": 2, "box_loss": "deepcut"}, r"box_warmup_epochs \(2\) is the masked"),
    ):
        parser = config_parser(configs, box_masked_ce_after_warmup=0.3, **bad, **common)
        with pytest.raises(Exception) as info:
            parser.get_parsed_content("box_recipe")
        assert re.search(message, error_chain(info.value)), error_chain(info.value)
    parser = config_parser(configs, box_warmup_epochs=2, box_masked_ce_after_warmup=float("nan"), **common)
    with pytest.raises(Exception) as info:
        parser.get_parsed_content("box_recipe")
    assert "box_masked_ce_after_warmup must be a finite number >= 0, got nan" in error_chain(info.value)


def test_log_form_of_the_size_bound_reaches_the_loss(tmp_path):
    root = make_cardiac_phantoms(tmp_path / "acdc", num_patients=3, seed=0, shape=(32, 32), num_slices=(3, 4))
    common = {"dataset_dir": str(root), "output_dir": str(tmp_path / "out"), "num_validation": 1, "spatial_size": 32}
    configs = bundle_configs("acdc", BOXES)
    values = {}
    for log_size in (False, True):
        parser = config_parser(configs, box_size_log=log_size, **common)
        batch = next(iter(parser.get_parsed_content("train#dataloader")))
        term = parser.get_parsed_content("train#loss").terms["boxes"]
        assert term.log_size is log_size
        logits = torch.zeros(batch["box_ids"].shape[0], 4, *batch["box_ids"].shape[2:])  # S = 1/4
        values[log_size] = term.constraint_values(logits, batch)["size"][0]
    half = values[False].numel() // 2
    # box of n voxels: plain 0.5 n - n / 4 = n / 4; log form 0.5 n (log 0.5 n - log n / 4) = 0.5 n log 2
    torch.testing.assert_close(values[True][:half], values[False][:half] * 2 * math.log(2))
    torch.testing.assert_close(values[True][half:], values[False][half:])


def test_size_bound_over_enclosed_classes_reaches_the_loss(tmp_path):
    root = make_cardiac_phantoms(tmp_path / "acdc", num_patients=3, seed=0, shape=(32, 32), num_slices=(3, 4))
    common = {"dataset_dir": str(root), "output_dir": str(tmp_path / "out"), "num_validation": 1, "spatial_size": 32}
    parser = config_parser(bundle_configs("acdc", BOXES), box_size_classes=[[1], [2, 3], [3]], **common)
    batch = next(iter(parser.get_parsed_content("train#dataloader")))
    term = parser.get_parsed_content("train#loss").terms["boxes"]
    assert term.size_classes == [[1], [2, 3], [3]]
    logits = torch.zeros(batch["box_ids"].shape[0], 4, *batch["box_ids"].shape[2:])  # S = 1/4
    z = term.constraint_values(logits, batch)["size"][0]
    alone = BoxConstraintLoss(terms=["size"]).constraint_values(logits, batch)["size"][0]
    table = boxes_from_ids(batch["box_ids"])
    myo_box = (table.row % 3 == 1).repeat(2)  # the lower and upper bounds of the MYO's boxes
    assert myo_box.any() and (~myo_box).any()
    # a MYO box of n voxels: lower 0.5 n - 2 n / 4 = 0 (n / 4 alone), upper 2 n / 4 - n (3 n / 4 alone)
    count = table.count.to(z.dtype).repeat(2)
    half = z.numel() // 2
    expected = alone.clone()
    expected[:half] = torch.where(myo_box[:half], 0.5 * count[:half] - count[:half] / 2, alone[:half])
    expected[half:] = torch.where(myo_box[half:], count[half:] / 2 - count[half:], alone[half:])
    torch.testing.assert_close(z, expected)


def test_ring_size_bounds_less_the_enclosed_boxes_reach_the_loss(tmp_path):
    root = make_cardiac_phantoms(tmp_path / "acdc", num_patients=3, seed=0, shape=(32, 32), num_slices=(3, 4))
    common = {"dataset_dir": str(root), "output_dir": str(tmp_path / "out"), "num_validation": 1, "spatial_size": 32}
    overrides = {"box_size_less_classes": [[], [3], []], "box_upper": [1.0, 0.9, 1.0], "box_size_less_upper": True}
    parser = config_parser(bundle_configs("acdc", BOXES), **overrides, **common)
    batch = next(iter(parser.get_parsed_content("train#dataloader")))
    term = parser.get_parsed_content("train#loss").terms["boxes"]
    assert term.size_less_classes == [[], [3], []] and term.upper == [1.0, 0.9, 1.0] and term.size_less_upper
    logits = torch.zeros(batch["box_ids"].shape[0], 4, *batch["box_ids"].shape[2:])  # S = 1/4
    z = term.constraint_values(logits, batch)["size"][0]
    ids = batch["box_ids"].numpy()
    table = boxes_from_ids(batch["box_ids"])
    num_boxes = table.row.numel()
    expected = torch.zeros(2 * num_boxes)
    enclosing = 0
    for box, (row, lo, hi) in enumerate(zip(table.row.tolist(), table.lo.tolist(), table.hi.tolist())):
        n = int(table.count[box])
        image, channel = divmod(row, 3)
        lv_voxels = 0
        if channel == 1:  # only the MYO's boxes (channel 1 of RV, MYO, LV) lose the LV's boxes
            inside = tuple(slice(a, b) for a, b in zip(lo, hi))
            lv_voxels = int((ids[image, 2][inside] > 0).sum())
            enclosing += lv_voxels > 0
        expected[box] = max(0.5 * (n - lv_voxels), 0.0) - n / 4  # ε 0.5 of the box less the LV's
        expected[num_boxes + box] = n / 4 - (0.9 if channel == 1 else 1.0) * (n - lv_voxels)
    assert enclosing > 0  # the phantoms' MYO boxes hold their LV's
    torch.testing.assert_close(z, expected)


def test_inscribed_ellipse_bounds_reach_the_loss(tmp_path):
    root = make_cardiac_phantoms(tmp_path / "acdc", num_patients=3, seed=0, shape=(32, 32), num_slices=(3, 4))
    common = {"dataset_dir": str(root), "output_dir": str(tmp_path / "out"), "num_validation": 1, "spatial_size": 32}
    overrides = {"box_ellipse_epsilon": [0.0, 0.9, 0.8], "box_ellipse_classes": [[1], [2, 3], [3]]}
    parser = config_parser(bundle_configs("acdc", BOXES), **overrides, **common)
    batch = next(iter(parser.get_parsed_content("train#dataloader")))
    term = parser.get_parsed_content("train#loss").terms["boxes"]
    logits = torch.zeros(batch["box_ids"].shape[0], 4, *batch["box_ids"].shape[2:])  # S = 1/4
    z = term.constraint_values(logits, batch)["size"][0]
    table = boxes_from_ids(batch["box_ids"])
    num_boxes = table.row.numel()
    ids = batch["box_ids"].numpy()
    expected = []
    for row, lo, hi in zip(table.row.tolist(), table.lo.tolist(), table.hi.tolist()):
        image, channel = divmod(row, 3)
        if channel == 0:  # the RV: ε 0, no ellipse bound
            continue
        grid = np.meshgrid(*(np.arange(a, b) for a, b in zip(lo, hi)), indexing="ij")
        offset = sum((((g - (a + b - 1) / 2) / ((b - a) / 2)) ** 2) for g, a, b in zip(grid, lo, hi))
        inside = (offset <= 1) & (ids[image, channel][tuple(slice(a, b) for a, b in zip(lo, hi))] > 0)
        share = 0.5 if channel == 1 else 0.25  # the MYO's ellipse counts S_MYO + S_LV
        expected.append((0.9 if channel == 1 else 0.8) * inside.sum() - share * inside.sum())
    assert z.shape[0] == 2 * num_boxes + len(expected) and expected
    torch.testing.assert_close(z[2 * num_boxes :], torch.tensor(expected, dtype=z.dtype))


@pytest.mark.parametrize("whole_volumes", [False, True], ids=["2d", "3d"])
def test_size_bound_less_the_margin_reaches_the_loss_in_2d_and_3d(whole_volumes, tmp_path):
    root = make_cardiac_phantoms(tmp_path / "acdc", num_patients=3, seed=0, shape=(32, 32), num_slices=(3, 4))
    common = {"dataset_dir": str(root), "output_dir": str(tmp_path / "out"), "num_validation": 1, "spatial_size": 32}
    profile = [ROOT / "configs/profiles/whole_volumes_3d.yaml"] if whole_volumes else []
    configs = bundle_configs("acdc", BOXES, *profile)
    # the phantoms are 32 x 32 files: a margin of 2 file voxels is 2 voxels of the 32 x 32 grid
    parser = config_parser(configs, box_margin=2, box_size_less_margin=True, **common)
    batch = next(iter(parser.get_parsed_content("train#dataloader")))
    assert batch["box_margin_voxels"].shape == (batch["box_ids"].shape[0], 3)  # (H, W, D) of the volume
    assert batch["box_margin_voxels"][:, :2].eq(2).all() and batch["box_margin_voxels"][:, 2:].eq(0).all()
    term = parser.get_parsed_content("train#loss").terms["boxes"]
    assert term.margin_key == "box_margin_voxels"
    logits = torch.zeros(batch["box_ids"].shape[0], 4, *batch["box_ids"].shape[2:])
    less = term.constraint_values(logits, batch)["size"][0]
    term.margin_key = None
    whole = term.constraint_values(logits, batch)["size"][0]
    half = whole.numel() // 2  # lower bounds first, then the upper bounds (unchanged)
    assert (less[:half] < whole[:half]).all() and torch.equal(less[half:], whole[half:])
    for bad in ({"box_loss": "masked_ce"}, {"box_source": "files", "box_dir": str(tmp_path)}):
        parser = config_parser(configs, box_size_less_margin=True, **bad, **common)
        with pytest.raises(Exception) as info:
            parser.get_parsed_content("box_recipe")
        assert re.search(r"box_size_less_margin takes box_margin off .* needs box_loss 'prior' and box_source "
                         r"'label'", error_chain(info.value))  # fmt: skip


# ---------------------------------------------------------------------------------------------- runs


@pytest.fixture(scope="module")
def trained(phantoms, tmp_path_factory):
    """`run training` with the box prior on promise12 (boxes from files) and atlas, two at once."""
    box_dir = tmp_path_factory.mktemp("promise12_box_files")
    for label in phantoms["promise12"].glob("*_segmentation.mhd"):
        array = np.transpose(sitk.GetArrayFromImage(sitk.ReadImage(str(label))), (2, 1, 0))
        boxes = tight_boxes(array.astype(np.int64), num_classes=2, box_dims=2)
        entries = [{"class": int(b[0]), "box": [int(v) for v in b[1:]]} for b in boxes]
        (box_dir / label.name.replace("_segmentation.mhd", "_boxes.json")).write_text(json.dumps({"boxes": entries}))
    runs, commands = {}, []
    for bundle in ("promise12", "atlas"):
        out = tmp_path_factory.mktemp(f"{bundle}_boxes")
        extra = (
            {"box_epsilon": 0.3, "box_margin": 1}
            if bundle == "atlas"
            else {"box_source": "files", "box_dir": box_dir, "box_warmup_epochs": 1}
        )
        overrides = {**SMALL, "output_dir": out / "run", "dataset_dir": phantoms[bundle], **extra}
        commands.append(("training", bundle_configs(bundle, QUICK[bundle], BOXES), out, overrides))
        runs[bundle] = out / "run"
    run_bundles(commands)
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("bundle", ["promise12", "atlas"])
def test_box_training_checkpoints_the_log_barrier_and_inference_writes_files(bundle, trained, phantoms, tmp_path):
    run = trained[bundle]
    final = torch.load(run / "models/model_final.pt", weights_only=False)
    assert final["log_barrier"]["t"] == pytest.approx(5.0 * 1.1**2)
    if bundle == "promise12":  # one epoch of masked CE, then the prior
        assert final["box_warmup_masked_ce"]["epochs"] == final["box_warmup_boxes"]["epochs"] == 2
    assert (run / "models/model.pt").is_file() and (run / "validation/metrics.csv").is_file()
    run_bundle("inferring", bundle_configs(bundle, kind="inference"), cwd=tmp_path, base={}, run_dir=run,
               input_dir=phantoms[bundle])  # fmt: skip
    suffix = ".mhd" if bundle == "promise12" else "_t1w_deface_stx.nii.gz"
    sources = sorted(p for p in phantoms[bundle].rglob(f"*{suffix}") if "_segmentation" not in p.name)
    assert len(sources) == 4
    for source in sources:
        stem = source.name[: -len(".mhd")] if bundle == "promise12" else source.name[: -len(".nii.gz")]
        pred = nib.load(run / "predictions" / source.parent.relative_to(phantoms[bundle]) / f"{stem}_seg.nii.gz")
        shape = sitk.ReadImage(str(source)).GetSize() if bundle == "promise12" else nib.load(source).shape
        assert pred.shape == tuple(shape)
        assert set(np.unique(np.asarray(pred.dataobj)).tolist()) <= {0, 1}


@pytest.mark.slow
def test_size_and_deepcut_recipes_run_on_promise12(phantoms, tmp_path):
    run_bundles([
        ("training", bundle_configs("promise12", QUICK["promise12"], SIZE), tmp_path,
         {**SMALL, "max_epochs": 1, "output_dir": tmp_path / "size", "dataset_dir": phantoms["promise12"]}),
        ("training", bundle_configs("promise12", QUICK["promise12"], BOXES), tmp_path,
         {**SMALL, "output_dir": tmp_path / "deepcut", "dataset_dir": phantoms["promise12"], "box_loss": "deepcut",
          "box_jitter": 2, "deepcut_interval": 1, "deepcut_start_epoch": 2, "deepcut_workers": 1}),
    ])  # fmt: skip
    assert (tmp_path / "size/models/model_final.pt").is_file()
    final = torch.load(tmp_path / "deepcut/models/model_final.pt", weights_only=False)
    assert final["deepcut"]["refreshes"] == 1  # proposals of epoch 2, solved in a worker process
    proposals = final["deepcut"]["proposals"]  # one per training volume, every slice solved
    training = json.loads((tmp_path / "deepcut/datalist.json").read_text())["training"]
    assert len(proposals) == len(training) == 2
    assert all(set(p.unique().tolist()) <= {0, 1} for p in proposals.values())
