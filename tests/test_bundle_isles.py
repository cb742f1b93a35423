"""End-to-end runs of the isles bundle with a boundary-loss recipe, on tiny CT perfusion phantoms."""

import csv
import json
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from bundle_helpers import ROOT, config_parser, run_bundle
from monai.bundle import ConfigParser

from wss_monai.bundle import bundle_configs
from wss_monai.data.lesion_phantoms import make_isles_phantoms
from wss_monai.handlers import LESION_COLUMNS

TRAIN = bundle_configs("isles")
QUICK = ROOT / "configs/profiles/lesion_cpu_quick.yaml"
BL3D = ROOT / "configs/lesion/gdl_boundary_3d.yaml"
BL2D = ROOT / "configs/lesion/gdl_boundary_2d.yaml"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    return make_isles_phantoms(tmp_path_factory.mktemp("isles"), num_cases=5, seed=2, shape=(32, 32), num_slices=(2, 3))


@pytest.fixture(scope="module")
def trained(phantoms, tmp_path_factory):
    """`run training` of bundle + CPU profile + GDL/boundary (3D maps), launched from outside the repository."""
    out = tmp_path_factory.mktemp("isles_run")
    configs = [*TRAIN, QUICK, BL3D]
    extra = {"dataset_dir": phantoms, "patient_map_file": phantoms / "phantom_patients.json"}
    run_bundle("training", configs, cwd=out, output_dir=out / "run", **extra)
    return out / "run", configs, extra


def test_training_writes_checkpoints_with_the_boundary_schedule(trained):
    run, _, _ = trained
    for name in ("models/model.pt", "models/model_final.pt", "datalist.json", "timing.json", "validation/metrics.csv"):
        assert (run / name).is_file(), name
    datalist = json.loads((run / "datalist.json").read_text())
    assert len(datalist["training"][0]["image"]) == 5  # CT + four perfusion maps as channels
    train_patients = {c["patient"] for c in datalist["training"]}
    assert not train_patients & {c["patient"] for c in datalist["validation"]}
    final = torch.load(run / "models/model_final.pt", weights_only=False)
    assert final["boundary_schedule"]["mode"] == "rebalance"
    assert final["boundary_schedule"]["epochs"] == 2
    assert final["boundary_schedule"]["alpha"] == pytest.approx(0.03)
    assert final["model"]["model.0.conv.unit0.conv.weight"].shape[1] == 5  # the network takes 5 channels


def test_resume_restores_the_boundary_schedule(trained, tmp_path):
    run, configs, extra = trained
    copy = tmp_path / "resumed"
    shutil.copytree(run, copy)
    run_bundle(
        "training",
        configs,
        cwd=tmp_path,
        output_dir=copy,
        max_epochs=3,
        resume_checkpoint=copy / "models/model_final.pt",
        **extra,
    )
    resumed = torch.load(copy / "models/model_final.pt", weights_only=False)
    assert resumed["trainer"]["iteration"] == 3 * resumed["trainer"]["epoch_length"]
    assert resumed["boundary_schedule"]["epochs"] == 3  # 2 restored + 1 trained, not 1
    assert resumed["boundary_schedule"]["alpha"] == pytest.approx(0.04)


def test_evaluation_writes_lesion_metrics_per_case(trained, tmp_path):
    run, configs, extra = trained
    run_bundle(
        "evaluating",
        bundle_configs("isles", *configs[len(TRAIN) :], kind="evaluate"),
        cwd=tmp_path,
        output_dir=run,
        **extra,
    )
    with open(run / "eval/metrics.csv") as f:
        rows = list(csv.DictReader(f))
    trimap = [f"trimap_{m}_w{w}" for w in (2, 4, 8, 16) for m in ("acc", "dice_lesion")]
    assert list(rows[0]) == ["case", *LESION_COLUMNS, *trimap]
    datalist = json.loads((run / "datalist.json").read_text())
    assert sorted(r["case"] for r in rows) == sorted(c["case"] for c in datalist["validation"])
    for row in rows:
        assert 0.0 <= float(row["dice"]) <= 1.0 and float(row["hd95"]) >= 0.0 and float(row["avd"]) >= 0.0
        assert 0.0 <= float(row["recall"]) <= 1.0 and 0.0 <= float(row["f1"]) <= 1.0
        assert int(row["n_gt_lesions"]) >= 1
    summary = json.loads((run / "eval/summary.json").read_text())
    assert summary["num_cases"] == len(rows)
    assert summary["mean_dice"] == pytest.approx(np.mean([float(r["dice"]) for r in rows]), abs=1e-5)


