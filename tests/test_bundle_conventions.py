"""The bundles on MONAI's conventions: property checks, a run that records its config, inference.yaml
alone on a trained run, TorchScript export with ``ckpt_export``; and the config layer's layout: the
engine once in configs/engine/, each bundle only its dataset's facts.

The property checks run in this process (``ConfigWorkflow``, initialised, as MONAI requires before
``check_properties``); training and inference run as ``python -m monai.bundle`` subprocesses.
"""

import json
from collections import Counter
from itertools import combinations
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from bundle_helpers import ROOT, SMALL, run_bundles
from monai.bundle import ConfigParser, ConfigWorkflow, ckpt_export
from monai.utils import BundleProperty, BundlePropertyConfig

from wss_monai.bundle import BEST_CHECKPOINT, KINDS, RUN_CONFIG, RUN_METADATA, TrainedRun, bundle_configs
from wss_monai.data.atlas_phantoms import make_atlas_phantoms
from wss_monai.data.lesion_phantoms import make_isles_phantoms, make_wmh_phantoms
from wss_monai.data.phantoms import make_cardiac_phantoms
from wss_monai.data.prostate_phantoms import make_promise12_phantoms

BUNDLES = ("acdc", "isles", "wmh", "promise12", "atlas")
RECIPE = {
    "acdc": "configs/supervision/scribble.yaml",
    "isles": "configs/lesion/gdl_boundary_3d.yaml",
    "wmh": "configs/lesion/gdl_boundary_2d.yaml",
    "promise12": "configs/supervision/boxes.yaml",  # the bundles' point: bounding boxes (docs/boxes.md)
    "atlas": "configs/supervision/boxes.yaml",
}
PROFILE = {
    "acdc": "configs/profiles/cpu_quick.yaml",
    "isles": "configs/profiles/lesion_cpu_quick.yaml",
    "wmh": "configs/profiles/lesion_cpu_quick.yaml",
    "promise12": "configs/profiles/cpu_quick.yaml",
    "atlas": "configs/profiles/lesion_cpu_quick.yaml",
}
CLASSES = {"acdc": 4, "isles": 2, "wmh": 2, "promise12": 2, "atlas": 2}
CHANNELS = {"acdc": 1, "isles": 5, "wmh": 2, "promise12": 1, "atlas": 1}
INFER_EXTRA = {b: {} for b in BUNDLES} | {"isles": {"infer_subset": "TRAINING"}}  # the ISLES phantoms have no TESTING/


CONFIGS = ROOT / "configs"


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("phantoms")
    return {
        "acdc": make_cardiac_phantoms(root / "acdc", num_patients=4, seed=3, shape=(32, 32), num_slices=(3, 4)),
        "isles": make_isles_phantoms(root / "isles", num_cases=4, seed=2, shape=(32, 32), num_slices=(2, 3)),
        "wmh": make_wmh_phantoms(root / "wmh", num_subjects=4, seed=5, shape=(32, 32, 8)),
        "promise12": make_promise12_phantoms(
            root / "promise12", num_cases=4, seed=4, shape=(32, 32), num_slices=(3, 4)
        ),
        "atlas": make_atlas_phantoms(root / "atlas", num_cases=4, seed=6, shape=(32, 32, 12), layout="r1.1"),
    }


def _data_overrides(bundle: str, phantoms: dict[str, Path]) -> dict:
    extra = {"patient_map_file": str(phantoms["isles"] / "phantom_patients.json")} if bundle == "isles" else {}
    return {"dataset_dir": str(phantoms[bundle]), **extra}


def _workflow(config_file, workflow_type: str, **overrides) -> ConfigWorkflow:
    """A ConfigWorkflow, not yet initialised, without the bundle's logging config (this process keeps its own)."""
    files = [str(f) for f in config_file]
    return ConfigWorkflow(config_file=files, workflow_type=workflow_type, logging_file=False, **overrides)


@pytest.fixture(scope="module")
def trained(phantoms, tmp_path_factory) -> dict[str, Path]:
    """One tiny `run training` per bundle (profile + recipe, one epoch), all at once, outside the repository."""
    runs, commands = {}, []
    for bundle in BUNDLES:
        out = tmp_path_factory.mktemp(f"{bundle}_run")
        configs = bundle_configs(bundle, PROFILE[bundle], RECIPE[bundle])
        overrides = {**SMALL, "max_epochs": 1, "output_dir": out / "run", **_data_overrides(bundle, phantoms)}
        commands.append(("training", configs, out, overrides))
        runs[bundle] = out / "run"
    run_bundles(commands)
    return runs


