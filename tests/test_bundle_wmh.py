"""End-to-end runs of the wmh bundle (label 2 ignored) and the ignore handling of every lesion recipe."""

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from bundle_helpers import ROOT, config_parser, run_bundle
from monai.bundle import ConfigParser
from monai.losses import GeneralizedDiceLoss

from wss_monai.bundle import bundle_configs
from wss_monai.data.lesion_phantoms import make_wmh_phantoms
from wss_monai.losses import BoundaryLoss, IgnoreMaskedLoss
from wss_monai.metrics import lesion_metrics

TRAIN = bundle_configs("wmh")
QUICK = ROOT / "configs/profiles/lesion_cpu_quick.yaml"
RECIPES = sorted((ROOT / "configs/lesion").glob("*.yaml"))

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    return make_wmh_phantoms(tmp_path_factory.mktemp("wmh"), num_subjects=4, seed=5, shape=(32, 32, 8))


@pytest.fixture(scope="module")
def trained(phantoms, tmp_path_factory):
    """Plain `run` of bundle + CPU profile + Dice-CE/boundary recipe, then evaluation and inference."""
    out = tmp_path_factory.mktemp("wmh_run")
    configs = [*TRAIN, QUICK, ROOT / "configs/lesion/dice_ce_boundary.yaml"]
    run_bundle("run", configs, cwd=out, dataset_dir=phantoms, output_dir=out / "run")
    run_bundle("evaluating", bundle_configs("wmh", *configs[len(TRAIN):], kind="evaluate"), cwd=out,
           dataset_dir=phantoms, output_dir=out / "run")  # fmt: skip
    run_bundle("inferring", bundle_configs("wmh", kind="inference"), cwd=out, base={},
           input_dir=phantoms, run_dir=out / "run")  # fmt: skip
    return out / "run"


def test_training_writes_checkpoints_with_the_schedule(trained):
    final = torch.load(trained / "models/model_final.pt", weights_only=False)
    assert (trained / "models/model.pt").is_file()
    assert final["boundary_schedule"]["epochs"] == 2 and final["boundary_schedule"]["alpha"] == pytest.approx(0.03)
    assert final["model"]["model.0.conv.unit0.conv.weight"].shape[1] == 2  # FLAIR + T1


def test_evaluation_matches_lesion_metrics_with_label_2_ignored(trained, phantoms):
    """The CSV rows equal lesion_metrics recomputed from the saved predictions with the ignore mask."""
    with open(trained / "eval/metrics.csv") as f:
        rows = {row["case"]: row for row in csv.DictReader(f)}
    datalist = json.loads((trained / "datalist.json").read_text())
    assert sorted(rows) == sorted(c["patient"] for c in datalist["validation"])
    for case in datalist["validation"]:
        label_image = nib.load(case["label"])
        label = np.asarray(label_image.dataobj)
        subject = Path(case["label"]).parent
        pred_file = trained / "predictions" / subject.relative_to(phantoms) / "pre/FLAIR_seg.nii.gz"
        pred = nib.load(pred_file)
        assert pred.shape == label.shape
        np.testing.assert_allclose(pred.affine, label_image.affine, atol=1e-5)
        pred = np.asarray(pred.dataobj)
        spacing = label_image.header.get_zooms()
        expected = lesion_metrics(pred == 1, label == 1, spacing, ignore_mask=label == 2)
        row = rows[case["patient"]]
        for name in ("dice", "avd", "recall", "f1", "n_gt_lesions"):
            assert float(row[name]) == pytest.approx(expected[name], rel=1e-4, abs=1e-5), name
        assert float(row["n_pred_lesions"]) == expected["n_pred_lesions"]  # predicted voxels on label 2 dropped
    assert (trained / "eval/summary.json").is_file()


