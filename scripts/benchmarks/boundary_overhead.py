"""What the boundary loss adds to a training step of the lesion bundles' reference network.

One training step (forward, loss, backward, AdamW step) of the isles bundle's 2D U-Net (5 input
channels, 2 classes) on a lesion-sized batch, with:

- ``GDL``: MONAI ``GeneralizedDiceLoss`` alone;
- ``GDL + BL (cached maps)``: plus :class:`wss_monai.losses.BoundaryLoss` reading signed distance
  maps precomputed once per volume (as the bundles do);
- ``GDL + BL (maps per batch)``: the same, but the maps computed from the batch's labels on every
  step (:class:`wss_monai.transforms.SignedDistanceMap` per image: what caching avoids);
- ``GDL + HausdorffDT``: MONAI ``HausdorffDTLoss`` (distance transforms of prediction and label
  on every step), the published comparison.

The variants alternate round by round in one run (the order rotated each round); the median step
time of each is reported with its ratio to GDL alone, the median over rounds of the ratio within a
round. Kervadec et al. (MIDL 2019) report 0.187 s/batch for GDL, 0.190 with
the boundary loss (+1.6 %) and 0.210 with the Hausdorff loss.

    python scripts/benchmarks/boundary_overhead.py --rounds 7 --steps 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
from monai.losses import GeneralizedDiceLoss, HausdorffDTLoss

from wss_monai.losses import BoundaryLoss, CompositeLoss, TargetLoss
from wss_monai.transforms import SignedDistanceMap

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import paired_ratios, reference_network, time_variants  # noqa: E402


def make_batch(batch_size: int, size: int, channels: int, seed: int = 0) -> dict:
    """Images and labels with a few small disc lesions per slice (~0.5 % of the pixels)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    label = np.zeros((batch_size, 1, size, size), np.int64)
    for b in range(batch_size):
        for _ in range(3):
            cy, cx = rng.integers(8, size - 8, 2)
            label[b, 0][(yy - cy) ** 2 + (xx - cx) ** 2 <= (size / 64) ** 2 * 4] = 1
    maps = SignedDistanceMap(num_classes=2, spatial_dims=2)
    dist = np.stack([maps(label[b]) for b in range(batch_size)])
    image = torch.from_numpy(rng.standard_normal((batch_size, channels, size, size)).astype(np.float32))
    return {"image": image, "label": torch.from_numpy(label), "dist_map": torch.as_tensor(dist, dtype=torch.float32)}


class PerBatchMaps(torch.nn.Module):
    """Boundary loss whose distance maps are computed from the batch's labels at every call."""

    def __init__(self) -> None:
        super().__init__()
        self.maps, self.loss = SignedDistanceMap(num_classes=2, spatial_dims=2), BoundaryLoss()

    def forward(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        label = batch["label"].cpu().numpy()
        dist = torch.as_tensor(np.stack([self.maps(label[b]) for b in range(label.shape[0])]), dtype=logits.dtype)
        return self.loss(logits, {"dist_map": dist})


def variants() -> dict[str, torch.nn.Module]:
    gdl = TargetLoss(GeneralizedDiceLoss(softmax=True, to_onehot_y=True))
    hddt = TargetLoss(HausdorffDTLoss(softmax=True, to_onehot_y=True))
    return {
        "GDL": CompositeLoss({"regional": gdl}),
        "GDL + BL (cached maps)": CompositeLoss({"regional": gdl, "boundary": {"loss": BoundaryLoss(), "weight": 0.5}}),
        "GDL + BL (maps per batch)": CompositeLoss(
            {"regional": gdl, "boundary": {"loss": PerBatchMaps(), "weight": 0.5}}
        ),
        "GDL + HausdorffDT": CompositeLoss({"regional": gdl, "boundary": {"loss": hddt, "weight": 0.5}}),
    }


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--size", type=int, default=256, help="in-plane size (the bundles' spatial_size)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    network = reference_network("isles")
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-4)
    batch = make_batch(args.batch_size, args.size, channels=network.model[0].conv.unit0.conv.in_channels)
    losses = variants()
    times = time_variants(network, optimizer, losses, batch, args.rounds, args.steps)
    ratios = paired_ratios(times, "GDL")
    lines = [
        f"batch {args.batch_size} x {args.size}x{args.size}, isles bundle U-Net, {args.threads} threads, "
        f"{args.rounds} rounds x {args.steps} steps, median s/step",
        "",
        "| loss | s/step (median) | ratio to GDL (paired) |",
        "|---|---|---|",
    ]
    for name, values in times.items():
        lines.append(f"| {name} | {statistics.median(values):.4f} | {ratios[name]:.3f} |")
    text = "\n".join(lines)
    print(text)
    return text


if __name__ == "__main__":
    main()
