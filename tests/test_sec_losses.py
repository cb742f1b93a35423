"""SEC losses: GWRP, expansion, constrain (mean-field dense CRF against a brute-force N x N CRF), tag classification."""

import math

import pytest
import torch

from wss_monai.losses import (
    ConstrainLoss,
    ExpansionLoss,
    PartialCrossEntropyLoss,
    TagClassificationLoss,
    dense_crf_mean_field,
    global_weighted_rank_pooling,
)


@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (2, 3, 4, 3, 2)])
def test_gwrp_is_max_pooling_at_0_and_average_pooling_at_1(shape):
    scores = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(global_weighted_rank_pooling(scores, 0.0), scores.flatten(2).amax(2))
    torch.testing.assert_close(global_weighted_rank_pooling(scores, 1.0), scores.flatten(2).mean(2))


def test_gwrp_hand_value_and_decay_per_class():
    scores = torch.tensor([[[0.2, 0.8, 0.4], [1.0, 0.0, 0.5]]])
    decay = torch.tensor([[0.5, 0.1]])
    expected = torch.tensor([[(0.8 + 0.5 * 0.4 + 0.25 * 0.2) / 1.75, (1.0 + 0.1 * 0.5) / 1.11]])
    torch.testing.assert_close(global_weighted_rank_pooling(scores, decay), expected)
    with pytest.raises(ValueError, match=r"decay must be in \[0, 1\]"):
        global_weighted_rank_pooling(scores, 1.5)


def test_gwrp_is_order_invariant_and_leaves_input_unchanged():
    scores = torch.rand(1, 2, 10, generator=torch.Generator().manual_seed(1))
    copy = scores.clone()
    out = global_weighted_rank_pooling(scores, 0.9)
    torch.testing.assert_close(global_weighted_rank_pooling(scores[..., torch.randperm(10)], 0.9), out)
    assert torch.equal(scores, copy)


def expansion_by_hand(logits, tags, d_plus, d_minus, d_bg):
    """The paper's formula, one image and one class at a time with Python loops."""
    probs = torch.softmax(logits.double(), 1).flatten(2)
    total = 0.0
    for b in range(logits.shape[0]):
        present = [c for c in range(1, logits.shape[1]) if tags[b, c]]
        absent = [c for c in range(1, logits.shape[1]) if not tags[b, c]]

        def pool(c, d, b=b):
            ranked = sorted(probs[b, c].tolist(), reverse=True)
            weights = [d**j for j in range(len(ranked))]
            return sum(w * r for w, r in zip(weights, ranked)) / sum(weights)

        loss = -math.log(pool(0, d_bg))
        if present:
            loss -= sum(math.log(pool(c, d_plus)) for c in present) / len(present)
        if absent:
            loss -= sum(math.log(1 - pool(c, d_minus)) for c in absent) / len(absent)
        total += loss
    return total / logits.shape[0]


@pytest.mark.parametrize("spatial", [(4, 3), (3, 3, 2)])
def test_expansion_matches_the_formula(spatial):
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 4, *spatial, generator=gen)
    tags = torch.tensor([[1.0, 1.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]])  # image 2: only (implicit) background
    loss = ExpansionLoss(present_decay=0.9, absent_decay=0.3, background_decay=0.95)(logits, {"tags": tags})
    assert loss.item() == pytest.approx(expansion_by_hand(logits, tags, 0.9, 0.3, 0.95), rel=1e-5)


def test_expansion_tiny_hand_value():
    # two pixels, two classes: p_fg = (0.8, 0.4); present foreground with d+ = 0 (max) -> -log 0.8;
    # background with d_bg = 1 (mean of 0.2, 0.6) -> -log 0.4
    probs = torch.tensor([[0.2, 0.6], [0.8, 0.4]])
    logits = torch.log(probs).reshape(1, 2, 1, 2)
    loss = ExpansionLoss(present_decay=0.0, background_decay=1.0)(logits, {"tags": torch.tensor([[1.0, 1.0]])})
    assert loss.item() == pytest.approx(-math.log(0.8) - math.log(0.4), rel=1e-5)
    # absent foreground with d- = 0: -log(1 - max) = -log 0.2
    loss = ExpansionLoss(absent_decay=0.0, background_decay=1.0)(logits, {"tags": torch.tensor([[1.0, 0.0]])})
    assert loss.item() == pytest.approx(-math.log(0.2) - math.log(0.4), rel=1e-5)


