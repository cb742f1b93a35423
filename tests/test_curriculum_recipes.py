"""Curriculum semi-supervision on the acdc bundle: stage 1 then stage 2, FS-on-n, oracle, proposals, hybrid.

Bundle runs through ``python -m monai.bundle`` on small cardiac phantoms; the pipelines' contents
(supervision marks, bounds, pseudo-labels, losses) are checked in-process from the same configs.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from bundle_helpers import error_chain
from monai.bundle import ConfigParser
from monai.losses import DiceLoss

from wss_monai.bundle import bundle_configs
from wss_monai.data.hybrid_acdc import make_hybrid_acdc_datalist
from wss_monai.data.phantoms import make_cardiac_phantoms
from wss_monai.losses import supervision_mask
from wss_monai.networks import SizeRegressor, load_network_copy, load_size_regressor, save_size_regressor
from wss_monai.transforms import PseudoLabels, PseudoLabelsd

ROOT = Path(__file__).resolve().parents[1]
TRAIN = bundle_configs("acdc")
QUICK = ROOT / "configs/profiles/cpu_quick.yaml"
REGRESSOR = ROOT / "bundles/acdc/configs/size_regressor.yaml"
RECIPES = ROOT / "configs/supervision"
SIZE = 32
SMALL = {"spatial_size": SIZE, "batch_size": 8, "max_epochs": 1, "val_interval": 1, "num_validation": 2}

pytestmark = pytest.mark.slow


def bundle(run_id, configs, cwd, **overrides):
    files = "[" + ",".join(f"'{c}'" for c in configs) + "]"
    command = [sys.executable, "-m", "monai.bundle", "run", run_id, "--config_file", files]
    for key, value in overrides.items():
        command += [f"--{key}", str(value)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env)
    if result.returncode:
        raise AssertionError(f"bundle run failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def parse(recipe, dataset, out, **overrides):
    """The bundle with ``recipe`` (a recipe file's stem, or several joined by '+', merged in that order)."""
    parser = ConfigParser()
    parser.read_config([*map(str, TRAIN), str(QUICK), *(str(RECIPES / f"{r}.yaml") for r in recipe.split("+"))])
    for key, value in {**SMALL, "dataset_dir": str(dataset), "output_dir": str(out), **overrides}.items():
        parser[key] = value
    parser.parse()
    return parser


def constant_regressor(path, value):
    net = SizeRegressor(channels=(4,), scale=value)
    torch.nn.init.zeros_(net.head.weight)  # softplus(bias) = 1: R(x) = value for every image
    return save_size_regressor(net, path, classes=[3], spatial_size=SIZE, model_kwargs={"channels": (4,)})


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    return make_cardiac_phantoms(
        tmp_path_factory.mktemp("acdc"), num_patients=6, seed=3, shape=(48, 48), num_slices=(4, 5)
    )


@pytest.fixture(scope="module")
def stages(phantoms, tmp_path_factory):
    """Stage 1 (regressor), stage 2 (curriculum) and FS-on-n, as bundle commands."""
    out = tmp_path_factory.mktemp("curriculum")
    n = {"num_full_patients": 2}
    bundle(
        "training",
        [REGRESSOR],
        cwd=out,
        dataset_dir=phantoms,
        output_dir=out / "regressor",
        regressor_epochs=1,
        regressor_augment=2,
        num_validation=2,
        spatial_size=SIZE,
        **n,
    )
    ckpt = out / "regressor/models/size_regressor.pt"
    configs = [*TRAIN, QUICK, RECIPES / "curriculum.yaml"]
    bundle(
        "training",
        configs,
        cwd=out,
        dataset_dir=phantoms,
        output_dir=out / "cur",
        size_regressor_ckpt=ckpt,
        **SMALL,
        **n,
    )
    bundle(
        "training",
        [*TRAIN, QUICK, RECIPES / "full_subset.yaml"],
        cwd=out,
        dataset_dir=phantoms,
        output_dir=out / "fs",
        **SMALL,
        **n,
    )
    return out


def test_stage_one_writes_checkpoint_and_validation_size_table(stages):
    reg = stages / "regressor"
    model = load_size_regressor(reg / "models/size_regressor.pt", spatial_size=SIZE, classes=[3])
    assert isinstance(model, SizeRegressor) and not model.training
    datalist = json.loads((reg / "datalist.json").read_text())
    assert len(datalist["full_patients"]) == 2
    assert {c["patient"] for c in datalist["training"]} == set(datalist["full_patients"])  # labelled patients only
    rows = (reg / "size_regressor/validation_sizes.csv").read_text().splitlines()
    assert rows[0] == "case,slice,output,true_size,predicted_size,abs_error,within_bounds"
    num_val_slices = sum(int(nib.load(c["image"]).shape[2]) for c in datalist["validation"])
    assert len(rows) == 1 + num_val_slices
    summary = json.loads((reg / "size_regressor/summary.json").read_text())
    assert len(summary["history"]) == 1 and np.isfinite(summary["history"]).all()
    true = [float(r.split(",")[3]) for r in rows[1:]]
    assert summary["validation"]["mean_true_size"] == pytest.approx(np.mean(true))


def test_stage_two_and_fs_runs_write_models_and_finite_metrics(stages):
    for name in ("cur", "fs"):
        run = stages / name
        for f in ("models/model_final.pt", "datalist.json", "timing.json", "validation/metrics.csv"):
            assert (run / f).is_file(), (name, f)
        state = torch.load(run / "models/model_final.pt", weights_only=False)
        assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
        rows = (run / "validation/metrics.csv").read_text().splitlines()[1:]
        assert rows and all(np.isfinite([float(x) for x in r.split(",")[1:]]).all() for r in rows)
    cur = json.loads((stages / "cur/datalist.json").read_text())
    fs = json.loads((stages / "fs/datalist.json").read_text())
    assert cur["full_patients"] == fs["full_patients"]  # the same n patients in both baselines
    assert {c["patient"] for c in fs["training"]} == set(fs["full_patients"])
    assert {c["patient"] for c in cur["training"]} > set(cur["full_patients"])
    assert cur["validation"] == fs["validation"]


def test_only_the_n_chosen_patients_are_full_in_the_batches(phantoms, tmp_path):
    parser = parse("size+hybrid_size", phantoms, tmp_path, num_full_patients=1)
    full = set(parser.get_parsed_content("datalist")["full_patients"])
    assert len(full) == 1
    volumes = parser.get_parsed_content("train#dataset").volumes
    seen_full, num_full_images, num_images = set(), 0, 0
    for batch in parser.get_parsed_content("train#dataloader"):
        mask = supervision_mask(batch["supervision"], num_images=batch["image"].shape[0])
        patients = [volumes[int(v)]["patient"] for v in batch["volume_index"]]
        assert mask.tolist() == [p in full for p in patients]
        seen_full |= {p for p, m in zip(patients, mask.tolist()) if m}
        num_full_images += int(mask.sum())
        num_images += mask.numel()
    assert seen_full == full
    assert 0.3 < num_full_images / num_images < 0.7  # labelled cases repeated to about half the slices


def barrier(z, t):
    """The log-barrier extension by hand: -log(-z)/t if z <= -1/t², else t·z - log(1/t²)/t + 1/t."""
    return torch.where(z <= -1 / t**2, -torch.log((-z).clamp_min(1 / t**2)) / t, t * z + 2 * np.log(t) / t + 1 / t)


@pytest.mark.parametrize("mode", ["log_barrier", "penalty"])
def test_curriculum_bounds_come_from_the_regressor_checkpoint(phantoms, tmp_path, mode):
    ckpt = constant_regressor(tmp_path / "constant.pt", 40.0)
    overrides = {} if mode == "log_barrier" else {"constraint_handling": "penalty"}  # log_barrier is the default
    parser = parse("curriculum", phantoms, tmp_path, num_full_patients=1, size_regressor_ckpt=str(ckpt), **overrides)
    dataset = parser.get_parsed_content("train#dataset")
    bounds = torch.stack([torch.as_tensor(dataset[i]["bounds"]) for i in range(len(dataset))])  # (N, 4, 2)
    assert torch.allclose(bounds[:, 3], torch.tensor([36.0, 44.0]).expand(len(dataset), 2))
    assert torch.equal(bounds[:, :3, 0], torch.zeros(len(dataset), 3))
    assert torch.equal(bounds[:, :3, 1], torch.full((len(dataset), 3), float(SIZE * SIZE)))
    # the loss by hand: Dice + CE on full images; on the others, on the LV only, either 1e-5 x the log-barrier
    # extension (t = 5) of the raw soft size or (published) 1e-2 x the quadratic penalty normalised by |Ω|
    loader = parser.get_parsed_content("train#dataloader")
    batch = next(b for b in loader if 0 < supervision_mask(b["supervision"]).sum() < len(b["supervision"]))
    network = parser.get_parsed_content("network")
    logits = network(batch["image"])
    out = parser.get_parsed_content("train#loss")(logits, batch)
    full = supervision_mask(batch["supervision"])
    ce = torch.nn.functional.cross_entropy(logits, batch["label"][:, 0].long(), reduction="none").mean((1, 2))
    lv = torch.softmax(logits, 1)[:, 3].sum((1, 2))
    if mode == "log_barrier":
        weak = 1e-5 * (barrier(36.0 - lv.double(), 5.0) + barrier(lv.double() - 44.0, 5.0)).float()
    else:
        weak = 0.01 * (torch.relu(36.0 - lv) ** 2 + torch.relu(lv - 44.0) ** 2) / SIZE**2
    dice = DiceLoss(to_onehot_y=True, softmax=True, reduction="none")(logits, batch["label"]).flatten(1).mean(1)
    torch.testing.assert_close(out["ce_or_size"], torch.where(full, ce, weak).mean())
    torch.testing.assert_close(out["dice"], torch.where(full, dice, 0.0).mean())
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and all(torch.isfinite(p.grad).all() for p in network.parameters())
    # the t schedule only with the log barrier; it reaches the size term nested in both switch losses
    handlers = parser.get_parsed_content("recipe_handlers")
    if mode == "penalty":
        assert handlers == [] and parser.get_parsed_content("recipe_state") == {}
        return
    (scheduler,) = handlers
    weak_loss = parser.get_parsed_content("loss_terms#ce_or_size#loss").weak_loss
    assert scheduler.terms == [weak_loss] and weak_loss.t == 5.0
    scheduler(type("Engine", (), {"state": type("State", (), {"epoch": 1})()})())
    assert weak_loss.t == pytest.approx(5.5)
    assert parser.get_parsed_content("recipe_state") == {"log_barrier": scheduler}


def test_oracle_bounds_are_the_true_lv_sizes(phantoms, tmp_path):
    parser = parse("curriculum_oracle", phantoms, tmp_path, num_full_patients=1)
    dataset = parser.get_parsed_content("train#dataset")
    for i in range(len(dataset)):
        item = dataset[i]
        tau = float((torch.as_tensor(item["label"]) == 3).sum())
        assert torch.allclose(torch.as_tensor(item["bounds"])[3], torch.tensor([0.9 * tau, 1.1 * tau]))
    batch = next(iter(parser.get_parsed_content("train#dataloader")))
    loss = parser.get_parsed_content("train#loss")(parser.get_parsed_content("network")(batch["image"]), batch)
    assert torch.isfinite(loss["loss"])


def test_hybrid_size_loss_is_finite(phantoms, tmp_path):
    parser = parse("size+hybrid_size", phantoms, tmp_path, num_full_patients=2)
    batch = next(iter(parser.get_parsed_content("train#dataloader")))
    out = parser.get_parsed_content("train#loss")(parser.get_parsed_content("network")(batch["image"]), batch)
    assert set(out) == {"loss", "ce", "dice", "size"} and all(torch.isfinite(v) for v in out.values())
    size = parser.get_parsed_content("size_term#loss")
    assert size.mode == "penalty" and parser.get_parsed_content("train#loss").weights["size"] == 0.01 / SIZE**2


def test_a_bad_constraint_handling_of_the_curriculum_is_named(phantoms, tmp_path):
    parser = parse("curriculum_oracle", phantoms, tmp_path, num_full_patients=1, constraint_handling="lagrangian")
    with pytest.raises(Exception) as info:
        parser.get_parsed_content("train#loss")
    assert "constraint_handling must be one of ('penalty', 'log_barrier'), got 'lagrangian'" in error_chain(info.value)


def test_hybrid_recipes_need_a_bundle_with_a_hybrid_datalist(phantoms, tmp_path):
    parser = ConfigParser()
    parser.read_config([str(f) for f in bundle_configs("wmh", RECIPES / "full_subset.yaml")])
    parser["dataset_dir"] = str(phantoms)
    with pytest.raises(Exception) as info:
        parser.get_parsed_content("datalist")
    assert "`@make_hybrid_datalist` is not defined" in error_chain(info.value)


def test_proposals_use_the_fs_network_on_unlabelled_patients_only(stages, phantoms, tmp_path):
    ckpt = stages / "fs/models/model_final.pt"
    parser = parse("proposals", phantoms, tmp_path, num_full_patients=2, proposals_ckpt=str(ckpt))
    fs_network = load_network_copy(parser.get_parsed_content("network"), ckpt)
    volumes = parser.get_parsed_content("train#dataset").volumes
    truth = parse("full", phantoms, tmp_path / "full").get_parsed_content("train#dataset").volumes
    truth = {(v["patient"], v["frame"]): v["label"] for v in truth}
    kinds = set()
    for volume in volumes:
        expected = truth[(volume["patient"], volume["frame"])]
        if volume["supervision"] == "weak":
            expected = PseudoLabels(fs_network)(volume["image"])
        torch.testing.assert_close(torch.as_tensor(volume["label"]), torch.as_tensor(expected))
        kinds.add(volume["supervision"])
    assert kinds == {"full", "weak"}
    bundle(
        "training",
        [*TRAIN, QUICK, RECIPES / "proposals.yaml"],
        cwd=tmp_path,
        dataset_dir=phantoms,
        output_dir=tmp_path / "run",
        num_full_patients=2,
        proposals_ckpt=ckpt,
        **SMALL,
    )
    assert (tmp_path / "run/models/model_final.pt").is_file()


def test_missing_regressor_checkpoint_is_a_clear_error(phantoms, tmp_path):
    parser = parse("curriculum", phantoms, tmp_path, num_full_patients=1)
    with pytest.raises(Exception) as info:
        parser.get_parsed_content("train#dataset")
    assert "size_regressor_ckpt is not set: pass --size_regressor_ckpt" in error_chain(info.value)
    parser = parse("curriculum", phantoms, tmp_path, num_full_patients=1, size_regressor_ckpt=str(tmp_path / "nope.pt"))
    with pytest.raises(Exception) as info:
        parser.get_parsed_content("train#dataset")
    assert "size_regressor_ckpt '" in error_chain(info.value) and "does not exist" in error_chain(info.value)
    parser = parse("proposals", phantoms, tmp_path, num_full_patients=1)
    with pytest.raises(Exception) as info:
        parser.get_parsed_content("train#dataset")
    assert "proposals_ckpt is not set" in error_chain(info.value)


def test_too_many_labelled_patients_is_a_clear_error(phantoms, tmp_path):
    parser = parse("full_subset", phantoms, tmp_path, num_full_patients=5)
    with pytest.raises(Exception) as info:
        parser.get_parsed_content("datalist")
    assert "num_full_patients must be an integer in [0, 4]" in error_chain(info.value) and "got 5" in error_chain(
        info.value
    )


def test_regressor_checkpoint_checks(tmp_path):
    ckpt = constant_regressor(tmp_path / "c.pt", 10.0)
    with pytest.raises(ValueError, match=r"trained on 32² images but spatial_size is 64"):
        load_size_regressor(ckpt, spatial_size=64)
    with pytest.raises(ValueError, match=r"predicts classes \[3\], expected \[1\]"):
        load_size_regressor(ckpt, classes=[1])
    torch.save({"model": {}}, tmp_path / "seg.pt")
    with pytest.raises(ValueError, match=r"is not a size-regressor checkpoint"):
        load_size_regressor(tmp_path / "seg.pt")
    with pytest.raises(ValueError, match=r"proposals_ckpt .* does not fit the configured network"):
        load_network_copy(torch.nn.Conv2d(1, 2, 1), tmp_path / "seg.pt")


def test_hybrid_acdc_datalist_subsets_and_repeats(phantoms):
    balanced = make_hybrid_acdc_datalist(phantoms, num_full_patients=1, num_validation=2, full_repeats="balance")
    assert balanced["full_repeats"] == 3  # 3 weak patients for 1 full one, 2 frames each
    assert sum(c["supervision"] == "full" for c in balanced["training"]) == 6
    nested = make_hybrid_acdc_datalist(phantoms, num_full_patients=2, num_validation=2, subset="full")
    assert set(balanced["full_patients"]) < set(nested["full_patients"])
    assert {c["supervision"] for c in nested["training"]} == {"full"} and len(nested["training"]) == 4
    with pytest.raises(ValueError, match=r"full_repeats must be an integer >= 1 or 'balance', got 0"):
        make_hybrid_acdc_datalist(phantoms, num_full_patients=1, num_validation=2, full_repeats=0)
    with pytest.raises(ValueError, match=r"subset must be one of \('all', 'full'\), got 'weak'"):
        make_hybrid_acdc_datalist(phantoms, num_full_patients=1, num_validation=2, subset="weak")


def test_pseudo_labelsd_keeps_labelled_cases_and_needs_the_mark():
    net = torch.nn.Conv2d(1, 3, 1)
    with torch.no_grad():
        net.weight.zero_()
        net.bias.copy_(torch.tensor([0.0, 0.0, 1.0]))
    image, label = torch.zeros(1, 8, 8, 2), torch.ones(1, 8, 8, 2)
    transform = PseudoLabelsd(keys="image", network=net)
    weak = transform({"image": image, "label": label, "supervision": "weak"})
    assert weak["label"].shape == (1, 8, 8, 2) and torch.all(weak["label"] == 2)
    full = transform({"image": image, "label": label, "supervision": "full"})
    assert full["label"] is label
    with pytest.raises(KeyError, match=r"needs the case key 'supervision'"):
        transform({"image": image, "label": label})
    with pytest.raises(ValueError, match=r"image must be a tensor of shape \(C, H, W\[, D\]\)"):
        PseudoLabels(net)(torch.zeros(8, 8))
