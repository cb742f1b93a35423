import pytest
import torch

from wss_monai.filtering import PermutohedralLattice
from wss_monai.losses import DenseCRFLoss, bilateral_features, dense_crf_energy


def _exact_kernel(image: torch.Tensor, sigma_xy: float, sigma_i: float, spacing=None) -> torch.Tensor:
    """The N × N Gaussian kernel of one image ``(C, *spatial)`` (brute force, tests only)."""
    features = bilateral_features(image[None], sigma_xy, sigma_i, spacing).double()
    return torch.exp(-0.5 * torch.cdist(features, features) ** 2)


def _exact_loss(logits: torch.Tensor, image: torch.Tensor, sigma_xy, sigma_i, spacing=None) -> torch.Tensor:
    """Σ_ij W_ij (1 − S_i·S_j) / N per image, with the exact kernel."""
    values = []
    for b in range(logits.shape[0]):
        w = _exact_kernel(image[b], sigma_xy, sigma_i, spacing)
        s = torch.softmax(logits[b].double(), 0).flatten(1)  # (K, N)
        values.append((w.sum() - (s @ w * s).sum()) / s.shape[1])
    return torch.stack(values)


def _image_and_logits(shape, seed=0, classes=3):
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(2, 1, *shape, generator=generator)
    image[:, :, : shape[0] // 2] += 2.0  # two regions of different brightness
    logits = torch.randn(2, classes, *shape, generator=generator, dtype=torch.float64)
    return image, logits


@pytest.mark.parametrize("dims", [1, 2, 3, 4])
def test_lattice_filter_approximates_the_gaussian(dims):
    generator = torch.Generator().manual_seed(dims)
    features = torch.rand(400, dims, generator=generator) * 4
    values = torch.rand(400, 2, generator=generator)
    exact = torch.exp(-0.5 * torch.cdist(features, features) ** 2) @ values
    approx = PermutohedralLattice(features).filter(values)
    ratio = approx / exact
    # the lattice's known approximation: a nearly constant underestimate that grows with the dimension
    assert 0.6 < ratio.mean() < 1.0
    assert ratio.std() < 0.06


def test_lattice_keeps_groups_apart_and_is_differentiable():
    features = torch.zeros(4, 2)  # identical features: every pair would interact in one group
    groups = torch.tensor([0, 0, 1, 1])
    values = torch.tensor([[1.0], [2.0], [10.0], [20.0]], requires_grad=True)
    out = PermutohedralLattice(features, groups).filter(values)
    assert out[0].item() == pytest.approx(out[1].item())
    assert out[2].item() / out[0].item() == pytest.approx(10.0, rel=1e-5)
    out.sum().backward()
    assert torch.isfinite(values.grad).all()


def test_lattice_operator_is_symmetric_and_autograd_is_its_transpose():
    generator = torch.Generator().manual_seed(3)
    features = torch.rand(60, 3, generator=generator, dtype=torch.float64) * 3
    lattice = PermutohedralLattice(features)
    one_order = lattice.filter(torch.eye(60, dtype=torch.float64), symmetric=False)  # column j = W e_j
    other_order = PermutohedralLattice(features)
    other_order.neighbours = other_order.neighbours[::-1]
    assert torch.allclose(one_order.T, other_order.filter(torch.eye(60, dtype=torch.float64), symmetric=False))
    matrix = lattice.filter(torch.eye(60, dtype=torch.float64))
    assert torch.allclose(matrix, matrix.T, atol=1e-12)
    values = torch.rand(60, 1, dtype=torch.float64, requires_grad=True)
    loss = (values * lattice.filter(values)).sum()
    (grad,) = torch.autograd.grad(loss, values)
    assert torch.allclose(grad, 2 * matrix @ values.detach(), atol=1e-10)


@pytest.mark.parametrize("shape, spacing", [((8, 7), None), ((6, 5, 3), (1.0, 1.0, 2.0))])
def test_loss_and_gradient_against_the_brute_force_kernel(shape, spacing):
    image, logits = _image_and_logits(shape)
    sigma_xy, sigma_i = 3.0, 0.5
    logits.requires_grad_(True)
    loss = DenseCRFLoss(sigma_xy=sigma_xy, sigma_intensity=sigma_i, spacing=spacing, reduction="none")
    approx = loss(logits, {"image": image})
    exact = _exact_loss(logits, image, sigma_xy, sigma_i, spacing)
    assert approx.shape == (2,)
    assert torch.allclose(approx, exact, rtol=0.3)
    (g_approx,) = torch.autograd.grad(approx.sum(), logits)
    (g_exact,) = torch.autograd.grad(exact.sum(), logits)
    cosine = torch.nn.functional.cosine_similarity(g_approx.flatten(), g_exact.flatten(), dim=0)
    assert cosine > 0.97


def test_gradient_is_minus_two_w_s_over_n():
    image, logits = _image_and_logits((6, 6), seed=4)
    probs = torch.softmax(logits, 1).requires_grad_(True)
    (grad,) = torch.autograd.grad(dense_crf_energy(probs, image, 2.0, 0.5).sum(), probs)
    lattice = PermutohedralLattice(bilateral_features(image, 2.0, 0.5), torch.arange(2).repeat_interleave(36))
    flat = probs.detach().flatten(2).transpose(1, 2).reshape(-1, 3)
    expected = -2 * lattice.filter(flat).view(2, 36, 3).transpose(1, 2).reshape(2, 3, 6, 6) / 36
    assert torch.allclose(grad, expected, atol=1e-12)


def test_constant_segmentation_costs_nothing_and_a_cut_along_an_edge_costs_less():
    image = torch.zeros(1, 1, 12, 12)
    image[..., 6:] = 5.0
    loss = DenseCRFLoss(sigma_xy=4.0, sigma_intensity=0.5)
    constant = torch.zeros(1, 2, 12, 12, dtype=torch.float64)
    constant[:, 0] = 100.0
    assert abs(loss(constant, {"image": image}).item()) < 1e-9
    along = torch.zeros(1, 2, 12, 12)
    along[:, 0, :, :6] = along[:, 1, :, 6:] = 100.0
    across = torch.zeros(1, 2, 12, 12)
    across[:, 0, :6, :] = across[:, 1, 6:, :] = 100.0
    assert loss(along, {"image": image}) < 1e-6 * loss(across, {"image": image})


def test_downsampled_copy_approximates_the_full_resolution_loss():
    generator = torch.Generator().manual_seed(5)
    smooth = torch.nn.functional.avg_pool2d(torch.rand(1, 1, 40, 40, generator=generator), 9, 1, 4) * 4
    logits = torch.nn.functional.avg_pool2d(torch.randn(1, 3, 40, 40, generator=generator), 9, 1, 4) * 8
    full = DenseCRFLoss(sigma_xy=8.0, sigma_intensity=1.0)(logits, {"image": smooth})
    half = DenseCRFLoss(sigma_xy=8.0, sigma_intensity=1.0, scale_factor=0.5)(logits, {"image": smooth})
    assert half.item() == pytest.approx(full.item(), rel=0.15)


def test_batch_images_are_independent_and_fp16_is_finite():
    image, logits = _image_and_logits((8, 8), seed=6)
    loss = DenseCRFLoss(sigma_xy=3.0, sigma_intensity=0.5, reduction="none")
    both = loss(logits, {"image": image})
    single = loss(logits[1:], {"image": image[1:]})
    assert both[1].item() == pytest.approx(single.item(), rel=1e-6)
    half = DenseCRFLoss(sigma_xy=3.0, sigma_intensity=0.5)(logits.half() * 20, {"image": image})
    assert torch.isfinite(half)


def test_single_slice_volume_and_multichannel_image():
    generator = torch.Generator().manual_seed(7)
    logits = torch.randn(1, 2, 6, 6, 1, generator=generator)
    image = torch.rand(1, 3, 6, 6, 1, generator=generator)
    value = DenseCRFLoss(sigma_xy=2.0, sigma_intensity=[0.5, 1.0, 2.0], spacing=(1, 1, 10))(logits, {"image": image})
    flat = DenseCRFLoss(sigma_xy=2.0, sigma_intensity=[0.5, 1.0, 2.0])(logits[..., 0], {"image": image[..., 0]})
    assert value.item() == pytest.approx(flat.item(), rel=1e-6)  # one slice: the depth axis adds nothing


def test_bad_inputs_raise_with_names():
    logits, image = torch.zeros(1, 2, 4, 4), torch.zeros(1, 1, 4, 4)
    for kwargs, message in [
        ({"sigma_xy": 0}, r"sigma_xy must be a finite number > 0, got 0"),
        ({"sigma_intensity": -1.0}, r"sigma_intensity must be a finite number > 0, got -1.0"),
        ({"scale_factor": 2.0}, r"scale_factor must be in \(0, 1\]"),
    ]:
        with pytest.raises(ValueError, match=message):
            DenseCRFLoss(**kwargs)
    with pytest.raises(ValueError, match=r"sigma_intensity holds 2 values but image 'image' has 1 channels"):
        DenseCRFLoss(sigma_intensity=[1.0, 2.0])(logits, {"image": image})
    with pytest.raises(ValueError, match="does not match the logits"):
        DenseCRFLoss()(logits, {"image": torch.zeros(1, 1, 4, 4, 2)})
    with pytest.raises(ValueError, match="logits contain NaN"):
        DenseCRFLoss()(torch.full((1, 2, 4, 4), float("nan")), {"image": image})
    with pytest.raises(ValueError, match=r"features must have shape \(N, d\)"):
        PermutohedralLattice(torch.zeros(0, 3))
    with pytest.raises(ValueError, match="too\\s+wide a range"):
        PermutohedralLattice(torch.tensor([[0.0] * 8, [1e6] * 8]))
