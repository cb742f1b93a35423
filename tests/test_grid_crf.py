import math

import pytest
import torch

from wss_monai.losses import GridPottsLoss, PottsEnergy, potts_edge_weights, potts_energy
from wss_monai.losses.pairwise import grid_offsets, offset_lengths, pair_views, window_offsets


def _one_hot_logits(labels: torch.Tensor, classes: int) -> torch.Tensor:
    """Logits whose softmax is one-hot in float64 up to exp(-200)."""
    return torch.nn.functional.one_hot(labels[:, 0], classes).movedim(-1, 1).double() * 200.0


@pytest.mark.parametrize("dims, size, count", [(2, 4, 2), (2, 8, 4), (3, 6, 3), (3, 18, 9), (3, 26, 13)])
def test_grid_offsets_are_half_neighbourhoods(dims, size, count):
    offsets = grid_offsets(dims, size)
    assert len(offsets) == count == size // 2
    assert not set(offsets) & {tuple(-c for c in o) for o in offsets}  # never both o and -o


def test_window_offsets_and_lengths():
    assert len(window_offsets((5, 5))) == 60
    assert len(window_offsets((2, 2, 1))) == (5 * 5 * 3 - 1) // 2
    assert offset_lengths([(0, 0, 1), (1, 1, 0)], spacing=(1.5, 1.5, 10.0)) == pytest.approx([10 / 1.5, math.sqrt(2)])


def test_pair_views_cover_every_pair_once():
    x = torch.arange(12.0).view(1, 1, 3, 4)
    a, b = pair_views(x, (1, -1))
    assert a.shape == b.shape == (1, 1, 2, 3)
    assert (b - a).unique().tolist() == [3.0]  # one row down (+4), one column left (-1)
    empty, _ = pair_views(x, (5, 0))
    assert empty.numel() == 0


def test_hand_computed_energy_on_a_2x2_image():
    # image [[0, 0], [0, 2]], 4-grid: edges (0,0)-(0,1) Δ=0, (1,0)-(1,1) Δ=2, (0,0)-(1,0) Δ=0, (0,1)-(1,1) Δ=2
    image = torch.tensor([[[[0.0, 0.0], [0.0, 2.0]]]])
    sigma2 = (0 + 4 + 0 + 4) / 4  # mean squared difference
    w_far = math.exp(-4 / (2 * sigma2))
    labels = torch.tensor([[[[0, 0], [0, 1]]]])  # the bright corner alone: cuts the two contrast edges
    assert potts_energy(labels, image, neighbourhood=4).item() == pytest.approx(2 * w_far / 4, rel=1e-6)
    # 8-grid adds the diagonals: (0,0)-(1,1) Δ=2 at distance √2, (0,1)-(1,0) Δ=0 at √2
    sigma2_8 = (0 + 4 + 0 + 4 + 4 + 0) / 6
    expected = (2 * math.exp(-4 / (2 * sigma2_8)) + math.exp(-4 / (2 * sigma2_8)) / math.sqrt(2)) / 4
    assert potts_energy(labels, image, neighbourhood=8).item() == pytest.approx(expected, rel=1e-6)
    # a cut through the flat region costs more than the cut along the contrast edge
    flat_cut = torch.tensor([[[[0, 1], [0, 1]]]])
    assert potts_energy(flat_cut, image, neighbourhood=4).item() > potts_energy(labels, image, neighbourhood=4).item()


def test_fixed_sigma_and_multichannel_contrast():
    image = torch.zeros(1, 2, 1, 2)
    image[0, 0, 0, 1], image[0, 1, 0, 1] = 1.0, 2.0  # ‖ΔI‖² = 1 + 4 over the channels
    (_, w), _ = potts_edge_weights(image, neighbourhood=4, sigma=1.0)
    assert w.flatten().tolist() == pytest.approx([math.exp(-5 / 2)])
    (_, w_auto), _ = potts_edge_weights(image, neighbourhood=4)  # σ² = 5: the only pair
    assert w_auto.flatten().tolist() == pytest.approx([math.exp(-0.5)])


def test_constant_image_gives_unit_contrast_and_spacing_divides():
    image = torch.full((1, 1, 3, 3, 2), 7.0)  # σ² = 0: every contrast factor is exp(0) = 1
    weights = dict(potts_edge_weights(image, neighbourhood=6, spacing=(1.5, 1.5, 10.0)))
    assert torch.allclose(weights[(1, 0, 0)], torch.ones(1))
    assert torch.allclose(weights[(0, 0, 1)], torch.full((1,), 1.5 / 10.0))
    labels = torch.zeros(1, 1, 3, 3, 2, dtype=torch.long)
    labels[..., 1] = 1  # the two slices differ: 9 through-plane cuts
    energy = potts_energy(labels, image, neighbourhood=6, spacing=(1.5, 1.5, 10.0))
    assert energy.item() == pytest.approx(9 * 0.15 / 18)


