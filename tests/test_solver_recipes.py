"""The solver overlays (configs/regularisers/adm.yaml, trust_region.yaml) on the acdc bundle, 2D and 3D."""

import re

import pytest
import torch
from bundle_helpers import ROOT, config_parser, run_bundle

from wss_monai.bundle import bundle_configs
from wss_monai.constants import UNLABELLED
from wss_monai.data.phantoms import make_cardiac_phantoms
from wss_monai.losses import ADMLoss, PartialCrossEntropyLoss, PottsEnergy, RobustTrustRegionLoss

ACDC = bundle_configs("acdc", "configs/profiles/cpu_quick.yaml")
SCRIBBLE_FILES = ROOT / "configs/supervision/scribble_files.yaml"
ADM = ROOT / "configs/regularisers/adm.yaml"
TRUST_REGION = ROOT / "configs/regularisers/trust_region.yaml"
SOLVER_RUN = {"solver_workers": 1, "spatial_size": 32}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cardiac(tmp_path_factory):
    folder = tmp_path_factory.mktemp("acdc")
    return make_cardiac_phantoms(folder, num_patients=5, seed=4, shape=(40, 40), num_slices=(3, 4))


def _train(configs, cardiac, tmp_path, **overrides) -> tuple[str, dict]:
    """A solver-recipe training run into ``tmp_path / "run"``: its log and its final checkpoint."""
    result = run_bundle(
        "training", configs, cwd=tmp_path, dataset_dir=cardiac, output_dir=tmp_path / "run", **SOLVER_RUN, **overrides
    )
    return result.stdout + result.stderr, torch.load(tmp_path / "run/models/model_final.pt", weights_only=False)


@pytest.mark.parametrize("recipe", ["scribble_files", "scribble", "points"])
@pytest.mark.parametrize("profile", [[], [ROOT / "configs/profiles/whole_volumes_3d.yaml"]], ids=["2d", "3d"])
def test_both_overlays_fit_any_seed_recipe_in_2d_and_3d(recipe, profile, cardiac):
    seeds = [ROOT / f"configs/supervision/{recipe}.yaml"]
    adm = config_parser(ACDC + seeds + profile + [ADM], dataset_dir=str(cardiac), output_dir="unused")
    terms = adm.get_parsed_content("loss_terms", instantiate=True)
    assert isinstance(terms["pce"]["loss"], PartialCrossEntropyLoss) and terms["pce"]["weight"] == 1.0
    assert isinstance(terms["adm"]["loss"], ADMLoss) and isinstance(terms["potts_energy"]["loss"], PottsEnergy)
    assert adm.get_parsed_content("train_image_keys") == ["image", "scribble"]
    tr = config_parser(ACDC + seeds + profile + [TRUST_REGION], dataset_dir=str(cardiac), output_dir="unused")
    terms = tr.get_parsed_content("loss_terms", instantiate=True)
    assert terms["pce"]["weight"] == 0.0 and isinstance(terms["trust_region"]["loss"], RobustTrustRegionLoss)
    # eps = (K - 1) / (K + b/a): b/a as configured
    epsilon, k = terms["trust_region"]["loss"].epsilon, tr.get_parsed_content("num_classes")
    a, b = epsilon / (k - 1), 1 - k * epsilon / (k - 1)
    assert b / a == pytest.approx(tr.get_parsed_content("tr_robust_ratio"))
    assert tr.get_parsed_content("train_image_keys") == ["image", "scribble", "proposal"]


def test_adm_training_logs_its_terms_and_checkpoints_gamma(cardiac, tmp_path):
    result = run_bundle(
        "training",
        ACDC + [SCRIBBLE_FILES, ADM],
        cwd=tmp_path,
        dataset_dir=cardiac,
        output_dir=tmp_path / "run",
        adm_gamma_growth=2.0,
        loss_monitor_every=1,  # the watched Potts energy logged in both (short) epochs
        **SOLVER_RUN,
    )
    log = result.stdout + result.stderr
    lines = re.findall(
        r"epoch \d/2: total \S+\s+pce \S+\s+adm (\S+)\s+potts_energy (\S+)\s+adm_proposal_energy (\S+)", log
    )
    assert len(lines) == 2 and all(float(v) > 0 for line in lines for v in line)
    assert [float(g) for g in re.findall(r"gamma (\S+)", log)] == [2.0, 4.0]
    final = torch.load(tmp_path / "run/models/model_final.pt", weights_only=False)
    assert final["adm_gamma_schedule"]["epochs"] == 2


