"""Size bounds from a size regressor, and the oracle mode against SizeBoundsd(mode="individual")."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from wss_monai.networks.size_regressor import SizeRegressor
from wss_monai.transforms.bounds import SizeBounds, SizeBoundsd
from wss_monai.transforms.predicted_bounds import PredictedSizeBounds, PredictedSizeBoundsd


class BrightCount(torch.nn.Module):
    """A known 'regressor': sizes (pixels above 0.5, twice that) per image, (B, 2)."""

    def __init__(self, outputs: int = 1) -> None:
        super().__init__()
        self.outputs = outputs
        self.weight = torch.nn.Parameter(torch.ones(()))  # a parameter, so the device can be read

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        count = (x > 0.5).float().sum((1, 2, 3)) * self.weight
        return torch.stack([count * (k + 1) for k in range(self.outputs)], 1)


def image_2d() -> np.ndarray:
    image = np.zeros((1, 10, 12), dtype=np.float32)
    image[0, :4, :5] = 1.0  # 20 bright pixels
    return image


def volume() -> np.ndarray:
    image = np.zeros((1, 10, 12, 3), dtype=np.float32)
    for z in range(3):
        image[0, : 4 - z, :5, z] = 1.0  # 20, 15, 10
    return image


def labels(depth: int = 0) -> np.ndarray:
    if not depth:
        label = np.zeros((1, 10, 10), dtype=np.int64)
        label[0, :4, :5] = 1
        label[0, 6:8, 6:9] = 2
        return label
    label = np.zeros((1, 10, 10, depth), dtype=np.int64)
    for z in range(depth):
        label[0, : 4 - z, :5, z] = 1
    label[0, 6:8, 6:9, 0] = 2
    return label


def test_predicted_2d_values():
    bounds = PredictedSizeBounds(BrightCount(), gamma=0.1)(image_2d())
    assert isinstance(bounds, np.ndarray) and bounds.dtype == np.float32 and bounds.shape == (1, 2)
    np.testing.assert_allclose(bounds, [[18.0, 22.0]], rtol=1e-6)
    two = PredictedSizeBounds(BrightCount(2), gamma=0.2)(torch.from_numpy(image_2d()))
    assert isinstance(two, torch.Tensor) and two.shape == (2, 2)
    torch.testing.assert_close(two, torch.tensor([[16.0, 24.0], [32.0, 48.0]]))


def test_predicted_3d_per_slice_and_per_volume():
    per_slice = PredictedSizeBounds(BrightCount(), gamma=0.1, spatial_dims=2)(volume())
    assert per_slice.shape == (1, 2, 3)
    np.testing.assert_allclose(per_slice[0, 0], [18.0, 13.5, 9.0], rtol=1e-6)
    np.testing.assert_allclose(per_slice[0, 1], [22.0, 16.5, 11.0], rtol=1e-6)
    whole = PredictedSizeBounds(BrightCount(), gamma=0.1, spatial_dims=3)(volume())
    np.testing.assert_allclose(whole, [[40.5, 49.5]], rtol=1e-6)
    # same slice-by-slice result in small regressor batches
    batched = PredictedSizeBounds(BrightCount(), gamma=0.1, batch_size=2)(volume())
    np.testing.assert_array_equal(batched, per_slice)


def test_full_class_layout_leaves_other_classes_free():
    bounds = PredictedSizeBounds(BrightCount(), gamma=0.1, classes=[2], num_classes=3)(image_2d())
    np.testing.assert_allclose(bounds, [[0.0, 120.0], [0.0, 120.0], [18.0, 22.0]], rtol=1e-6)
    per_slice = PredictedSizeBounds(BrightCount(), num_classes=2)(volume())
    assert per_slice.shape == (2, 2, 3)
    np.testing.assert_array_equal(per_slice[0, 1], [120.0] * 3)
    whole = PredictedSizeBounds(BrightCount(), num_classes=2, spatial_dims=3)(volume())
    np.testing.assert_array_equal(whole[0], [0.0, 360.0])


def test_real_regressor_shapes_no_grad_and_mode_restored():
    torch.manual_seed(0)
    net = SizeRegressor(channels=(4, 8), scale=30.0).train()
    image = MetaTensor(torch.rand(1, 16, 16, 4))
    out = PredictedSizeBoundsd(keys="image", regressor=net)({"image": image})
    bounds = out["bounds"]
    assert type(bounds) is torch.Tensor and bounds.shape == (1, 2, 4) and not bounds.requires_grad
    assert (bounds[:, 0] >= 0).all() and (bounds[:, 1] >= bounds[:, 0]).all()
    torch.testing.assert_close(bounds[:, 1] / 1.1, bounds[:, 0] / 0.9)
    assert net.training  # the regressor's mode is restored
    assert out["image"] is image


@pytest.mark.parametrize("depth", [0, 3])
@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_oracle_equals_individual_size_bounds(depth, spatial_dims, kind):
    label = labels(depth)
    data = {"label": label if kind == "numpy" else torch.from_numpy(label), "image": np.zeros((1, 10, 10))}
    expected = SizeBoundsd(
        keys="label", num_classes=3, mode="individual", margin=0.1, spatial_dims=spatial_dims, output_key="bounds"
    )(data)["bounds"]
    got = PredictedSizeBoundsd(
        keys="image", mode="oracle", num_classes=3, gamma=0.1, spatial_dims=spatial_dims, label_key="label"
    )(data)["bounds"]
    assert type(got) is type(expected) and got.dtype == expected.dtype and got.shape == expected.shape
    if kind == "numpy":
        np.testing.assert_array_equal(got, expected)
    else:
        assert torch.equal(got, expected)


def test_oracle_selected_classes_match_the_rows():
    label = labels(4)
    full = SizeBounds(num_classes=3, mode="individual", margin=0.2)(label)
    rows = PredictedSizeBounds(mode="oracle", num_classes=3, classes=[1], gamma=0.2)(label)
    assert rows.shape == (3, 2, 4)  # the oracle always gives the full class layout
    np.testing.assert_array_equal(rows[1], full[1])
    np.testing.assert_array_equal(rows[[0, 2], 0], np.zeros((2, 4)))  # other classes free: [0, |Ω|]
    np.testing.assert_array_equal(rows[[0, 2], 1], np.full((2, 4), 100.0))


def test_oracle_and_predicted_agree_on_a_perfect_regressor():
    image = image_2d()
    label = (image > 0.5).astype(np.int64)
    predicted = PredictedSizeBounds(BrightCount(), num_classes=2)(image)
    oracle = PredictedSizeBounds(mode="oracle", num_classes=2, classes=[1])(label)
    np.testing.assert_allclose(predicted, oracle, rtol=1e-6)


def test_input_not_mutated():
    image, label = volume(), labels(3)
    before_image, before_label = image.copy(), label.copy()
    d = {"image": image, "label": label}
    PredictedSizeBoundsd(keys="image", regressor=BrightCount())(d)
    PredictedSizeBoundsd(mode="oracle", num_classes=3)(d)
    np.testing.assert_array_equal(image, before_image)
    np.testing.assert_array_equal(label, before_label)
    assert sorted(d) == ["image", "label"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mode": "guess"}, r"mode must be one of \('predicted', 'oracle'\), got 'guess'"),
        ({"regressor": None}, r"regressor is required with mode='predicted', got None"),
        ({"mode": "oracle"}, r"num_classes is required with mode='oracle', got None"),
        ({"gamma": 1.5}, r"gamma must be a number in \[0, 1\], got 1.5"),
        ({"num_classes": 1}, r"num_classes must be an integer >= 2, got 1"),
        ({"classes": [1, 1]}, r"classes must be distinct class indices, got \[1, 1\]"),
        ({"classes": [3], "num_classes": 3}, r"classes \[3\] out of range for num_classes=3"),
        ({"spatial_dims": 4}, r"spatial_dims must be 2 or 3, got 4"),
        ({"batch_size": 0}, r"batch_size must be an integer >= 1, got 0"),
    ],
)
def test_option_errors(kwargs, match):
    args = {"regressor": BrightCount(), **kwargs}
    with pytest.raises(ValueError, match=match):
        PredictedSizeBounds(**args)


def test_call_errors():
    with pytest.raises(ValueError, match=r"the regressor predicts 2 sizes but classes names 1: \[1\]"):
        PredictedSizeBounds(BrightCount(2), classes=[1])(image_2d())
    with pytest.raises(ValueError, match=r"image must have shape \(C, H, W\[, D\]\), got \(10, 12\)"):
        PredictedSizeBounds(BrightCount())(np.zeros((10, 12)))
    with pytest.raises(ValueError, match=r"classes \[1, 2\] out of range for num_classes=2"):
        PredictedSizeBounds(BrightCount(2), num_classes=2)(image_2d())
    with pytest.raises(ValueError, match=r"label values must lie in \[0, 1\]"):
        PredictedSizeBounds(mode="oracle", num_classes=2)(labels())
    with pytest.raises(KeyError, match=r"needs the label key 'gt'"):
        PredictedSizeBoundsd(mode="oracle", num_classes=3, label_key="gt")({"image": image_2d()})
    assert "bounds" not in PredictedSizeBoundsd(mode="oracle", num_classes=3, allow_missing_keys=True)({"x": 1})
    with pytest.raises(ValueError, match=r"keys must name one image key, got \['a', 'b'\]"):
        PredictedSizeBoundsd(keys=["a", "b"], regressor=BrightCount())
