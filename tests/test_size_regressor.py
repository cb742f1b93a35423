"""The size regressor of curriculum semi-supervised segmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wss_monai.networks.size_regressor import (
    SizeRegressor,
    dihedral_augment,
    predict_sizes,
    train_size_regressor,
)

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


def test_loss_decreases_on_a_learnable_toy():
    images, sizes = bright_rectangles()
    net, history = train_size_regressor(images, sizes, epochs=6, batch_size=8, lr=1e-2, augment=2, seed=0, **TINY)
    assert len(history) == 6 and all(np.isfinite(history))
    assert history[-1] < 0.7 * history[0]
    assert not net.training
    assert net.scale.item() == pytest.approx(sizes.mean().item())
    assert predict_sizes(net, images).shape == (24, 1)


def test_training_is_seeded_and_leaves_the_global_rng_alone():
    images, sizes = bright_rectangles(8)
    state = torch.get_rng_state()
    a, history_a = train_size_regressor(images, sizes, epochs=1, batch_size=4, augment=3, seed=5, **TINY)
    assert torch.equal(torch.get_rng_state(), state)
    b, history_b = train_size_regressor(images, sizes, epochs=1, batch_size=4, augment=3, seed=5, **TINY)
    assert history_a == history_b
    for p, q in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(p, q)
    _, history_c = train_size_regressor(images, sizes, epochs=1, batch_size=4, augment=3, seed=6, **TINY)
    assert history_c != history_a


def test_multi_class_numpy_inputs_and_given_model():
    images, sizes = bright_rectangles(6)
    two = np.stack([sizes.numpy(), 2 * sizes.numpy()], 1)
    net, history = train_size_regressor(images.numpy(), two, epochs=1, batch_size=3, augment=1, **TINY)
    assert net(images).shape == (6, 2) and len(history) == 1
    torch.testing.assert_close(net.scale, torch.from_numpy(two.mean(0)))
    other = SizeRegressor(scale=3.0, **TINY)
    trained, _ = train_size_regressor(images, sizes, epochs=1, batch_size=6, model=other)
    assert trained is other and other.scale.item() == 3.0  # a given model keeps its scale


def test_inputs_not_mutated():
    images, sizes = bright_rectangles(4)
    before_images, before_sizes = images.clone(), sizes.clone()
    train_size_regressor(images, sizes, epochs=1, batch_size=4, augment=2, **TINY)
    assert torch.equal(images, before_images) and torch.equal(sizes, before_sizes)


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


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"epochs": 0}, r"epochs must be an integer >= 1, got 0"),
        ({"augment": 0}, r"augment must be an integer >= 1, got 0"),
        ({"batch_size": 0}, r"batch_size must be an integer >= 1, got 0"),
        ({"lr": -1.0}, r"lr must be a finite positive number, got -1.0"),
        ({"sizes": -torch.ones(4)}, r"sizes must be finite and >= 0"),
        ({"sizes": torch.ones(3)}, r"sizes must have shape \(N,\) or \(N, K\) with N = 4 images, got \(3, 1\)"),
        ({"images": torch.zeros(4, 8, 8)}, r"images must have shape \(N, C, H, W\)"),
        ({"model": SizeRegressor(channels=(4,)), "channels": (4,)}, r"model_kwargs \['channels'\] only apply"),
    ],
)
def test_training_errors(kwargs, match):
    args = {"images": torch.zeros(4, 1, 8, 8), "sizes": torch.ones(4), "epochs": 1, **kwargs}
    with pytest.raises(ValueError, match=match):
        train_size_regressor(**args)
