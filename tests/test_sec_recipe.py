"""The tags_sec recipe on the acdc bundle: classifier stage then segmentation stage through ``python -m monai.bundle``.

Small cardiac phantoms; the pipeline's contents (tags, cues, loss terms) are checked in-process from the same
configs, and the config-level ablations resolve to the expected losses.
"""

import csv
import json
import math

import pytest
import torch
from bundle_helpers import ROOT, SMALL, config_parser, run_bundle

from wss_monai import UNLABELLED
from wss_monai.bundle import bundle_configs
from wss_monai.data.phantoms import make_cardiac_phantoms

TRAIN = bundle_configs("acdc")
SEC = ROOT / "configs/supervision/tags_sec.yaml"
CLASSIFIER = ROOT / "configs/supervision/tags_sec_classifier.yaml"
RUN = SMALL

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    return make_cardiac_phantoms(
        tmp_path_factory.mktemp("acdc"), num_patients=6, seed=3, shape=(48, 48), num_slices=(4, 5)
    )


@pytest.fixture(scope="module")
def stages(phantoms, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    run_bundle("training", [*TRAIN, SEC, CLASSIFIER], out, base=RUN, dataset_dir=phantoms, output_dir=out / "cls")
    ckpt = out / "cls/models/model.pt"
    run_bundle(
        "training", [*TRAIN, SEC], out, base=RUN, dataset_dir=phantoms, output_dir=out / "seg", sec_classifier_ckpt=ckpt
    )
    return out, ckpt


def test_two_stages_write_their_files_and_a_sane_metric(stages):
    out, ckpt = stages
    assert ckpt.is_file() and (out / "cls/models/model_final.pt").is_file()
    seg = out / "seg"
    for name in ("models/model.pt", "models/model_final.pt", "datalist.json", "timing.json"):
        assert (seg / name).is_file(), name
    rows = list(csv.DictReader(open(seg / "validation/metrics.csv")))
    assert len(rows) == 4  # two validation patients, two frames each
    dice = [float(r[k]) for r in rows for k in ("dice_rv", "dice_myo", "dice_lv")]
    assert all(0.0 <= d <= 1.0 for d in dice) and max(dice) > 0.0
    # the final checkpoint's network is the segmentation U-Net, not the classifier
    state = torch.load(seg / "models/model_final.pt", map_location="cpu", weights_only=False)
    assert any(key.startswith("model.0.conv") or "submodule" in key for key in state["model"])
    assert not any(key.startswith("classifier.") for key in state["model"])


def test_stage_two_batches_hold_tags_and_cues_from_the_classifier(stages, phantoms):
    out, ckpt = stages
    parser = config_parser(
        [*TRAIN, SEC], **RUN, dataset_dir=str(phantoms), output_dir=str(out / "probe"), sec_classifier_ckpt=str(ckpt)
    )
    item = parser.get_parsed_content("train#dataset")[0]
    assert item["tags"].shape == (4,) and item["tags"][0] == 1
    cues = torch.as_tensor(item["cues"])
    assert cues.shape == (1, 32, 32)
    values = set(torch.unique(cues).tolist())
    assert values <= {float(UNLABELLED), 0.0, 1.0, 2.0, 3.0}
    absent = [k for k in range(1, 4) if item["tags"][k] == 0]
    assert not any(k in values for k in absent)  # absent classes never get a cue
    batch = {k: torch.as_tensor(v)[None] for k, v in item.items() if k in ("image", "cues", "tags")}
    terms = parser.get_parsed_content("train#loss").terms
    logits = torch.zeros(1, 4, 32, 32)
    assert terms["expand"](logits, batch).item() > 0
    assert math.isfinite(terms["constrain"](logits, batch).item())


def test_ablations_and_missing_checkpoint(phantoms, tmp_path):
    parser = config_parser([*TRAIN, SEC], expand_weight=0.0, gwrp_present_decay=0.0, gwrp_background_decay=1.0)
    terms = parser.get_parsed_content("loss_terms")
    assert terms["expand"]["weight"] == 0.0 and terms["expand"]["loss"].present_decay == 0.0
    assert terms["expand"]["loss"].background_decay == 1.0
    result = run_bundle(
        "training", [*TRAIN, SEC], tmp_path, check=False, dataset_dir=phantoms, output_dir=tmp_path / "x"
    )
    assert result.returncode != 0 and "sec_classifier_ckpt is not set" in result.stdout + result.stderr


def test_tags_from_a_file_in_the_recipe(phantoms, tmp_path):
    datalist = config_parser([*TRAIN, SEC], dataset_dir=str(phantoms), output_dir=str(tmp_path)).get_parsed_content(
        "datalist"
    )
    case = datalist["training"][0]["image"].split("/")[-1].replace(".nii.gz", "")
    (tmp_path / "tags.json").write_text(json.dumps({case: [[0, 9]] * 5}))
    parser = config_parser(
        [*TRAIN, SEC, CLASSIFIER],
        **RUN,
        dataset_dir=str(phantoms),
        output_dir=str(tmp_path),
        sec_tags_file=str(tmp_path / "tags.json"),
        max_train_volumes=1,
    )
    with pytest.raises(Exception) as error:
        parser.get_parsed_content("train#dataset")[0]
    chain, e = [], error.value
    while e is not None:
        chain.append(str(e))
        e = e.__cause__ or e.__context__
    assert any(f"case {case!r}" in m and "[9], which the bundle does not have" in m for m in chain)
