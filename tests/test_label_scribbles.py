"""Scribble conventions of wss_monai.label: every preset's values, moved values, unknown values refused."""

import numpy as np
import pytest

from wss_monai.constants import UNLABELLED
from wss_monai.label import ScribbleConvention


def test_presets_map_values_to_classes():
    painted = ScribbleConvention.preset("painted", num_classes=4)
    assert painted.mapping == {0: UNLABELLED, 1: 1, 2: 2, 3: 3, 4: 0}
    dataset = ScribbleConvention.preset("dataset", num_classes=4, unlabelled=4)
    assert dataset.mapping == {0: 0, 1: 1, 2: 2, 3: 3, 4: UNLABELLED}
    binary = ScribbleConvention.preset("monailabel", num_classes=2)
    assert binary.mapping == {0: UNLABELLED, 2: 0, 3: 1}


def test_values_can_be_moved():
    convention = ScribbleConvention.preset("painted", num_classes=3, background=9, unlabelled=255)
    seeds = convention.to_seeds(np.array([[255, 9], [1, 2]], dtype=np.uint8))
    assert seeds.tolist() == [[UNLABELLED, 0], [1, 2]]
    custom = ScribbleConvention.preset("painted", num_classes=3, foreground={7: 2})
    assert custom.mapping == {0: UNLABELLED, 3: 0, 7: 2}


def test_dataset_form_and_input_not_mutated():
    convention = ScribbleConvention.preset("painted", num_classes=4)
    stored = np.array([0, 4, 3, 1], dtype=np.uint8)
    assert convention.to_dataset(stored, unlabelled=4).tolist() == [4, 0, 3, 1]
    assert stored.tolist() == [0, 4, 3, 1]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "slicer"}, r"must be one of \('dataset', 'painted', 'monailabel'\), got 'slicer'"),
        ({"name": "monailabel", "num_classes": 4}, r"name its class \(target\) among 1\.\.3"),
        ({"name": "monailabel", "num_classes": 4, "target": 0}, r"target must be a foreground class in 1\.\.3, got 0"),
        ({"name": "dataset", "num_classes": 4}, r"needs its unlabelled value"),
        ({"name": "painted", "num_classes": 4, "background": 2}, r"scribble value 2 has two meanings"),
        ({"name": "painted", "num_classes": 1}, r"num_classes must be >= 2, got 1"),
    ],
)
def test_bad_options_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ScribbleConvention.preset(**{"num_classes": 4, **kwargs})


def test_unknown_and_fractional_values_raise():
    convention = ScribbleConvention.preset("painted", num_classes=2)
    with pytest.raises(ValueError, match=r"scribble values \[5, 7\] are not in the painted convention"):
        convention.to_seeds(np.array([0, 5, 7, 1]))
    with pytest.raises(ValueError, match="must be integers"):
        convention.to_seeds(np.array([0.5, 1.0]))
