"""Constrained-training recipes of the acdc bundle on cardiac phantoms: 3D volume batches, Lagrangian
multipliers, centroid bounds and the constraint monitor, run in-process through MONAI's ConfigParser."""

import csv
import math
import re

import numpy as np
import pytest
import torch
from bundle_helpers import ROOT, config_parser, error_chain
from ignite.engine import Events

from wss_monai.bundle import bundle_configs
from wss_monai.data.phantoms import make_cardiac_phantoms
from wss_monai.transforms import CentroidBounds, CentroidBoundsd, SizeBounds, centroid_bounds

TRAIN = bundle_configs("acdc")
QUICK = ROOT / "configs/profiles/cpu_quick.yaml"
SIZE = ROOT / "configs/supervision/size.yaml"
HYBRID = ROOT / "configs/supervision/hybrid_size.yaml"
TINY = {"spatial_size": 32, "batch_size": 8, "max_epochs": 1, "val_interval": 10, "num_validation": 1}


def variant(size_bounds, constraint_handling, constraint_dims=2):
    return {"size_bounds": size_bounds, "constraint_handling": constraint_handling, "constraint_dims": constraint_dims}


CONSTRAINED = {  # the variants measured in docs/acdc_constraints.md
    "tags_penalty": variant("tags", "penalty"),
    "tags_log_barrier": variant("tags", "log_barrier"),
    "common_penalty": variant("common", "penalty"),
    "common_log_barrier": variant("common", "log_barrier"),
    "individual_penalty": variant("individual", "penalty"),
    "individual_log_barrier": variant("individual", "log_barrier"),
    "tags_3d_log_barrier": variant("tags", "log_barrier", 3),
    "common_3d_log_barrier": variant("common", "log_barrier", 3),
    "individual_3d_log_barrier": variant("individual", "log_barrier", 3),
    "individual_lagrangian": variant("individual", "lagrangian"),
    "individual_relu_lagrangian": variant("individual", "relu_lagrangian"),
    "centroid_log_barrier": variant("centroid", "log_barrier"),
}
NEW = list(CONSTRAINED)[6:]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    return make_cardiac_phantoms(
        tmp_path_factory.mktemp("acdc"), num_patients=4, seed=3, shape=(40, 40), num_slices=(3, 5)
    )


def parser(recipe, dataset_dir, output_dir, extra=(), **overrides):
    """The bundle with size.yaml (then ``extra`` files) for the variant named ``recipe`` in CONSTRAINED."""
    configs = [*TRAIN, QUICK, SIZE, *extra]
    return config_parser(
        configs,
        **{"dataset_dir": str(dataset_dir), "output_dir": str(output_dir), **TINY, **CONSTRAINED[recipe], **overrides},
    )


def train(p):
    """Runs the bundle's training in-process; returns the training losses of every iteration."""
    losses = []
    p.get_parsed_content("initialize")
    trainer = p.get_parsed_content("train#trainer")

    def record(engine):
        output = engine.state.output  # decollated: one dict per slice, the loss on each
        losses.append(float((output[0] if isinstance(output, list) else output)["loss"]))

    trainer.add_event_handler(Events.ITERATION_COMPLETED, record)
    p.get_parsed_content("run")
    p.get_parsed_content("finalize")
    return losses