@pytest.fixture(scope="module")
def inputs(phantoms, tmp_path_factory) -> dict[str, tuple[Path, list[tuple[Path, Path]]]]:
    """Per bundle: (input_dir, [(input image, its prediction's path relative to the output folder)])."""
    flat = tmp_path_factory.mktemp("acdc_in")
    acdc = []
    for source in sorted((phantoms["acdc"] / "training/patient001").glob("patient001_frame??.nii.gz")):
        (flat / source.name).write_bytes(source.read_bytes())
        acdc.append((source, Path(source.name.replace(".nii.gz", "_seg.nii.gz"))))
    isles, wmh, promise12, atlas = (phantoms[b] for b in ("isles", "wmh", "promise12", "atlas"))
    return {
        "acdc": (flat, acdc),
        "isles": (
            isles,
            [
                (s, s.relative_to(isles).with_name(s.name.replace(".nii", "_seg.nii.gz")))
                for s in sorted(isles.glob("TRAINING/case_*/SMIR.Brain.XX.O.CT.*/*.nii"))
            ],
        ),
        "wmh": (
            wmh,
            [(s, s.relative_to(wmh).with_name("FLAIR_seg.nii.gz")) for s in sorted(wmh.rglob("FLAIR.nii.gz"))],
        ),
        "promise12": (
            promise12,
            [(s, Path(s.name.replace(".mhd", "_seg.nii.gz"))) for s in sorted(promise12.glob("Case??.mhd"))],
        ),
        "atlas": (
            atlas,
            [
                (s, s.relative_to(atlas).with_name(s.name.replace(".nii.gz", "_seg.nii.gz")))
                for s in sorted(atlas.rglob("*_t1w_deface_stx.nii.gz"))
            ],
        ),
    }


@pytest.fixture(scope="module")
def predicted(trained, inputs, tmp_path_factory) -> dict[str, Path]:
    """inference.yaml alone on each trained run (MONAI's default run id), all at once; the output folders."""
    commands, outputs = [], {}
    for bundle in BUNDLES:
        overrides = {"run_dir": trained[bundle], "input_dir": inputs[bundle][0], **INFER_EXTRA[bundle]}
        configs = bundle_configs(bundle, kind="inference")
        commands.append((None, configs, tmp_path_factory.mktemp(f"{bundle}_infer"), overrides))
        outputs[bundle] = trained[bundle] / "predictions"
    run_bundles(commands)
    return outputs


def _statements(bundle: str) -> Counter:
    """The non-blank lines of a bundle's configs, comments cut off, counted (size_regressor.yaml, a config of
    its own, left out)."""
    lines = Counter()
    for path in (ROOT / f"bundles/{bundle}/configs").glob("*.yaml"):
        if path.name != "size_regressor.yaml":
            code = (line.split(" #")[0].rstrip() for line in path.read_text().splitlines())
            lines.update(line for line in code if line.strip() and not line.lstrip().startswith("#"))
    return lines


def test_the_engine_is_written_once_and_each_bundle_holds_its_facts_only():
    for bundle in BUNDLES:
        files = {p.name for p in (ROOT / f"bundles/{bundle}/configs").glob("*.yaml")}
        assert not files & {"evaluate.yaml", "multi_gpu_train.yaml"}, bundle  # one shared copy in configs/engine/
        for kind in KINDS:
            assert all(f.is_file() for f in bundle_configs(bundle, kind=kind))
        assert sum(_statements(bundle).values()) < 40, bundle
    for a, b in combinations(BUNDLES, 2):
        shared = _statements(a) & _statements(b)
        assert sum(shared.values()) <= 3, (a, b, sorted(shared))


def _ids(config, prefix: str = "") -> set[str]:
    """Every id a raw config sets: its keys and, inside mappings, their keys (``a#b``), ``+`` merges included."""
    ids = set()
    for key, value in config.items():
        path = f"{prefix}{str(key).lstrip('+')}"
        ids.add(path)
        if isinstance(value, dict):
            ids |= _ids(value, f"{path}#")
    return ids