@pytest.mark.parametrize("relaxation", ["bilinear", "quadratic"])
@pytest.mark.parametrize(
    "shape, neighbourhood", [((6, 5), 4), ((6, 5), 8), ((4, 5, 3), 6), ((4, 5, 3), 18), ((4, 3, 3), 26)]
)
def test_relaxations_equal_the_discrete_energy_on_one_hot_inputs(relaxation, shape, neighbourhood):
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(2, 2, *shape, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 3, (2, 1, *shape), generator=generator)
    spacing = None if len(shape) == 2 else (1.0, 1.0, 2.5)
    loss = GridPottsLoss(neighbourhood=neighbourhood, relaxation=relaxation, spacing=spacing, reduction="none")
    relaxed = loss(_one_hot_logits(labels, 3), {"image": image})
    discrete = potts_energy(labels, image, neighbourhood, spacing)
    assert relaxed.shape == (2,)
    assert torch.allclose(relaxed.float(), discrete, rtol=1e-5)
    assert discrete.min() > 0


def test_soft_values_and_gradient():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 5, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    image = torch.rand(2, 1, 5, 4, generator=generator, dtype=torch.float64)
    for relaxation in ("bilinear", "quadratic"):
        loss = GridPottsLoss(neighbourhood=8, relaxation=relaxation)
        assert torch.autograd.gradcheck(lambda x, loss=loss: loss(x, {"image": image}), (logits,))
    # bilinear, by hand on a pair: S_p = (0.5, 0.5), S_q = (1, 0) → 1 − 0.5 = 0.5
    logits2 = torch.tensor([[[[0.0, 50.0]], [[0.0, -50.0]]]])
    value = GridPottsLoss(neighbourhood=4)(logits2, {"image": torch.zeros(1, 1, 1, 2)})
    assert value.item() == pytest.approx(0.5 / 2)
    quadratic = GridPottsLoss(neighbourhood=4, relaxation="quadratic")(logits2, {"image": torch.zeros(1, 1, 1, 2)})
    assert quadratic.item() == pytest.approx(0.5 * (0.25 + 0.25) / 2)


def test_single_slice_volume_equals_the_2d_8_grid():
    generator = torch.Generator().manual_seed(2)
    image = torch.rand(1, 1, 6, 6, 1, generator=generator)
    labels = torch.randint(0, 2, (1, 1, 6, 6, 1), generator=generator)
    e3 = potts_energy(labels, image, neighbourhood=26, spacing=(1.0, 1.0, 5.0))
    e2 = potts_energy(labels[..., 0], image[..., 0], neighbourhood=8)
    assert torch.allclose(e3, e2)


def test_potts_energy_term_logs_the_argmax_energy_without_gradient():
    logits = torch.randn(2, 3, 6, 6, requires_grad=True)
    image = torch.rand(2, 1, 6, 6)
    value = PottsEnergy(neighbourhood=8)(logits, {"image": image})
    expected = potts_energy(logits.argmax(1, keepdim=True), image, 8).mean()
    assert value.item() == pytest.approx(expected.item())
    assert not value.requires_grad


def test_half_precision_logits_stay_finite():
    logits = (torch.randn(2, 4, 8, 8) * 30).half()
    value = GridPottsLoss()(logits, {"image": torch.rand(2, 1, 8, 8)})
    assert value.dtype == torch.float32 and torch.isfinite(value)


def test_bad_inputs_raise_with_names():
    logits = torch.zeros(1, 2, 4, 4)
    with pytest.raises(ValueError, match=r"neighbourhood must be None or one of \[4, 6, 8, 18, 26\], got 5"):
        GridPottsLoss(neighbourhood=5)
    with pytest.raises(ValueError, match=r"a 2D neighbourhood must be one of \(4, 8\), got 6"):
        GridPottsLoss(neighbourhood=6)(logits, {"image": torch.zeros(1, 1, 4, 4)})
    with pytest.raises(ValueError, match=r"sigma must be a finite number > 0, got 0"):
        GridPottsLoss(sigma=0)
    with pytest.raises(ValueError, match="relaxation must be one of"):
        GridPottsLoss(relaxation="cubic")
    with pytest.raises(ValueError, match=r"'image' of shape \(1, 1, 4, 5\) does not match the logits \(1, 2, 4, 4\)"):
        GridPottsLoss()(logits, {"image": torch.zeros(1, 1, 4, 5)})
    with pytest.raises(ValueError, match="logits contain NaN"):
        GridPottsLoss()(torch.full((1, 2, 4, 4), float("nan")), {"image": torch.zeros(1, 1, 4, 4)})
    with pytest.raises(ValueError, match="image 'image' contains NaN"):
        GridPottsLoss()(logits, {"image": torch.full((1, 1, 4, 4), float("nan"))})
    with pytest.raises(KeyError, match="needs the batch key 'image'"):
        GridPottsLoss()(logits, {"scribble": torch.zeros(1, 1, 4, 4)})
    with pytest.raises(ValueError, match=r"spacing must hold 2 finite values > 0"):
        GridPottsLoss(spacing=(1.0, 1.0, 2.0))(logits, {"image": torch.zeros(1, 1, 4, 4)})
    with pytest.raises(ValueError, match=r"segmentation of shape \(1, 1, 3, 3\) does not match image"):
        potts_energy(torch.zeros(1, 1, 3, 3, dtype=torch.long), torch.zeros(1, 1, 4, 4))
