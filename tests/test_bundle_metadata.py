import json
from pathlib import Path

import pytest
from monai.bundle import ConfigParser, verify_metadata

from wss_monai.bundle import bundle_configs

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "bundles/schema/meta_schema.json"
META = ROOT / "bundles/acdc/configs/metadata.json"


def test_acdc_metadata_passes_verify_metadata_offline():
    verify_metadata(meta_file=str(META), filepath=str(SCHEMA))  # the schema exists: nothing is downloaded


def test_verify_metadata_rejects_a_metadata_without_task(tmp_path):
    meta = json.loads(META.read_text())
    del meta["task"]
    bad = tmp_path / "metadata.json"
    bad.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="'task' is a required property"):
        verify_metadata(meta_file=str(bad), filepath=str(SCHEMA))


def test_metadata_matches_the_bundle_configs():
    meta = json.loads(META.read_text())
    parser = ConfigParser()
    parser.read_config([str(f) for f in bundle_configs("acdc")])
    out = meta["network_data_format"]["outputs"]["pred"]
    assert out["num_channels"] == parser["num_classes"] == len(out["channel_def"])
    assert [out["channel_def"][str(k)] for k in range(parser["num_classes"])] == parser["class_names"]


def _value(parser, key, default=None):
    """A config entry as written, or its value where it is a ``$`` expression (a choice of a parametrised recipe)."""
    raw = parser.get(key, default)
    return parser.get_parsed_content(key) if isinstance(raw, str) and raw.startswith("$") else raw


def _deleted_keys(transform) -> list[str]:
    """The keys a DeleteItemsd removes, from its config or from the built transform."""
    if isinstance(transform, dict):
        if not str(transform.get("_target_", "")).endswith("DeleteItemsd"):
            return []
        keys = transform["keys"]
    elif type(transform).__name__ == "DeleteItemsd":
        keys = transform.keys
    else:
        return []
    return [keys] if isinstance(keys, str) else list(keys)


SIZE_VARIANTS = [{"size_bounds": b} for b in ("individual", "common", "centroid", "tags")]
RECIPE_MERGES = (
    [
        (p.name, {})
        for p in sorted((ROOT / "configs/supervision").glob("*.yaml"))
        if p.name not in ("size.yaml", "hybrid_size.yaml")
    ]
    + [("size.yaml", v) for v in SIZE_VARIANTS]
    + [("size.yaml+hybrid_size.yaml", {})]
)


@pytest.mark.parametrize("recipe, overrides", RECIPE_MERGES, ids=[f"{r}-{o}" for r, o in RECIPE_MERGES])
def test_every_recipe_merges_with_the_bundle_and_names_its_loss(recipe, overrides):
    files = [ROOT / "configs/supervision" / name for name in recipe.split("+")]
    parser = ConfigParser()
    parser.read_config([str(f) for f in bundle_configs("acdc", *files)])
    parser.update(overrides)
    terms = {
        name: parser[spec[1:]] if isinstance(spec, str) and spec.startswith("@") else spec
        for name, spec in parser["loss_terms"].items()
    }
    assert terms and all("loss" in spec and "weight" in spec for spec in terms.values())
    assert "dataset" not in recipe
    for file in files:
        assert "acdc" not in file.read_text().lower(), file.name  # a recipe never names a dataset
    if "num_full_patients" in parser.get():
        # semi-supervised recipes: the full label reaches the loss, switched per image by each case's mark
        assert "label" in _value(parser, "slice_image_keys") and "supervision" in _value(parser, "slice_volume_keys")
        return
    weak = recipe != "full.yaml"
    dropped = {key for transform in _value(parser, "slice_transforms", []) for key in _deleted_keys(transform)}
    label_reaches_loss = "label" in _value(parser, "slice_image_keys") and "label" not in dropped
    assert label_reaches_loss != weak  # the full label never reaches a weak loss


LESION_BUNDLES = ("isles", "wmh")
LESION_RECIPES = sorted(p.name for p in (ROOT / "configs/lesion").glob("*.yaml"))


@pytest.mark.parametrize("name", LESION_BUNDLES)
def test_lesion_bundle_metadata_passes_and_matches_the_configs(name):
    meta_file = ROOT / f"bundles/{name}/configs/metadata.json"
    verify_metadata(meta_file=str(meta_file), filepath=str(SCHEMA))
    meta = json.loads(meta_file.read_text())
    parser = ConfigParser()
    parser.read_config([str(f) for f in bundle_configs(name)])
    inputs, out = meta["network_data_format"]["inputs"]["image"], meta["network_data_format"]["outputs"]["pred"]
    assert inputs["num_channels"] == parser.get_parsed_content("num_channels") == len(parser["modalities"])
    assert out["num_channels"] == parser["num_classes"] == len(out["channel_def"])
    assert [out["channel_def"][str(k)] for k in range(parser["num_classes"])] == parser["class_names"]


@pytest.mark.parametrize("name", LESION_BUNDLES)
@pytest.mark.parametrize("recipe", LESION_RECIPES)
def test_every_lesion_recipe_merges_with_both_lesion_bundles(name, recipe):
    parser = ConfigParser()
    parser.read_config([str(f) for f in bundle_configs(name, ROOT / "configs/lesion" / recipe)])
    terms = parser["loss_terms"]
    assert "regional" in terms and all("loss" in spec and "weight" in spec for spec in terms.values())
    assert set(terms) == ({"regional"} if recipe == "gdl.yaml" else {"regional", "boundary"})
    text = (ROOT / "configs/lesion" / recipe).read_text().lower()
    assert "isles" not in text.replace("isles 2018", "") and "flair" not in text  # shared by both bundles
