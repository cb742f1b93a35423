import numpy as np
import pytest
import torch

from wss_monai.cli import main
from wss_monai.utils import list_images, require_dir, resume
from wss_monai.visualize import best_slice, save_overlay


def test_cli_phantoms_datalist_and_overlay(tmp_path):
    assert main(["phantoms", "--output_dir", str(tmp_path / "d"), "--num_patients", "3", "--size", "48"]) == 0
    assert (
        main(
            [
                "datalist",
                "--dataset_dir",
                str(tmp_path / "d"),
                "--output",
                str(tmp_path / "dl.json"),
                "--num_validation",
                "1",
            ]
        )
        == 0
    )
    assert (tmp_path / "dl.json").is_file()
    case = tmp_path / "d/training/patient001/patient001_frame01"
    out = tmp_path / "o.png"
    main(
        [
            "overlay",
            "--image",
            f"{case}.nii.gz",
            "--weak",
            f"{case}_scribble.nii.gz",
            "--label",
            f"{case}_gt.nii.gz",
            "--out",
            str(out),
        ]
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_overlay_checks_shapes_and_picks_the_fullest_slice(tmp_path):
    label = np.zeros((8, 8, 3), int)
    label[2:6, 2:6, 1] = 1
    assert best_slice(label) == 1
    save_overlay(np.random.rand(8, 8, 3), {"ground truth": label}, tmp_path / "a.png")
    with pytest.raises(ValueError, match=r"panel 'p' has shape \(8, 8, 2\), image \(8, 8, 3\)"):
        save_overlay(np.zeros((8, 8, 3)), {"p": np.zeros((8, 8, 2))}, tmp_path / "b.png")


def test_config_helpers_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="dataset_dir is not set: pass --dataset_dir"):
        require_dir(None, "dataset_dir")
    with pytest.raises(FileNotFoundError, match="input_dir .*nope' is not an existing folder"):
        require_dir(tmp_path / "nope", "input_dir")
    with pytest.raises(FileNotFoundError, match=r"no file matching '\*.nii\*'"):
        list_images(tmp_path)
    assert resume(None, {}) is False
    with pytest.raises(FileNotFoundError, match="resume_checkpoint .* does not exist"):
        resume(tmp_path / "missing.pt", {})
    torch.save({"model": {}}, tmp_path / "c.pt")
    with pytest.raises(KeyError, match=r"lacks \['optimizer'\]"):
        resume(tmp_path / "c.pt", {"model": torch.nn.Linear(1, 1), "optimizer": None})