def test_inference_writes_each_prediction_in_its_input_space(trained, phantoms, tmp_path):
    run, _, _ = trained
    run_bundle(
        "inferring",
        bundle_configs("isles", kind="inference"),
        cwd=tmp_path,
        base={},
        run_dir=run,
        input_dir=phantoms,
        infer_subset="TRAINING",
    )
    sources = sorted(phantoms.glob("TRAINING/case_*/SMIR.Brain.XX.O.CT.*/*.nii"))
    assert len(sources) == 5
    for source in sources:
        image = nib.load(source)
        relative = source.relative_to(phantoms).with_name(source.name.replace(".nii", "_seg.nii.gz"))
        pred = nib.load(run / "predictions" / relative)
        assert pred.shape == image.shape
        np.testing.assert_allclose(pred.affine, image.affine, atol=1e-5)
        assert pred.get_data_dtype() == np.uint8 and set(np.unique(np.asarray(pred.dataobj)).tolist()) <= {0, 1}


def _hand_made_case(folder: Path) -> dict:
    """One 32 x 32 x 3 slab, spacing (2, 2, 5) mm, a 4 x 4 lesion in slice 1 only."""
    label = np.zeros((32, 32, 3), np.uint8)
    label[12:16, 12:16, 1] = 1
    affine = np.diag([2.0, 2.0, 5.0, 1.0])
    files = []
    for name, array in (("ct", np.random.default_rng(0).normal(size=label.shape)), ("ot", label)):
        path = folder / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(array.astype(np.float32 if name == "ct" else np.uint8), affine), path)
        files.append(str(path))
    return {"image": [files[0]] * 5, "label": files[1]}


@pytest.mark.parametrize("recipe", [BL2D, BL3D])
def test_cached_distance_maps_use_the_resized_spacing(recipe, tmp_path):
    parser = config_parser([*TRAIN, QUICK, recipe], spatial_size=16)  # 32 -> 16 voxels in-plane: 2 mm becomes 4 mm
    volume = parser.get_parsed_content("train#volume_transforms")(_hand_made_case(tmp_path))
    dist = volume["dist_map"]
    assert tuple(dist.shape) == (1, 16, 16, 3)
    # in the lesion slice both maps hold in-plane distances in mm at the new 4 mm spacing:
    # lesion 6:8 x 6:8 after nearest resizing, its outer ring at -4 mm, the next voxel out at +4 mm
    assert volume["label"][0, 6:8, 6:8, 1].all() and volume["label"].sum() == 4
    assert dist[0, 6, 6, 1].item() == pytest.approx(-4.0)
    assert dist[0, 5, 6, 1].item() == pytest.approx(4.0)
    assert dist[0, 3, 6, 1].item() == pytest.approx(12.0)
    if recipe == BL2D:  # per slice: no lesion in slices 0 and 2, so their maps are zero
        assert torch.count_nonzero(torch.as_tensor(dist[..., 0])) == 0
        assert torch.count_nonzero(torch.as_tensor(dist[..., 2])) == 0
    else:  # per volume: slices 0 and 2 are 5 mm (one slice) from the lesion, further away in-plane
        assert dist[0, 6, 6, 0].item() == pytest.approx(5.0)
        assert dist[0, 5, 6, 2].item() == pytest.approx(np.hypot(5.0, 4.0))
        assert torch.all(torch.as_tensor(dist[..., 0]) >= 5.0)


def _root_error(parser: ConfigParser, id: str) -> BaseException:
    """The original error of ``parser.get_parsed_content(id)`` (MONAI wraps it in a RuntimeError)."""
    with pytest.raises(Exception) as info:
        ConfigParser(parser.get()).get_parsed_content(id)
    error = info.value
    while error.__cause__ is not None:
        error = error.__cause__
    return error