def read_monitor(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def check_monitor_rows(rows, epochs):
    assert [int(r["epoch"]) for r in rows] == list(range(1, epochs + 1))
    for r in rows:
        assert 0.0 <= float(r["satisfied"]) <= 1.0
    for r in rows[1:]:
        stability = float(r["stability"])
        assert math.isnan(stability) or 0.0 <= stability <= 1.0
    assert math.isnan(float(rows[0]["stability"]))


@pytest.mark.parametrize("recipe", list(CONSTRAINED))
def test_each_variant_builds_its_own_handlers_and_terms_only(recipe, phantoms, tmp_path):
    p = parser(recipe, phantoms, tmp_path / "run")
    chosen = CONSTRAINED[recipe]
    handling, dims = chosen["constraint_handling"], chosen["constraint_dims"]
    state = p.get_parsed_content("recipe_state")
    expected = ["constraint_monitor"]
    if handling == "log_barrier":
        expected.insert(0, "log_barrier")
    if handling in ("lagrangian", "relu_lagrangian"):
        expected.insert(0, "lagrangian")
    if chosen["size_bounds"] == "centroid":
        expected.append("centroid_monitor")
    assert list(state) == expected
    assert p.get_parsed_content("recipe_handlers") == list(state.values())
    # the variants not chosen are not built
    for name in ("log_barrier", "dual_ascent", "centroid_monitor"):
        if name not in expected and not (name == "dual_ascent" and "lagrangian" in expected):
            assert p.get_parsed_content(name) is None, name
    loss = p.get_parsed_content("train#loss")
    assert list(loss.terms) == ["pce", "size"] + (["centroid"] if chosen["size_bounds"] == "centroid" else [])
    size = loss.terms["size"]
    assert size.mode == handling and size.per == ("volume" if dims == 3 else "image")
    assert state["constraint_monitor"].loss_module is size
    weight = {"penalty": 0.01 / 32**2, "log_barrier": 1e-4 if dims == 2 else 1.25e-5}.get(handling, 1e-4)
    assert loss.weights["size"] == weight
    assert (p.get_parsed_content("batch_sampler") is None) == (dims == 2)
    bounds = p.get_parsed_content("weak_transforms")[1].transform
    assert bounds.mode == ("individual" if chosen["size_bounds"] == "centroid" else chosen["size_bounds"])
    assert (bounds.common_bounds is None) == (chosen["size_bounds"] != "common")


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            {"size_bounds": "box"},
            r"size_bounds must be one of \('individual', 'common', 'centroid', 'tags'\), got 'box'",
        ),
        (
            {"constraint_handling": "barrier"},
            r"constraint_handling must be one of \('penalty', 'log_barrier', 'lagrangian', 'relu_lagrangian'\), "
            r"got 'barrier'",
        ),
        ({"constraint_dims": 4}, r"constraint_dims must be one of \(2, 3\), got 4"),
        ({"size_bounds": "centroid", "constraint_dims": 3}, r"size_bounds 'centroid' needs constraint_dims 2"),
    ],
)
def test_a_bad_choice_names_the_parameter_and_the_allowed_values(overrides, message, phantoms, tmp_path):
    p = parser("individual_log_barrier", phantoms, tmp_path / "run", **overrides)
    with pytest.raises(Exception) as info:
        p.get_parsed_content("train#loss")
    assert re.search(message, error_chain(info.value)), error_chain(info.value)[-2000:]


def test_the_hybrid_overlay_refuses_centroid_bounds(phantoms, tmp_path):
    p = parser("centroid_log_barrier", phantoms, tmp_path / "run", extra=[HYBRID], num_full_patients=1)
    with pytest.raises(Exception) as info:
        p.get_parsed_content("train#loss")
    message = r"size_bounds must be one of \('individual', 'common', 'tags'\) with hybrid_size.yaml, got 'centroid'"
    assert re.search(message, error_chain(info.value))


def test_the_command_line_spelling_of_the_dimension_is_accepted(phantoms, tmp_path):
    p = parser("individual_log_barrier", phantoms, tmp_path / "run", constraint_dims="3")
    assert p.get_parsed_content("size_recipe").per == "volume"