def test_trust_region_training_refreshes_caches_and_resumes(cardiac, tmp_path):
    configs = ACDC + [SCRIBBLE_FILES, TRUST_REGION]
    # loss_monitor_every 1: the watched pce is averaged over the same steps as the trust-region term
    common = {"dataset_dir": cardiac, "tr_interval": 1, "loss_monitor_every": 1, **SOLVER_RUN}
    first = run_bundle("training", configs, cwd=tmp_path, output_dir=tmp_path / "a", **common)
    log = first.stdout + first.stderr
    assert re.findall(r"stage A of epoch (\d): (\d+) proposals", log) == [("1", "14"), ("2", "14")]
    lines = re.findall(r"epoch (\d)/2: total \S+\s+pce (\S+)\s+trust_region (\S+)\s+potts_energy \S+", log)
    assert lines[0][1] == lines[0][2]  # no proposal during the first epoch: the partial CE of the seeds
    saved = torch.load(tmp_path / "a/models/model_final.pt", weights_only=False)["trust_region_proposals"]
    assert saved["refreshes"] == 2 and len(saved["proposals"]) == 6  # 3 training patients x 2 frames
    assert all((p != UNLABELLED).any() for p in saved["proposals"].values())
    # resumed with M = 5: epoch 3 starts no stage A and trains on the saved proposals
    resumed = run_bundle(
        "training",
        configs,
        cwd=tmp_path,
        output_dir=tmp_path / "b",
        max_epochs=3,
        resume_checkpoint=tmp_path / "a/models/model_final.pt",
        **{**common, "tr_interval": 5},
    )
    log = resumed.stdout + resumed.stderr
    assert "stage A" not in log
    pce, trust_region = re.search(r"epoch 3/3: total \S+\s+pce (\S+)\s+trust_region (\S+)", log).groups()
    assert pce != trust_region
    final = torch.load(tmp_path / "b/models/model_final.pt", weights_only=False)["trust_region_proposals"]
    assert final["refreshes"] == 2
    assert all(torch.equal(final["proposals"][v], saved["proposals"][v]) for v in saved["proposals"])


def test_trust_region_on_whole_volumes(cardiac, tmp_path):
    configs = ACDC + [SCRIBBLE_FILES, ROOT / "configs/profiles/whole_volumes_3d.yaml", TRUST_REGION]
    log, final = _train(configs, cardiac, tmp_path, max_epochs=1)
    assert re.search(r"stage A of epoch 1: 6 proposals", log)  # one per volume
    saved = final["trust_region_proposals"]
    assert all((p != UNLABELLED).all() for p in saved["proposals"].values())


def test_trust_region_with_the_dense_crf_stage_a_on_whole_volumes(cardiac, tmp_path):
    configs = ACDC + [SCRIBBLE_FILES, ROOT / "configs/profiles/whole_volumes_3d.yaml", TRUST_REGION]
    log, final = _train(configs, cardiac, tmp_path, max_epochs=1, tr_solver="dense_crf")
    changed = re.search(
        r"stage A of epoch 1: 6 proposals .* mean share of voxels changed from the network's argmax (\S+)", log
    )
    assert changed and 0.0 <= float(changed.group(1)) <= 1.0
    saved = final["trust_region_proposals"]
    assert saved["refreshes"] == 1 and all((p != UNLABELLED).all() for p in saved["proposals"].values())


def test_trust_region_after_the_dense_crf_loss_hands_over_at_the_set_epoch(cardiac, tmp_path):
    configs = ACDC + [SCRIBBLE_FILES, ROOT / "configs/regularisers/dense_crf.yaml", TRUST_REGION]
    log, saved = _train(configs, cardiac, tmp_path, crf_stop_epochs=1, tr_start_epoch=2)
    # epoch 1: the dense CRF loss beside the partial CE (no proposal yet); epoch 2: stage A, then stage B alone
    assert re.findall(r"stage A of epoch (\d)", log) == ["2"]
    # the weight logged at the end of an epoch is the next epoch's: 0 from epoch 2 on
    assert [float(w) for w in re.findall(r"weight of 'crf' (\S+)", log)] == [0.0, 0.0]
    totals = dict(re.findall(r"epoch (\d)/2: total (\S+)", log))
    terms = dict(re.findall(r"epoch (\d)/2: .*trust_region (\S+)", log))
    assert float(totals["1"]) > float(terms["1"]) and totals["2"] == terms["2"]
    assert saved["crf_weight_ramp"]["epochs"] == 2 and saved["trust_region_proposals"]["refreshes"] == 1
    assert saved["pce_weight_ramp"]["epochs"] == 2  # the partial CE's weight (0 here) is checkpointed too


