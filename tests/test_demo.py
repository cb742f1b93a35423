"""The demo end to end, at a tiny budget: files, table and picture."""

import pytest

from wss_monai.demo import format_dice_table, run_demo

pytestmark = pytest.mark.slow


def test_demo_runs_end_to_end(tmp_path, capsys):
    results = run_demo(tmp_path / "demo", num_patients=4, max_epochs=1, seed=0)
    assert set(results) == {"scribbles, partial CE", "scribbles + dense CRF", "full labels"}
    work = tmp_path / "demo"
    assert (work / "overlay.png").read_bytes()[:4] == b"\x89PNG"
    assert "crf" in (work / "scribble_dense_crf/log.txt").read_text()
    for recipe in ("scribble_files", "scribble_dense_crf", "full"):
        assert (work / recipe / "models/model_final.pt").is_file()
        assert sorted(p.name for p in (work / recipe / "predictions").iterdir()) == sorted(
            p.name.replace(".nii.gz", "_seg.nii.gz") for p in (work / "nifti_in").iterdir()
        )
    printed = capsys.readouterr().out
    assert "supervision" in printed and "full labels" in printed and "overlay.png" in printed
    for summary in results.values():
        assert 0.0 <= summary["mean_dice"] <= 1.0


def test_dice_table_layout():
    summary = {
        "mean_dice": 0.5,
        "mean_hd95": 12.34,
        "metrics": {f"dice_{c}": {"mean": v} for c, v in (("rv", 0.1), ("myo", 0.5), ("lv", 0.9))},
    }
    lines = format_dice_table({"x": summary}).splitlines()
    assert lines[0].split() == ["supervision", "RV", "MYO", "LV", "mean", "HD95", "mm"]
    assert lines[1].split() == ["x", "0.100", "0.500", "0.900", "0.500", "12.3"]