def test_expansion_gradcheck():
    logits = torch.randn(2, 3, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    logits.requires_grad_(True)
    tags = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 1.0]], dtype=torch.float64)
    loss = ExpansionLoss(present_decay=0.8, absent_decay=0.5, background_decay=0.9)
    assert torch.autograd.gradcheck(lambda x: loss(x, {"tags": tags}), (logits,))


def test_expansion_bad_inputs():
    logits = torch.zeros(2, 3, 4, 4)
    with pytest.raises(ValueError, match=r"tags 'tags' of shape \(2, 4\) do not match"):
        ExpansionLoss()(logits, {"tags": torch.ones(2, 4)})
    with pytest.raises(ValueError, match="must be 0 or 1"):
        ExpansionLoss()(logits, {"tags": torch.full((2, 3), 0.5)})
    with pytest.raises(KeyError, match="'tags'"):
        ExpansionLoss()(logits, {})
    with pytest.raises(ValueError, match="present_decay must be a number in"):
        ExpansionLoss(present_decay=2.0)
    with pytest.raises(ValueError, match="background_index 5 is out of range"):
        ExpansionLoss(background_index=5)(logits, {"tags": torch.ones(2, 3)})


def test_expansion_reduction_none_keeps_one_value_per_image():
    logits = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(4))
    tags = torch.ones(3, 2)
    per_image = ExpansionLoss(reduction="none")(logits, {"tags": tags})
    assert per_image.shape == (3,)
    torch.testing.assert_close(per_image.mean(), ExpansionLoss()(logits, {"tags": tags}))


def test_seeding_is_partial_ce_on_the_cues():
    probs = torch.tensor([[0.25, 0.5], [0.75, 0.5]])
    logits = torch.log(probs).reshape(1, 2, 1, 2)
    cues = torch.tensor([[[[1, -1]]]])
    loss = PartialCrossEntropyLoss(key="cues")(logits, {"cues": cues})
    assert loss.item() == pytest.approx(-math.log(0.75), rel=1e-6)


def brute_force_mean_field(probs, image, iterations, w1, s_xy, s_i, w2, s_g):
    """Exact mean field with an N x N kernel matrix (one image, 2D)."""
    k, h, w = probs.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    pos = torch.stack([ys.flatten(), xs.flatten()], 1)
    inten = image.reshape(image.shape[0], -1).T.double()
    d_pos = torch.cdist(pos, pos) ** 2
    d_int = torch.cdist(inten, inten) ** 2
    kernel = w1 * torch.exp(-d_pos / (2 * s_xy**2) - d_int / (2 * s_i**2)) + w2 * torch.exp(-d_pos / (2 * s_g**2))
    kernel.fill_diagonal_(0.0)  # j != i
    unary = torch.log(probs.reshape(k, -1).T.double())
    q = probs.reshape(k, -1).T.double()
    for _ in range(iterations):
        q = torch.softmax(unary + kernel @ q, 1)
    return q.T.reshape(k, h, w)


def test_mean_field_matches_a_brute_force_dense_crf():
    gen = torch.Generator().manual_seed(5)
    image = torch.zeros(1, 1, 8, 8)
    image[..., 4:] = 1.0  # two flat halves
    image += 0.05 * torch.randn(image.shape, generator=gen)
    probs = torch.softmax(2 * torch.randn(1, 3, 8, 8, generator=gen), 1)
    # weights small enough for mean field to be a contraction: with strong weights the iteration flips
    # labels and amplifies the lattice's error on the Gaussian sums (up to ~20 % on an 8 x 8 image)
    args = dict(iterations=5, bilateral_weight=0.1, bilateral_sigma_xy=3.0, bilateral_sigma_intensity=0.3)
    args.update(spatial_weight=0.1, spatial_sigma_xy=1.5)
    q = dense_crf_mean_field(probs, image, **args)
    exact = brute_force_mean_field(probs[0], image[0], 5, 0.1, 3.0, 0.3, 0.1, 1.5)
    # tolerance 0.04 on the probabilities (measured 0.025); the refined labels agree almost everywhere
    assert (q[0].double() - exact).abs().max() < 0.04
    assert (q[0].argmax(0) == exact.argmax(0)).float().mean() > 0.95
    # and the refinement moved the probabilities well beyond the tolerance
    assert (exact - probs[0].double()).abs().max() > 0.1