@pytest.mark.parametrize("pce_weight, expected", [(None, [0.0] * 4), (1.0, [0.0, 0.0, 1.0, 1.0])], ids=["0", "1"])
def test_the_partial_ce_can_come_back_beside_stage_b(pce_weight, expected, cardiac):
    configs = ACDC + [SCRIBBLE_FILES, ROOT / "configs/regularisers/dense_crf.yaml", TRUST_REGION]
    extra = {} if pce_weight is None else {"tr_pce_weight": pce_weight}
    parser = config_parser(configs, dataset_dir=str(cardiac), crf_stop_epochs=15, tr_start_epoch=16, **extra)
    ramp = parser.get_parsed_content("pce_weight_ramp")
    # after e completed epochs: 0 through epoch 15 (the robust term is the partial CE), tr_pce_weight from epoch 16
    assert [ramp.weight_after(e) for e in (0, 14, 15, 24)] == expected
    assert ramp.loss.weights["pce"] == 0.0 and ramp in parser.get_parsed_content("regulariser_handlers")
    from_the_start = config_parser(configs, dataset_dir=str(cardiac), tr_pce_weight=0.5)
    assert from_the_start.get_parsed_content("pce_weight_ramp").weight_after(0) == 0.5


@pytest.mark.parametrize("regulariser", ["dense_crf", "gated_crf", "grid_crf"])
def test_a_crf_loss_can_stay_beside_the_trust_region_at_a_smaller_weight(regulariser, cardiac):
    configs = ACDC + [SCRIBBLE_FILES, ROOT / f"configs/regularisers/{regulariser}.yaml", TRUST_REGION]
    parser = config_parser(
        configs, dataset_dir=str(cardiac), crf_weight=1e-3, crf_stop_epochs=3, crf_weight_after_stop=2e-5
    )
    ramp = parser.get_parsed_content("crf_weight_ramp")
    assert [ramp.weight_after(e) for e in (0, 2, 3, 10)] == [1e-3, 1e-3, 2e-5, 2e-5]
    handed_over = config_parser(configs, dataset_dir=str(cardiac), crf_weight=1e-3, crf_stop_epochs=3)
    assert handed_over.get_parsed_content("crf_weight_ramp").weight_after(3) == 0.0


def test_adm_can_wait_for_a_crf_loss_to_train_the_network_first(cardiac):
    configs = ACDC + [SCRIBBLE_FILES, ROOT / "configs/regularisers/grid_crf.yaml", ADM]
    parser = config_parser(configs, dataset_dir=str(cardiac), crf_stop_epochs=3, adm_warmup_epochs=3)
    adm_ramp, crf_ramp = parser.get_parsed_content("adm_weight_ramp"), parser.get_parsed_content("crf_weight_ramp")
    assert adm_ramp.loss is crf_ramp.loss and adm_ramp.loss.weights["adm"] == 0.0
    crf_weight = parser.get_parsed_content("crf_weight")
    assert [crf_ramp.weight_after(e) for e in range(5)] == [crf_weight] * 3 + [0.0, 0.0]
    assert [adm_ramp.weight_after(e) for e in range(5)] == [0.0] * 3 + [1.0, 1.0]
    handlers = parser.get_parsed_content("regulariser_handlers")  # attached to the trainer and checkpointed
    assert adm_ramp in handlers and crf_ramp in handlers


def test_the_gamma_schedule_grows_from_the_first_adm_epoch(cardiac):
    parser = config_parser(
        ACDC + [SCRIBBLE_FILES, ADM],
        dataset_dir=str(cardiac),
        adm_warmup_epochs=2,
        adm_gamma=0.25,
        adm_gamma_growth=2.0,
    )
    schedule, ramp = parser.get_parsed_content("adm_gamma_schedule"), parser.get_parsed_content("adm_weight_ramp")
    assert [ramp.weight_after(e) for e in range(4)] == [0.0, 0.0, 1.0, 1.0]
    assert [schedule.value_after(e) for e in range(4)] == [0.25, 0.25, 0.25, 0.5]  # γ 0.25 in the first ADM epoch


@pytest.mark.parametrize("max_epochs, start", [(25, 16), (10, 7), (5, 4)])
def test_the_trust_region_beside_a_crf_loss_starts_after_three_fifths_of_the_epochs(max_epochs, start, cardiac):
    configs = ACDC + [
        SCRIBBLE_FILES,
        ROOT / "configs/regularisers/dense_crf.yaml",
        TRUST_REGION,
        ROOT / "configs/regularisers/trust_region_beside_crf.yaml",
    ]
    parser = config_parser(configs, dataset_dir=str(cardiac), max_epochs=max_epochs)
    assert parser.get_parsed_content("tr_start_epoch") == start
    crf_ramp, pce_ramp = parser.get_parsed_content("crf_weight_ramp"), parser.get_parsed_content("pce_weight_ramp")
    # the CRF loss for the whole run; the partial CE is the robust term until the first stage A, then beside it
    crf_weight = parser.get_parsed_content("crf_weight")
    assert [crf_ramp.weight_after(e) for e in (0, start - 1, max_epochs)] == [crf_weight] * 3
    assert [pce_ramp.weight_after(e) for e in (start - 2, start - 1)] == [0.0, 1.0]
    robust = parser.get_parsed_content("loss_terms#trust_region#loss", instantiate=True)
    assert robust.epsilon == pytest.approx(3 / 5)  # b/a 1 with K = 4: eps = (K - 1) / (K + 1)
