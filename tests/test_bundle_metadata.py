import json
from pathlib import Path

import pytest
from monai.bundle import ConfigParser, verify_metadata

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
    parser.read_config(str(ROOT / "bundles/acdc/configs/train.yaml"))
    out = meta["network_data_format"]["outputs"]["pred"]
    assert out["num_channels"] == parser["num_classes"] == len(out["channel_def"])
    assert [out["channel_def"][str(k)] for k in range(parser["num_classes"])] == parser["class_names"]


@pytest.mark.parametrize("recipe", sorted(p.name for p in (ROOT / "configs/supervision").glob("*.yaml")))
def test_every_recipe_merges_with_the_bundle_and_names_its_loss(recipe):
    parser = ConfigParser()
    parser.read_config([str(ROOT / "bundles/acdc/configs/train.yaml"), str(ROOT / "configs/supervision" / recipe)])
    terms = parser["loss_terms"]
    assert terms and all("loss" in spec and "weight" in spec for spec in terms.values())
    assert "dataset" not in recipe and "acdc" not in (ROOT / "configs/supervision" / recipe).read_text().lower()
    weak = recipe != "full.yaml"
    assert ("label" in parser["slice_image_keys"]) != weak  # the full label never reaches a weak loss