def test_the_bundle_comes_first_and_the_engine_never_replaces_its_facts():
    engine = CONFIGS / "engine"
    acdc = bundle_configs("acdc", "configs/supervision/scribble.yaml", CONFIGS / "profiles/cpu_quick.yaml")
    assert acdc == [ROOT / "bundles/acdc/configs/train.yaml", engine / "train.yaml",
                    CONFIGS / "supervision/scribble.yaml", CONFIGS / "profiles/cpu_quick.yaml"]  # fmt: skip
    wmh = bundle_configs("wmh", RECIPE["wmh"], kind="multi_gpu_train")
    assert wmh == [ROOT / "bundles/wmh/configs/train.yaml", engine / "train.yaml", engine / "lesion.yaml",
                   ROOT / RECIPE["wmh"], engine / "multi_gpu_train.yaml"]  # fmt: skip
    assert bundle_configs("isles", kind="evaluate")[-1] == engine / "evaluate.yaml"
    assert bundle_configs("acdc", kind="inference") == [ROOT / "bundles/acdc/configs/inference.yaml",
                                                        engine / "inference.yaml"]  # fmt: skip
    for bundle in BUNDLES:
        for kind in ("train", "inference"):
            first, *following = bundle_configs(bundle, kind=kind)
            facts = _ids(ConfigParser.load_config_file(str(first)))
            for path in following:
                defined = _ids(ConfigParser.load_config_file(str(path)))
                clashes = {i for i in facts for d in defined if i == d or f"{i}#".startswith(f"{d}#")}
                clashes |= {i for i in facts for d in defined if d.startswith(f"{i}#")}
                assert not clashes, (str(first), str(path), sorted(clashes))
    with pytest.raises(ValueError, match="kind must be one of .* got 'infer'"):
        bundle_configs("acdc", kind="infer")
    with pytest.raises(FileNotFoundError, match="no bundle named 'prostate'"):
        bundle_configs("prostate")
    with pytest.raises(FileNotFoundError, match="config file .*nothing.yaml' not found"):
        bundle_configs("acdc", "configs/nothing.yaml")


def test_every_recipe_profile_and_overlay_keeps_the_property_ids():
    """The ids MONAI's check reads, for each train.yaml with each file that can be merged after it.

    check_properties() builds each property it checks (the datasets, the trainer), so the full check
    runs on a few merges below; here the required ids must exist and the optional ones, where the
    engines refer to them, be referred to by their property id, as check_properties() asks.
    """
    merges = {
        "acdc": [*CONFIGS.glob("supervision/*.yaml"), *CONFIGS.glob("regularisers/*.yaml"),
                 *CONFIGS.glob("augmentation/*.yaml"), CONFIGS / "profiles/cpu_quick.yaml",
                 CONFIGS / "profiles/paper_gpu.yaml", CONFIGS / "profiles/whole_volumes_3d.yaml"],
        "isles": [*CONFIGS.glob("lesion/*.yaml"), CONFIGS / "profiles/lesion_cpu_quick.yaml",
                  CONFIGS / "profiles/whole_volumes_3d.yaml"],
    }  # fmt: skip
    merges["wmh"] = merges["isles"]
    boxes_and_size = [CONFIGS / "supervision/boxes.yaml", CONFIGS / "supervision/size.yaml"]
    merges["promise12"] = [*boxes_and_size, CONFIGS / "supervision/full.yaml", CONFIGS / "augmentation/strong.yaml",
                           CONFIGS / "profiles/cpu_quick.yaml", CONFIGS / "profiles/paper_gpu.yaml",
                           CONFIGS / "profiles/whole_volumes_3d.yaml"]  # fmt: skip
    merges["atlas"] = [*boxes_and_size, *merges["isles"]]
    checked = 0
    for bundle, extras in merges.items():
        for extra in [None, *extras]:
            overlays = [] if extra is None else [extra]
            if extra is not None and extra.parent.name == "regularisers":  # overlays go after a seed recipe
                overlays.insert(0, CONFIGS / "supervision/scribble_files.yaml")
            files = bundle_configs(bundle, *overlays)
            workflow = _workflow(files, "train")
            workflow.parser.parse()
            wrong = [
                name
                for name, prop in workflow.properties.items()
                if not prop.get(BundleProperty.REQUIRED) and not workflow._check_optional_id(name, prop)
            ]
            missing = [
                name
                for name, prop in workflow.properties.items()
                if prop.get(BundleProperty.REQUIRED) and prop[BundlePropertyConfig.ID] not in workflow.parser
            ]
            assert wrong == missing == [], [str(f) for f in files]
            checked += 1
    assert checked > 60


@pytest.mark.slow
@pytest.mark.parametrize("bundle", BUNDLES)
@pytest.mark.parametrize("with_recipe", [False, True], ids=["alone", "recipe"])
def test_train_configs_pass_monai_property_checks(bundle, with_recipe, phantoms, tmp_path):
    configs = bundle_configs(bundle, *([RECIPE[bundle]] if with_recipe else []))
    workflow = _workflow(configs, "train", output_dir=str(tmp_path), **SMALL, **_data_overrides(bundle, phantoms))
    workflow.initialize()
    assert workflow.check_properties() == []
    assert (tmp_path / RUN_CONFIG).is_file()  # initialisation records the config