def _ignore_batch(num_classes=2):
    """A 2D batch whose logits are exact on kept voxels and wrong on ignored ones."""
    generator = torch.Generator().manual_seed(0)
    label = torch.zeros(2, 1, 12, 12, dtype=torch.long)
    label[:, :, 3:6, 3:6] = 1
    label[1, :, 7:9, 7:10] = 1
    ignore = torch.zeros(2, 1, 12, 12, dtype=torch.bool)
    ignore[:, :, 8:11, 1:4] = True  # an "other pathology" blob, 0 in the label
    good = torch.where(torch.nn.functional.one_hot(label[:, 0], num_classes).permute(0, 3, 1, 2).bool(), 4.0, -4.0)
    good = good + 0.3 * torch.randn(good.shape, generator=generator)
    bad = torch.where(ignore, -good, good)  # predicts a lesion on every ignored voxel
    dist_map = torch.randn(2, 1, 12, 12, generator=generator)
    return good, bad, {"label": label, "ignore": ignore, "dist_map": dist_map}


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_term_ignores_label_2(recipe):
    parser = config_parser([*TRAIN, QUICK, recipe])
    assert parser.get_parsed_content("ignore_key") == "ignore"  # from the bundle's ignore_value, by the engine
    assert "ignore" in parser.get_parsed_content("slice_image_keys")
    loss = parser.get_parsed_content("train#loss")
    good, bad, batch = _ignore_batch()
    for name, term in loss.terms.items():
        wrong_there, right_there = term(bad, batch), term(good, batch)
        assert wrong_there.item() == pytest.approx(right_there.item(), abs=1e-6), name
        unmasked = {**batch, "ignore": torch.zeros_like(batch["ignore"])}
        assert abs(term(bad, unmasked).item() - term(good, unmasked).item()) > 1e-3, name  # the mask matters


def test_ignore_masked_loss_values_and_errors():
    good, bad, batch = _ignore_batch()
    gdl = IgnoreMaskedLoss(GeneralizedDiceLoss(softmax=False, to_onehot_y=False), mask_key="ignore")
    probs = torch.softmax(bad, 1) * ~batch["ignore"]
    onehot = torch.nn.functional.one_hot(batch["label"][:, 0], 2).permute(0, 3, 1, 2).float() * ~batch["ignore"]
    assert gdl(bad, batch).item() == pytest.approx(GeneralizedDiceLoss()(probs, onehot).item(), abs=1e-6)
    # "map" mode: the boundary integrand is zero on ignored voxels, by hand
    boundary = IgnoreMaskedLoss(BoundaryLoss(), mode="map", mask_key="ignore")
    expected = (torch.softmax(bad, 1)[:, 1:] * batch["dist_map"] * ~batch["ignore"]).flatten(1).mean(1).mean()
    assert boundary(bad, batch).item() == pytest.approx(expected.item(), abs=1e-6)
    assert not torch.equal(batch["dist_map"], batch["dist_map"] * ~batch["ignore"])  # the batch is not mutated
    assert IgnoreMaskedLoss(BoundaryLoss(), mode="map", mask_key=None)(bad, batch).item() == pytest.approx(
        BoundaryLoss()(bad, batch).item()
    )
    with pytest.raises(ValueError, match=r"mode must be one of .*'map'.*got 'masked'"):
        IgnoreMaskedLoss(BoundaryLoss(), mode="masked")
    with pytest.raises(ValueError, match=r"'ignore' of shape \(2, 1, 6, 6\) does not match \(2, 2, 12, 12\)"):
        gdl(bad, {**batch, "ignore": batch["ignore"][..., :6, :6]})
    with pytest.raises(KeyError, match="needs the batch key 'ignore'"):
        gdl(bad, {"label": batch["label"]})


def test_wrong_label_values_and_missing_modality_are_named(tmp_path):
    broken = make_wmh_phantoms(tmp_path / "broken", num_subjects=2, seed=1, shape=(32, 32, 8))
    parser = config_parser([*TRAIN, QUICK], output_dir=str(tmp_path / "out"), dataset_dir=str(broken))
    label_file = broken / "Utrecht/0/wmh.nii.gz"
    image = nib.load(label_file)
    label = np.asarray(image.dataobj).copy()
    label[0, 0, 0] = 4
    nib.save(nib.Nifti1Image(label, image.affine), label_file)
    with pytest.raises(Exception) as info:
        parser.get_parsed_content("datalist")
    assert "Utrecht/0/wmh.nii.gz has values [4] outside range(3)" in str(info.value.__cause__)
    (broken / "Singapore/1/pre/T1.nii.gz").unlink()
    with pytest.raises(Exception) as info:
        ConfigParser(parser.get()).get_parsed_content("datalist")
    assert isinstance(info.value.__cause__, FileNotFoundError)
    assert "T1 image missing" in str(info.value.__cause__) and "Singapore/1/pre/T1.nii.gz" in str(info.value.__cause__)