@pytest.mark.parametrize("recipe", NEW)
def test_new_recipes_train_with_finite_losses_and_write_the_monitor_csv(recipe, phantoms, tmp_path):
    losses = train(parser(recipe, phantoms, tmp_path / "run"))
    assert losses and all(math.isfinite(v) for v in losses)
    rows = read_monitor(tmp_path / "run/constraints.csv")
    assert list(rows[0]) == ["epoch", "satisfied", "stability"]
    check_monitor_rows(rows, 1)
    if recipe == "centroid_log_barrier":
        check_monitor_rows(read_monitor(tmp_path / "run/centroid/constraints.csv"), 1)
    state = torch.load(tmp_path / "run/models/model_final.pt", weights_only=False)
    assert state["constraint_monitor"]["history"][0]["epoch"] == 1
    assert list((tmp_path / "run/tensorboard").glob("events.out.tfevents.*"))


def test_3d_batches_hold_whole_volumes_with_volume_bounds(phantoms, tmp_path):
    p = parser("individual_3d_log_barrier", phantoms, tmp_path / "run", volumes_per_batch=1)
    p.get_parsed_content("initialize")
    dataset = p.get_parsed_content("train#dataset")
    loader = p.get_parsed_content("train#dataloader")
    depth = {v: volume["image"].shape[-1] for v, volume in enumerate(dataset.volumes)}
    seen = []
    for batch in loader:
        volumes = batch["volume_index"].tolist()
        assert len(set(volumes)) == 1  # one volume per batch
        v = volumes[0]
        assert sorted(batch["slice_index"].tolist()) == list(range(depth[v]))  # all its slices
        label = dataset.volumes[v]["label"]
        expected = SizeBounds(num_classes=4, mode="individual", margin=0.1, spatial_dims=3)(label)
        np.testing.assert_allclose(batch["bounds"][0].numpy(), np.asarray(expected), rtol=1e-6)
        assert (batch["bounds"] == batch["bounds"][:1]).all()  # the volume's bounds on each slice
        seen.append(v)
    assert sorted(seen) == sorted(depth)  # each volume exactly once per epoch
    assert len(loader) == len(depth)

    # the recipe's default: two whole volumes per batch
    p = parser("tags_3d_log_barrier", phantoms, tmp_path / "run2")
    loader = p.get_parsed_content("train#dataloader")
    for batch in loader:
        v, counts = torch.unique(batch["volume_index"], return_counts=True)
        assert len(v) <= 2
        assert counts.tolist() == [depth[int(i)] for i in v]


def test_2d_recipes_keep_shuffled_slice_batches(phantoms, tmp_path):
    p = parser("individual_log_barrier", phantoms, tmp_path / "run")
    loader = p.get_parsed_content("train#dataloader")
    assert loader.batch_size == 8 and isinstance(loader.sampler, torch.utils.data.RandomSampler)
    assert len(loader) == math.ceil(len(p.get_parsed_content("train#dataset")) / 8)


def test_lagrange_multipliers_grow_and_are_restored_with_the_monitor_on_resume(phantoms, tmp_path):
    out = tmp_path / "run"
    losses = train(parser("individual_lagrangian", phantoms, out))
    assert all(math.isfinite(v) for v in losses)
    state = torch.load(out / "models/model_final.pt", weights_only=False)
    saved = state["lagrangian"]["terms"][0]
    assert saved["multipliers"].numel() and (saved["multipliers"] > 0).any()
    assert saved["dual_keys"].numel() == len(
        parser("individual_lagrangian", phantoms, out).get_parsed_content("train#dataset")
    )  # one row of multipliers per training slice
    first = read_monitor(out / "constraints.csv")

    # the multipliers are back in the handler, which the loss term reads, after resuming
    p = parser("individual_lagrangian", phantoms, out, resume_checkpoint=str(out / "models/model_final.pt"))
    p.get_parsed_content("initialize")
    from wss_monai.utils import resume

    assert resume(str(out / "models/model_final.pt"), p.get_parsed_content("train#checkpoint_objects"), "cpu")
    term = p.get_parsed_content("size_term#loss")
    assert term.dual_variables is p.get_parsed_content("dual_ascent").duals[0]
    torch.testing.assert_close(term.dual_variables.multipliers, saved["multipliers"])
    torch.testing.assert_close(term.dual_variables.keys, saved["dual_keys"])

    # a resumed run goes on: the monitor's history continues in its CSV, the multipliers move on
    p = parser(
        "individual_lagrangian", phantoms, out, resume_checkpoint=str(out / "models/model_final.pt"), max_epochs=2
    )
    train(p)
    rows = read_monitor(out / "constraints.csv")
    check_monitor_rows(rows, 2)
    assert rows[0] == first[0]
    assert not math.isnan(float(rows[1]["stability"])) or float(first[0]["satisfied"]) == 0.0
    later = torch.load(out / "models/model_final.pt", weights_only=False)["lagrangian"]["terms"][0]["multipliers"]
    assert not torch.equal(later, saved["multipliers"])


