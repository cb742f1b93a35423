import itertools
import math

import pytest
import torch

from wss_monai.losses import GatedCRFLoss


def _direct_windowed_sum(logits, image, sigma_xy, sigma_i, radius, spacing=None, weight=1.0):
    """Σ_i Σ_{j in the window, j ≠ i} K_ij (1 − S_i·S_j) / N, pair by pair (tests only)."""
    probs = torch.softmax(logits.double(), 1)
    batch, _, *spatial = probs.shape
    scale = [1.0] * len(spatial) if spacing is None else [s / min(spacing) for s in spacing]
    out = []
    for b in range(batch):
        total = 0.0
        for p in itertools.product(*(range(n) for n in spatial)):
            for o in itertools.product(*(range(-r, r + 1) for r in radius)):
                q = tuple(pi + oi for pi, oi in zip(p, o))
                if not any(o) or not all(0 <= qi < n for qi, n in zip(q, spatial)):
                    continue
                d2 = sum((oi * s) ** 2 for oi, s in zip(o, scale))
                di2 = ((image[(b, slice(None), *p)] - image[(b, slice(None), *q)]).double() ** 2).sum()
                k = weight * math.exp(-0.5 * d2 / sigma_xy**2 - 0.5 * di2 / sigma_i**2)
                total = total + k * (1 - (probs[(b, slice(None), *p)] * probs[(b, slice(None), *q)]).sum())
        out.append(total / math.prod(spatial))
    return torch.stack(out)


@pytest.mark.parametrize(
    "shape, radius, spacing", [((5, 6), (2, 2), None), ((4, 4, 3), (1, 2, 1), (1.0, 1.0, 3.0)), ((6, 4), (3, 1), None)]
)
def test_equals_the_direct_windowed_sum(shape, radius, spacing):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, *shape, generator=generator, dtype=torch.float64)
    image = torch.rand(2, 2, *shape, generator=generator)
    loss = GatedCRFLoss(sigma_xy=1.5, sigma_intensity=0.4, radius=list(radius), spacing=spacing, reduction="none")
    expected = _direct_windowed_sum(logits, image, 1.5, 0.4, radius, spacing)
    assert torch.allclose(loss(logits, {"image": image}), expected, rtol=1e-5)


def test_kernel_weight_scales_and_gradient_flows():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(1, 2, 5, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    image = torch.rand(1, 1, 5, 5, generator=generator, dtype=torch.float64)
    base = GatedCRFLoss(radius=2)(logits, {"image": image})
    assert GatedCRFLoss(radius=2, kernel_weight=3.0)(logits, {"image": image}).item() == pytest.approx(3 * base.item())
    assert torch.autograd.gradcheck(lambda x: GatedCRFLoss(radius=2)(x, {"image": image}), (logits,))


def test_radius_larger_than_the_image_and_single_slice_volume():
    logits = torch.randn(1, 2, 3, 3, 1)
    image = torch.rand(1, 1, 3, 3, 1)
    small = GatedCRFLoss(radius=[5, 5, 5])(logits, {"image": image})
    flat = GatedCRFLoss(radius=5)(logits[..., 0], {"image": image[..., 0]})
    assert small.item() == pytest.approx(flat.item(), rel=1e-5)


def test_bad_inputs_raise_with_names():
    with pytest.raises(ValueError, match=r"sigma_xy must be a finite number > 0, got -2"):
        GatedCRFLoss(sigma_xy=-2)
    with pytest.raises(ValueError, match=r"radius must be an int >= 0 or one per axis, not all 0, got 0"):
        GatedCRFLoss(radius=0)
    with pytest.raises(ValueError, match=r"radius must hold 1 or 2 values for 2D images"):
        GatedCRFLoss(radius=[1, 1, 1])(torch.zeros(1, 2, 4, 4), {"image": torch.zeros(1, 1, 4, 4)})
    with pytest.raises(ValueError, match="logits contain NaN"):
        GatedCRFLoss()(torch.full((1, 2, 4, 4), float("nan")), {"image": torch.zeros(1, 1, 4, 4)})
    with pytest.raises(ValueError, match=r"does not match the logits"):
        GatedCRFLoss()(torch.zeros(2, 2, 4, 4), {"image": torch.zeros(1, 1, 4, 4)})
