"""The CRF regulariser overlays (configs/regularisers/) on every bundle, through MONAI's bundle command line."""

import re

import pytest
import torch
from bundle_helpers import ROOT, config_parser, run_bundle

from wss_monai.bundle import bundle_configs
from wss_monai.data.lesion_phantoms import make_isles_phantoms, make_wmh_phantoms
from wss_monai.data.phantoms import make_cardiac_phantoms
from wss_monai.losses import DenseCRFLoss, GatedCRFLoss, GridPottsLoss, PartialCrossEntropyLoss, PottsEnergy

ACDC = bundle_configs("acdc", "configs/profiles/cpu_quick.yaml")
SCRIBBLE_FILES = ROOT / "configs/supervision/scribble_files.yaml"
REGULARISERS = {
    "grid_crf": GridPottsLoss,
    "dense_crf": DenseCRFLoss,
    "gated_crf": GatedCRFLoss,
}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cardiac(tmp_path_factory):
    folder = tmp_path_factory.mktemp("acdc")
    return make_cardiac_phantoms(folder, num_patients=5, seed=4, shape=(40, 40), num_slices=(3, 4))


@pytest.mark.parametrize("recipe", ["scribble_files", "scribble", "points"])
@pytest.mark.parametrize("regulariser", sorted(REGULARISERS))
def test_every_overlay_adds_its_term_to_any_seed_recipe(recipe, regulariser, cardiac):
    configs = ACDC + [ROOT / f"configs/supervision/{recipe}.yaml", ROOT / f"configs/regularisers/{regulariser}.yaml"]
    parser = config_parser(configs, dataset_dir=str(cardiac), output_dir="unused")
    terms = parser.get_parsed_content("loss_terms", instantiate=True)
    assert isinstance(terms["pce"]["loss"], PartialCrossEntropyLoss)
    assert isinstance(terms["crf"]["loss"], REGULARISERS[regulariser])
    assert terms["crf"]["weight"] == parser.get_parsed_content("crf_weight")
    assert ("potts_energy" in terms) == (regulariser == "grid_crf")
    if regulariser == "grid_crf":
        assert isinstance(terms["potts_energy"]["loss"], PottsEnergy) and terms["potts_energy"]["weight"] == 0.0


@pytest.mark.parametrize("regulariser", sorted(REGULARISERS))
def test_training_logs_the_crf_term_and_checkpoints_its_ramp(regulariser, cardiac, tmp_path):
    configs = ACDC + [SCRIBBLE_FILES, ROOT / f"configs/regularisers/{regulariser}.yaml"]
    result = run_bundle(
        "training",
        configs,
        cwd=tmp_path,
        dataset_dir=cardiac,
        output_dir=tmp_path / "run",
        spatial_size=32,
        crf_warmup_epochs=1,
        crf_ramp_epochs=1,
    )
    log = result.stdout + result.stderr
    values = [float(v) for v in re.findall(r"epoch \d/2: total \S+\s+pce \S+\s+crf (\S+)", log)]
    assert len(values) == 2 and all(v > 0 for v in values)
    weights = [float(w) for w in re.findall(r"weight of 'crf' (\S+)", log)]
    parser = config_parser(configs, dataset_dir=str(cardiac), spatial_size=32)
    final_weight = parser.get_parsed_content("crf_weight")
    assert weights == pytest.approx([final_weight / 2, final_weight])  # warm-up epoch at 0, then the ramp
    final = torch.load(tmp_path / "run/models/model_final.pt", weights_only=False)
    assert final["crf_weight_ramp"]["epochs"] == 2
    if regulariser == "grid_crf":
        assert re.search(r"potts_energy \d", log)


def test_ramp_resumes_where_it_stopped(cardiac, tmp_path):
    configs = ACDC + [SCRIBBLE_FILES, ROOT / "configs/regularisers/grid_crf.yaml"]
    common = {"dataset_dir": cardiac, "spatial_size": 32, "crf_weight": 1.0}
    common.update(crf_warmup_epochs=2, crf_ramp_epochs=2)
    run_bundle("training", configs, cwd=tmp_path, output_dir=tmp_path / "a", max_epochs=2, **common)
    resumed = run_bundle(
        "training",
        configs,
        cwd=tmp_path,
        output_dir=tmp_path / "b",
        max_epochs=3,
        resume_checkpoint=tmp_path / "a/models/model_final.pt",
        **common,
    )
    weights = [float(w) for w in re.findall(r"weight of 'crf' (\S+)", resumed.stdout + resumed.stderr)]
    # after 3 epochs: (3 - 2 + 1) / (2 + 1) of the weight, logged with 4 digits
    assert weights == pytest.approx([2.0 / 3.0], rel=1e-3)


@pytest.mark.parametrize(
    "bundle, regulariser, maker",
    [
        ("isles", "dense_crf", lambda d: make_isles_phantoms(d, num_cases=5, seed=2, shape=(32, 32))),
        ("wmh", "gated_crf", lambda d: make_wmh_phantoms(d, num_subjects=4, seed=5, shape=(32, 32, 8))),
        ("wmh", "grid_crf", lambda d: make_wmh_phantoms(d, num_subjects=4, seed=5, shape=(32, 32, 8))),
    ],
)
def test_overlays_run_on_the_multichannel_lesion_bundles(bundle, regulariser, maker, tmp_path):
    data = maker(tmp_path / "data")
    configs = bundle_configs(
        bundle,
        "configs/profiles/lesion_cpu_quick.yaml",
        "configs/supervision/scribble.yaml",
        f"configs/regularisers/{regulariser}.yaml",
    )
    extra = {"patient_map_file": data / "phantom_patients.json"} if bundle == "isles" else {}
    result = run_bundle(
        "training", configs, cwd=tmp_path, dataset_dir=data, output_dir=tmp_path / "run", spatial_size=32, **extra
    )
    assert re.search(r"epoch 2/2: total \S+\s+pce \S+\s+crf \d", result.stdout + result.stderr)
    assert (tmp_path / "run/models/model_final.pt").is_file()


def test_two_overlays_merge_their_handlers_and_saved_state(cardiac, tmp_path):
    configs = ACDC + [
        SCRIBBLE_FILES,
        ROOT / "configs/regularisers/trust_region.yaml",
        ROOT / "configs/regularisers/dense_crf.yaml",
    ]
    parser = config_parser(configs, dataset_dir=str(cardiac), output_dir=str(tmp_path / "run"), solver_workers=0)
    state = parser.get_parsed_content("regulariser_state")  # their summary writer writes under output_dir
    # in the order the overlays were merged (the trust region's own partial-CE ramp after its proposals)
    assert list(state) == ["trust_region_proposals", "pce_weight_ramp", "crf_weight_ramp"]
    handlers = parser.get_parsed_content("regulariser_handlers")
    assert [type(h).__name__ for h in handlers] == ["TrustRegionProposals", "LossWeightRamp", "LossWeightRamp"]
    assert all(h is state[name] for h, name in zip(handlers, state))  # every handler is the saved object
    terms = parser.get_parsed_content("loss_terms", instantiate=True)
    assert isinstance(terms["crf"]["loss"], DenseCRFLoss)
    assert type(terms["trust_region"]["loss"]).__name__ == "RobustTrustRegionLoss"
