"""The size regressor network of curriculum semi-supervised segmentation (its training: test_size_regression_engine)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wss_monai.networks.size_regressor import SizeRegressor, dihedral_augment, predict_sizes

TINY = {"channels": (4, 8)}


def bright_rectangles(num: int = 24, size: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images with one bright rectangle of random extent on a dark noisy background; size = its pixel count."""
    rng = np.random.default_rng(seed)
    images = rng.normal(0.0, 0.05, (num, 1, size, size)).astype(np.float32)
    sizes = np.zeros(num, dtype=np.float32)
    for n in range(num):
        h, w = rng.integers(1, size // 2 + 1, 2)
        r, c = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
        images[n, 0, r : r + h, c : c + w] += 1.0
        sizes[n] = h * w
    return torch.from_numpy(images), torch.from_numpy(sizes)


def test_shapes_and_non_negative_outputs():
    net = SizeRegressor(num_outputs=3, **TINY)
    assert net(torch.randn(5, 1, 20, 24)).shape == (5, 3)
    torch.nn.init.constant_(net.head.bias, -100.0)  # softplus keeps the outputs >= 0
    out = net(torch.randn(2, 1, 16, 16))
    assert (out >= 0).all() and torch.isfinite(out).all()
    net3d = SizeRegressor(in_channels=2, spatial_dims=3, **TINY)
    assert net3d(torch.randn(2, 2, 8, 8, 8)).shape == (2, 1)


def test_scale_multiplies_the_output_and_is_saved():
    torch.manual_seed(0)
    net = SizeRegressor(num_outputs=2, **TINY).eval()
    x = torch.randn(3, 1, 16, 16)
    base = net(x)
    net.set_scale([10.0, 100.0])
    torch.testing.assert_close(net(x), base * torch.tensor([10.0, 100.0]))
    assert "scale" in net.state_dict()
    # an untrained network predicts about the scale (the head starts at softplus(b) = 1)
    fresh = SizeRegressor(scale=50.0, **TINY).eval()
    torch.nn.init.zeros_(fresh.head.weight)
    assert fresh(x).flatten().tolist() == pytest.approx([50.0] * 3, rel=1e-5)


def test_gradients_flow():
    net = SizeRegressor(**TINY)
    net(torch.randn(4, 1, 16, 16)).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_dihedral_augment_keeps_pixel_counts():
    images, _ = bright_rectangles(16)
    generator = torch.Generator().manual_seed(0)
    out = dihedral_augment(images, generator)
    assert out.shape == images.shape
    torch.testing.assert_close((out > 0.5).sum((1, 2, 3)), (images > 0.5).sum((1, 2, 3)))
    torch.testing.assert_close(out.sum((1, 2, 3)), images.sum((1, 2, 3)))
    assert not torch.equal(out, images)
    again = dihedral_augment(images, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    # non-square: flips only, shape kept
    assert dihedral_augment(torch.randn(3, 1, 6, 9), generator).shape == (3, 1, 6, 9)


def test_predict_sizes_restores_mode_and_has_no_grad():
    net = SizeRegressor(**TINY).train()
    sizes = predict_sizes(net, np.random.rand(5, 1, 16, 16).astype(np.float32), batch_size=2)
    assert sizes.shape == (5, 1) and not sizes.requires_grad and net.training

    class Flat(torch.nn.Module):
        def forward(self, x):
            return x.sum((1, 2, 3)) - 100.0

    assert predict_sizes(Flat(), torch.ones(2, 1, 4, 4)).tolist() == [[0.0], [0.0]]  # clipped at 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"channels": ()}, r"channels must name at least one block"),
        ({"channels": (4, 0)}, r"channels must be an integer >= 1, got 0"),
        ({"strides": (2,), "channels": (4, 8)}, r"strides must have one value per block \(2\), got \[2\]"),
        ({"spatial_dims": 1}, r"spatial_dims must be 2 or 3, got 1"),
        ({"num_outputs": 0}, r"num_outputs must be an integer >= 1, got 0"),
        ({"scale": -1.0}, r"scale must be one or 1 finite positive numbers, got -1.0"),
        ({"dropout": 1.5}, r"dropout must be in \[0, 1\), got 1.5"),
    ],
)
def test_network_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SizeRegressor(**kwargs)


def test_forward_shape_error():
    with pytest.raises(
        ValueError, match=r"input must have shape \(B, 1, \*spatial\) with 2 spatial dims, got \(2, 3, 8, 8\)"
    ):
        SizeRegressor(**TINY)(torch.zeros(2, 3, 8, 8))