def test_relu_lagrangian_multipliers_only_grow(phantoms, tmp_path):
    train(parser("individual_relu_lagrangian", phantoms, tmp_path / "run", max_epochs=2))
    lam = torch.load(tmp_path / "run/models/model_final.pt", weights_only=False)["lagrangian"]["terms"][0]
    assert (lam["multipliers"] >= 0).all() and (lam["multipliers"] > 0).any()


def test_3d_sampler_resumes_at_the_saved_epoch(phantoms, tmp_path):
    out = tmp_path / "run"
    train(parser("individual_3d_log_barrier", phantoms, out))
    p = parser(
        "individual_3d_log_barrier",
        phantoms,
        out,
        resume_checkpoint=str(out / "models/model_final.pt"),
        max_epochs=2,
    )
    train(p)
    assert p.get_parsed_content("batch_sampler").epoch == 2  # set to 1 on resume, then one pass
    check_monitor_rows(read_monitor(out / "constraints.csv"), 2)
    state = torch.load(out / "models/model_final.pt", weights_only=False)
    assert state["log_barrier"]["t"] == pytest.approx(5.0 * 1.1**2)


def test_centroid_bounds_by_hand_and_in_the_recipe(phantoms, tmp_path):
    label = np.zeros((1, 6, 10), dtype=np.int64)
    label[0, 1:3, 6:10] = 2  # rows 1, 2 → 1.5; columns 6..9 → 7.5
    bounds = CentroidBounds(num_classes=3, margin=2.0)(label)
    np.testing.assert_allclose(bounds[2], [[0.0, 3.5], [5.5, 9.0]])  # clipped to [0, n - 1]
    np.testing.assert_allclose(bounds[1], [[0.0, 5.0], [0.0, 9.0]])  # absent: the whole grid
    np.testing.assert_allclose(centroid_bounds(label[0], 3, 0.0)[2], [[1.5, 1.5], [7.5, 7.5]])
    out = CentroidBoundsd(keys="label", num_classes=3)({"label": torch.as_tensor(label)})
    assert isinstance(out["centroid_bounds"], torch.Tensor) and out["centroid_bounds"].shape == (3, 2, 2)
    with pytest.raises(ValueError, match=r"margin must be .*got -1"):
        CentroidBounds(num_classes=3, margin=-1)
    with pytest.raises(ValueError, match=r"num_classes must be an integer >= 2, got 1"):
        CentroidBounds(num_classes=1)

    # in the recipe the bounds come from the augmented slice, and the label does not reach the loss
    p = parser("centroid_log_barrier", phantoms, tmp_path / "run")
    p.get_parsed_content("initialize")
    dataset = p.get_parsed_content("train#dataset")
    for i in range(len(dataset)):
        item = dataset[i]
        assert "label" not in item and item["centroid_bounds"].shape == (4, 2, 2)
        lv = (item["scribble"][0] == 3).nonzero().float()  # LV seeds lie inside the LV
        if len(lv):
            b = item["centroid_bounds"][3]
            centre = lv.mean(0)
            assert ((centre >= b[:, 0] - 6) & (centre <= b[:, 1] + 6)).all()
