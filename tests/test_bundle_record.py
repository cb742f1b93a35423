"""A run's recorded config (record_run_config) and reading a run back (TrainedRun)."""

import json

import pytest
import torch
from monai.bundle import ConfigParser

from wss_monai.bundle import BEST_CHECKPOINT, RUN_CONFIG, RUN_METADATA, TrainedRun, record_run_config


def _config(run_dir) -> dict:
    return {
        "imports": ["$import wss_monai", "$import wss_monai.bundle"],
        "run_dir": str(run_dir),
        "width": 3,
        "network_def": {"_target_": "torch.nn.Linear", "in_features": "@width", "out_features": 2},
        "initialize": ["$wss_monai.bundle.record_run_config(@run_dir)"],
    }


def test_an_initialize_step_records_the_merged_config_with_overrides_unresolved(tmp_path):
    parser = ConfigParser(_config(tmp_path))
    parser.update({"width": 5, "network_def#out_features": 4})  # command-line overrides
    parser.get_parsed_content("initialize")  # the parser is found on the call stack
    recorded = json.loads((tmp_path / RUN_CONFIG).read_text())
    assert recorded["width"] == 5 and recorded["network_def"]["out_features"] == 4
    assert recorded["network_def"]["in_features"] == "@width"  # references kept as written
    assert recorded["initialize"] == ["$wss_monai.bundle.record_run_config(@run_dir)"]
    assert [p.name for p in (tmp_path / "configs").iterdir()] == ["train.json"]  # no temporary file left


def test_the_metadata_is_written_beside_the_config_and_a_second_run_replaces_both(tmp_path):
    parser = ConfigParser(_config(tmp_path))
    parser.read_meta({"version": "0.1.0", "name": "a"})
    record_run_config(tmp_path, parser)
    parser.read_meta({"version": "0.2.0", "name": "b"})
    record_run_config(tmp_path, parser)
    assert json.loads((tmp_path / RUN_METADATA).read_text()) == {"version": "0.2.0", "name": "b"}
    assert json.loads((tmp_path / RUN_CONFIG).read_text())["_meta_"]["name"] == "b"
    assert sorted(p.name for p in (tmp_path / "configs").iterdir()) == ["metadata.json", "train.json"]


def test_recording_outside_a_config_or_without_run_dir_or_with_an_object_raises(tmp_path):
    with pytest.raises(RuntimeError, match="no ConfigParser on the call stack"):
        record_run_config(tmp_path)
    with pytest.raises(ValueError, match="run_dir is not set"):
        record_run_config(None, ConfigParser({}))
    parser = ConfigParser(_config(tmp_path))
    parser["device"] = torch.device("cpu")  # an override given as an object from Python
    with pytest.raises(TypeError, match=r"train\.json.*device"):
        record_run_config(tmp_path, parser)
    assert not (tmp_path / RUN_CONFIG).exists() and not (tmp_path / "configs").exists()  # nothing written


def test_a_trained_run_rebuilds_the_recorded_objects_and_finds_its_checkpoint(tmp_path):
    parser = ConfigParser(_config(tmp_path))
    parser.update({"width": 6})
    record_run_config(tmp_path, parser)
    run = TrainedRun(tmp_path)
    network = run.get("network_def")
    assert isinstance(network, torch.nn.Linear) and network.in_features == 6
    with pytest.raises(KeyError, match="has no 'validate#inferer'"):
        run.get("validate#inferer")
    with pytest.raises(FileNotFoundError, match=r"model\.pt' not found: the run's best-validation weights"):
        run.checkpoint()
    (tmp_path / BEST_CHECKPOINT).parent.mkdir()
    torch.save(network.state_dict(), tmp_path / BEST_CHECKPOINT)
    assert run.checkpoint() == str((tmp_path / BEST_CHECKPOINT).resolve())
    with pytest.raises(FileNotFoundError, match="other.pt' not found: ckpt_path must name a checkpoint file"):
        run.checkpoint(tmp_path / "other.pt")


def test_a_trained_run_names_what_is_missing(tmp_path):
    with pytest.raises(ValueError, match="run_dir is not set: pass --run_dir"):
        TrainedRun(None)
    with pytest.raises(FileNotFoundError, match="nowhere' is not an existing folder"):
        TrainedRun(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"no recorded config .*configs/train\.json"):
        TrainedRun(tmp_path)