def test_mean_field_3d_and_normalised():
    probs = torch.softmax(torch.randn(2, 2, 5, 5, 3, generator=torch.Generator().manual_seed(6)), 1)
    q = dense_crf_mean_field(probs, torch.zeros(2, 1, 5, 5, 3), bilateral_sigma_xy=2.0)
    assert q.shape == probs.shape and not q.requires_grad
    torch.testing.assert_close(q.sum(1), torch.ones(2, 5, 5, 3))


def test_constrain_hand_value_and_gradient():
    gen = torch.Generator().manual_seed(7)
    logits = torch.randn(1, 3, 6, 6, dtype=torch.float64, generator=gen, requires_grad=True)
    image = torch.rand(1, 1, 6, 6, generator=gen)
    loss_fn = ConstrainLoss(iterations=3, bilateral_sigma_xy=3.0, bilateral_weight=1.0, spatial_weight=0.5)
    loss = loss_fn(logits, {"image": image})
    probs = torch.softmax(logits.detach(), 1)
    q = dense_crf_mean_field(probs, image, 3, 1.0, 3.0, 0.3, 0.5, 1.0)
    expected = (q * (q.log() - probs.log())).sum(1).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert loss.item() > 1e-3  # the refinement differs from the output
    loss.backward()
    # Q is a constant: d/dlogits Σ_c Q log(Q / S) = S - Q, averaged over the 36 voxels
    torch.testing.assert_close(logits.grad, (probs - q) / 36)


def test_constrain_kl_part_gradcheck():
    """The loss with Q fixed (as in training: no gradient through the CRF) passes gradcheck in float64."""
    gen = torch.Generator().manual_seed(8)
    logits = torch.randn(1, 2, 3, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    image = torch.rand(1, 1, 3, 3, generator=gen)
    q = dense_crf_mean_field(torch.softmax(logits.detach(), 1), image, 2, 1.0, 2.0, 0.3, 1.0, 1.0)
    loss_fn = ConstrainLoss(iterations=2, bilateral_sigma_xy=2.0, bilateral_weight=1.0, spatial_weight=1.0)
    analytic = torch.autograd.grad(loss_fn(logits, {"image": image}), logits)[0]

    def kl(x):
        log_s = torch.log_softmax(x, 1)
        return (q * (q.log() - log_s)).sum(1).mean()

    assert torch.autograd.gradcheck(kl, (logits,))
    torch.testing.assert_close(analytic, torch.autograd.grad(kl(logits), logits)[0])


def test_constrain_downsampled_and_3d():
    gen = torch.Generator().manual_seed(9)
    logits = torch.randn(2, 2, 8, 8, 4, generator=gen, requires_grad=True)
    loss = ConstrainLoss(bilateral_sigma_xy=4.0, scale_factor=0.5)(logits, {"image": torch.rand(2, 1, 8, 8, 4)})
    loss.backward()
    assert torch.isfinite(loss) and loss.item() > 0 and logits.grad.abs().sum() > 0


def test_constrain_bad_inputs():
    logits = torch.zeros(1, 2, 4, 4)
    with pytest.raises(ValueError, match="iterations must be an integer >= 1"):
        ConstrainLoss(iterations=0)
    with pytest.raises(ValueError, match="both 0"):
        ConstrainLoss(bilateral_weight=0, spatial_weight=0)
    with pytest.raises(ValueError, match=r"scale_factor must be in \(0, 1\]"):
        ConstrainLoss(scale_factor=2.0)
    with pytest.raises(ValueError, match="does not match the logits"):
        ConstrainLoss()(logits, {"image": torch.zeros(1, 1, 5, 5)})
    with pytest.raises(KeyError, match="'image'"):
        ConstrainLoss()(logits, {})


def test_tag_classification_loss_value_and_gradient():
    maps = torch.zeros(2, 3, 4, 4)
    maps[0, 1] = 2.0  # mean 2 for class 1 of image 0
    tags = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    loss = TagClassificationLoss(reduction="none")(maps, {"tags": tags})
    log2 = math.log(2)
    expected0 = (log2 + math.log(1 + math.exp(-2.0)) + log2) / 3
    assert loss.tolist() == pytest.approx([expected0, log2], rel=1e-5)
    x = torch.randn(1, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda m: TagClassificationLoss()(m, {"tags": torch.tensor([[1.0, 0.0]])}), (x,))