def test_bad_inputs_give_clear_errors(tmp_path):
    broken = make_isles_phantoms(tmp_path / "broken", num_cases=3, seed=1, shape=(32, 32), num_slices=(2, 2))
    parser = config_parser([*TRAIN, QUICK, BL2D], output_dir=str(tmp_path / "out"), dataset_dir=str(broken))
    mtt = next((broken / "TRAINING/case_2").glob("SMIR.Brain.XX.O.CT_MTT.*"))
    aside = tmp_path / "aside"
    mtt.rename(aside)
    error = _root_error(parser, "datalist")
    assert isinstance(error, FileNotFoundError)
    assert re.search(r"case_2 lacks the folders .*\['CT_MTT'\]", str(error))

    mtt.mkdir()  # the folder back, but without its NIfTI file
    error = _root_error(parser, "datalist")
    assert isinstance(error, FileNotFoundError) and re.search(r"no \.nii or \.nii\.gz file in .*CT_MTT", str(error))

    mtt.rmdir()
    aside.rename(mtt)
    ot = next((broken / "TRAINING/case_3").glob("SMIR.Brain.XX.O.OT.*/*.nii"))
    image = nib.load(ot)
    label = np.asarray(image.dataobj).copy()
    label[0, 0, 0] = 3
    nib.save(nib.Nifti1Image(label, image.affine), ot)
    error = _root_error(parser, "datalist")
    assert isinstance(error, ValueError) and re.search(
        r"label .*case_3.* has values \[3\] outside range\(2\)", str(error)
    )


def _regional_reference(recipe: str, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """The regional term of ``recipe`` computed directly with MONAI's loss (no ignore mask on ISLES)."""
    from monai.losses import DiceCELoss, FocalLoss, GeneralizedDiceLoss
    from monai.networks.utils import one_hot

    probs, target = torch.softmax(logits, 1), one_hot(label.long(), 2)
    if recipe in ("gdl", "hausdorff_dt", "gdl_boundary_2d"):
        return GeneralizedDiceLoss(softmax=False, to_onehot_y=False)(probs, target)
    if recipe == "focal_boundary":
        return FocalLoss(use_softmax=True, to_onehot_y=True, gamma=2.0)(logits, label)
    return DiceCELoss(softmax=True, to_onehot_y=True, include_background=False)(logits, label)


@pytest.mark.parametrize("recipe", ["gdl", "gdl_boundary_2d", "dice_ce_boundary", "focal_boundary", "hausdorff_dt"])
def test_every_lesion_recipe_computes_monai_losses_with_gradients(recipe, phantoms, tmp_path):
    from monai.losses import HausdorffDTLoss
    from monai.networks.utils import one_hot

    parser = config_parser(
        [*TRAIN, QUICK, ROOT / f"configs/lesion/{recipe}.yaml"],
        dataset_dir=str(phantoms),
        patient_map_file=str(phantoms / "phantom_patients.json"),
        output_dir=str(tmp_path),
        spatial_size=32,
        batch_size=6,
        num_validation=2,
    )
    batch = next(iter(parser.get_parsed_content("train#dataloader")))
    assert batch["label"].any()  # the reference values below would be trivial on empty labels
    torch.manual_seed(0)
    logits = torch.randn(batch["label"].shape[0], 2, 32, 32, requires_grad=True)
    values = parser.get_parsed_content("train#loss")(logits, batch)
    expected_terms = {"loss", "regional"} | ({"boundary"} if recipe != "gdl" else set())
    assert set(values) == expected_terms
    torch.testing.assert_close(values["regional"].mean(), _regional_reference(recipe, logits, batch["label"]))
    if recipe == "hausdorff_dt":  # MONAI's Hausdorff-DT loss on the foreground channel
        reference = HausdorffDTLoss(include_background=False)(torch.softmax(logits, 1), one_hot(batch["label"], 2))
        torch.testing.assert_close(values["boundary"].mean(), reference)
    elif "boundary" in values:  # mean over each image of phi * S_1, with the cached maps of the batch
        reference = (torch.softmax(logits, 1)[:, 1:] * batch["dist_map"]).flatten(1).mean(1).mean()
        torch.testing.assert_close(values["boundary"].mean(), reference)
    total = sum(values[name].mean() for name in expected_terms - {"loss"})  # both weights 1 for the gradient check
    total.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
