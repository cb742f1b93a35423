"""How close the permutohedral lattice's filtering is to the exact Gaussian sums, and to the exact dense CRF loss.

Part 1: random point sets in d = 1..6 feature dimensions, from dense (400 points within 1 σ) to sparse
(200 points over 30 σ): the ratio of the lattice's ``W v`` to the exact ``Σ_j exp(-|f_i - f_j|² / 2) v_j``
(mean ± standard deviation over the points).

Part 2: the dense CRF loss and its gradient on small real-like images (smooth random fields with two
intensity regions), 2D and 3D, against the N × N computation: the loss ratio and the cosine between
the gradients.

    python scripts/benchmarks/lattice_accuracy.py
"""

from __future__ import annotations

import argparse

import torch

from wss_monai.filtering import PermutohedralLattice
from wss_monai.losses import DenseCRFLoss, bilateral_features

CLOUDS = {"dense (400 in 1 σ)": (400, 1.0), "medium (500 in 4 σ)": (500, 4.0), "sparse (200 in 30 σ)": (200, 30.0)}


def cloud_ratios(dims: int, count: int, spread: float, seed: int) -> tuple[float, float]:
    generator = torch.Generator().manual_seed(seed)
    features = torch.rand(count, dims, generator=generator, dtype=torch.float64) * spread
    values = torch.rand(count, 1, generator=generator, dtype=torch.float64)
    exact = torch.exp(-0.5 * torch.cdist(features, features) ** 2) @ values
    ratio = PermutohedralLattice(features).filter(values) / exact
    return ratio.mean().item(), ratio.std().item()


def loss_agreement(shape, spacing, sigma_xy: float, sigma_i: float, seed: int) -> tuple[float, float]:
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(1, 1, *shape, generator=generator)
    image[:, :, : shape[0] // 2] += 2.0
    logits = torch.randn(1, 4, *shape, generator=generator, dtype=torch.float64, requires_grad=True)
    approx = DenseCRFLoss(sigma_xy=sigma_xy, sigma_intensity=sigma_i, spacing=spacing)(logits, {"image": image})
    features = bilateral_features(image, sigma_xy, sigma_i, spacing).double()
    kernel = torch.exp(-0.5 * torch.cdist(features, features) ** 2)
    probs = torch.softmax(logits[0], 0).flatten(1)
    exact = (kernel.sum() - (probs @ kernel * probs).sum()) / probs.shape[1]
    (g_approx,) = torch.autograd.grad(approx, logits)
    (g_exact,) = torch.autograd.grad(exact, logits)
    cosine = torch.nn.functional.cosine_similarity(g_approx.flatten(), g_exact.flatten(), dim=0)
    return (approx / exact).item(), cosine.item()


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    lines = ["| d | " + " | ".join(CLOUDS) + " |", "|---|" + "---|" * len(CLOUDS)]
    for dims in range(1, 7):
        cells = [cloud_ratios(dims, n, spread, args.seed + dims) for n, spread in CLOUDS.values()]
        lines.append(f"| {dims} | " + " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in cells) + " |")
    lines += ["", "| image | σ_xy | σ_I | loss / exact | gradient cosine |", "|---|---|---|---|---|"]
    for shape, spacing in (((24, 24), None), ((12, 12, 6), (1.0, 1.0, 3.0))):
        for sigma_xy, sigma_i in ((3.0, 0.5), (8.0, 0.5), (8.0, 2.0)):
            ratio, cosine = loss_agreement(shape, spacing, sigma_xy, sigma_i, args.seed)
            name = "x".join(map(str, shape))
            lines.append(f"| {name} | {sigma_xy:g} | {sigma_i:g} | {ratio:.3f} | {cosine:.4f} |")
    text = "\n".join(lines)
    print(text)
    return text


if __name__ == "__main__":
    main()