@pytest.mark.slow
def test_a_train_config_without_a_required_id_fails_the_check(phantoms, tmp_path):
    workflow = _workflow(bundle_configs("acdc"), "train", output_dir=str(tmp_path), **SMALL,
                         **_data_overrides("acdc", phantoms))  # fmt: skip
    workflow.parser["train#trainer#inferer"] = {"_target_": "SimpleInferer"}
    del workflow.parser["train"]["inferer"]
    workflow.initialize()
    with pytest.raises(KeyError, match="'train_inferer' with config ID 'train::inferer' not in the config"):
        workflow.check_properties()


@pytest.mark.slow
def test_the_recorded_config_is_the_merged_one_with_overrides(trained):
    run = trained["acdc"]
    recorded = json.loads((run / RUN_CONFIG).read_text())
    assert recorded["max_epochs"] == 1 and recorded["spatial_size"] == SMALL["spatial_size"]  # command line
    assert recorded["network_def"]["channels"] == [16, 32, 64, 128]  # the CPU profile
    assert list(recorded["loss_terms"]) == ["pce"] and recorded["slice_image_keys"] == ["image", "scribble"]  # recipe
    assert recorded["network_def"]["out_channels"] == "@num_classes"  # unresolved
    meta = json.loads((run / RUN_METADATA).read_text())
    channels = meta["network_data_format"]["outputs"]["pred"]["channel_def"]
    assert [channels[str(k)] for k in range(len(channels))] == recorded["class_names"]
    assert (run / BEST_CHECKPOINT).is_file()


@pytest.mark.slow
@pytest.mark.parametrize("bundle", BUNDLES)
def test_inference_config_alone_passes_monai_property_checks(bundle, trained, inputs, tmp_path):
    workflow = _workflow(bundle_configs(bundle, kind="inference"), "infer", run_dir=str(trained[bundle]),
                         input_dir=str(inputs[bundle][0]), output_dir=str(tmp_path), **INFER_EXTRA[bundle])  # fmt: skip
    workflow.initialize()
    assert workflow.check_properties() == []
    assert workflow.network_def.out_channels == CLASSES[bundle]


@pytest.mark.slow
def test_an_inference_config_without_a_required_id_fails_the_check(trained, phantoms, tmp_path):
    workflow = _workflow(bundle_configs("wmh", kind="inference"), "infer", run_dir=str(trained["wmh"]),
                         input_dir=str(phantoms["wmh"]), output_dir=str(tmp_path))  # fmt: skip
    workflow.parser["evaluator#inferer"] = "$@trained_run.get('validate#inferer')"
    del workflow.parser.get()["inferer"]
    workflow.initialize()
    with pytest.raises(KeyError, match="'inferer' with config ID 'inferer' not in the config"):
        workflow.check_properties()


def _grid(path: Path) -> tuple[tuple[int, ...], np.ndarray]:
    """An image's shape and RAS affine: nibabel's for NIfTI, for MetaImage SimpleITK's grid turned from LPS to RAS."""
    if path.suffix != ".mhd":
        image = nib.load(path)
        return image.shape, image.affine
    image = sitk.ReadImage(str(path))
    affine = np.eye(4)
    affine[:3, :3] = np.reshape(image.GetDirection(), (3, 3)) @ np.diag(image.GetSpacing())
    affine[:3, 3] = image.GetOrigin()
    return tuple(image.GetSize()), np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine


@pytest.mark.slow
@pytest.mark.parametrize("bundle", BUNDLES)
def test_inference_alone_segments_a_folder_and_the_export_matches_the_eager_network(
    bundle, trained, inputs, predicted, tmp_path
):
    run = trained[bundle]
    _, pairs = inputs[bundle]
    assert pairs
    for source, relative in pairs:
        pred = nib.load(predicted[bundle] / relative)
        shape, affine = _grid(source)
        assert pred.shape == shape
        np.testing.assert_allclose(pred.affine, affine, atol=1e-5)
        values = set(np.unique(np.asarray(pred.dataobj)).tolist())
        assert pred.get_data_dtype() == np.uint8 and values <= set(range(CLASSES[bundle]))

    # the documented `python -m monai.bundle ckpt_export network_def ...` command, called as a function
    exported = tmp_path / "model.ts"
    ckpt_export(
        "network_def",
        filepath=str(exported),
        ckpt_file=str(run / BEST_CHECKPOINT),
        meta_file=str(ROOT / f"bundles/{bundle}/configs/metadata.json"),
        config_file=str(run / RUN_CONFIG),
    )
    eager = TrainedRun(run).get("network_def")
    eager.load_state_dict(torch.load(run / BEST_CHECKPOINT, weights_only=True))
    scripted = torch.jit.load(str(exported))
    x = torch.randn(
        2, CHANNELS[bundle], SMALL["spatial_size"], SMALL["spatial_size"], generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        torch.testing.assert_close(scripted.eval()(x), eager.eval()(x), rtol=0, atol=0)
