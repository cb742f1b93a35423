import json
import math

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor

from wss_monai.handlers import CaseMetricsWriter
from wss_monai.metrics import spacing_from_affine, volume_metrics


def _cube(offset=(0, 0, 0), shape=(12, 12, 12)):
    label = np.zeros(shape, int)
    x, y, z = (3 + o for o in offset)
    label[x : x + 4, y : y + 4, z : z + 4] = 1
    return label


def test_dice_and_hd95_use_the_spacing_of_each_axis():
    gt, shifted = _cube(), _cube(offset=(1, 0, 0))
    m = volume_metrics(shifted, gt, ["bg", "fg"], spacing=(2.0, 1.0, 1.0))
    assert m["dice_fg"] == pytest.approx(0.75)
    assert m["hd95_fg"] == pytest.approx(2.0)  # shift of one voxel along the 2 mm axis
    m = volume_metrics(shifted, gt, ["bg", "fg"], spacing=(1.0, 3.0, 1.0))
    assert m["hd95_fg"] == pytest.approx(1.0)


def test_empty_and_absent_classes():
    gt = _cube()
    empty = np.zeros_like(gt)
    m = volume_metrics(empty, gt, ["bg", "fg", "other"], spacing=(1, 1, 1))
    assert m["dice_fg"] == 0.0
    assert m["hd95_fg"] == pytest.approx(math.sqrt(3 * 12**2))  # one side empty: the diagonal
    assert m["dice_other"] == 1.0 and math.isnan(m["hd95_other"])  # absent from both


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match=r"prediction \(4, 4, 4\) and label \(4, 4, 5\) differ"):
        volume_metrics(np.zeros((4, 4, 4)), np.zeros((4, 4, 5)), ["bg", "fg"], (1, 1, 1))
    with pytest.raises(ValueError, match=r"label values \[0, 7\] outside the classes \[0, 1\]"):
        volume_metrics(np.zeros((4, 4, 4)), np.array([0, 7] * 32).reshape(4, 4, 4), ["bg", "fg"], (1, 1, 1))


def test_spacing_from_affine():
    affine = np.diag([1.5, 1.5, 10.0, 1.0])
    affine[:3, :3] = affine[:3, :3] @ np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]])
    assert spacing_from_affine(affine) == pytest.approx((1.5, 1.5, 10.0))


def test_case_metrics_writer_writes_csv_and_summary(tmp_path):
    writer = CaseMetricsWriter(str(tmp_path), ["bg", "fg"])
    affine = torch.diag(torch.tensor([2.0, 1.0, 1.0, 1.0]))
    cases = [(_cube(offset=(1, 0, 0)), "p1"), (_cube(), "p2")]

    def step(engine, i):
        pred, name = cases[i]
        label = MetaTensor(torch.as_tensor(_cube())[None], affine=affine)
        engine.state.batch = [{"patient": name, "frame": "frame01"}]
        return [{"pred": torch.as_tensor(pred)[None], "label": label}]

    engine = Engine(step)
    writer.attach(engine)
    engine.run(range(2), max_epochs=1)
    assert engine.state.metrics["mean_dice"] == pytest.approx((0.75 + 1.0) / 2)
    assert engine.state.metrics["mean_hd95"] == pytest.approx((2.0 + 0.0) / 2)
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert rows[0] == "case,dice_fg,hd95_fg" and rows[1].startswith("p1_frame01,0.75,2")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["num_cases"] == 2 and summary["metrics"]["dice_fg"]["std"] == pytest.approx(0.125)


def test_per_case_writer_base_needs_its_metrics_and_publish():
    from wss_monai.handlers.case_metrics import PerCaseMetricsWriter

    with pytest.raises(TypeError, match="abstract"):
        PerCaseMetricsWriter(output_dir=None, case_keys=[])
