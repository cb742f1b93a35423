"""Cost of the logged Potts energy (a watched term of weight 0) next to a partial-CE training step.

The acdc U-Net (batch 16 × 1 × 128², K = 4) takes a partial-CE step (forward, backward, Adam update),
alternately without and with :class:`wss_monai.losses.PottsEnergy` of its output, in one
process; the ratio is the median step time with the energy over the median without it.

    python scripts/benchmarks/watched_term_cost.py --steps 12
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from monai.networks.nets import UNet

from wss_monai.losses import PartialCrossEntropyLoss, PottsEnergy


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12, help="pairs of steps; the first two are warm-up")
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    network = UNet(2, 1, 4, (16, 32, 64, 128, 256), (2, 2, 2, 2), num_res_units=2)
    optimizer = torch.optim.Adam(network.parameters())
    image = torch.randn(16, 1, args.size, args.size)
    batch = {"image": image, "scribble": torch.randint(-1, 4, (16, 1, args.size, args.size))}
    pce, potts = PartialCrossEntropyLoss(key="scribble"), PottsEnergy(image_key="image")

    def step(watch: bool) -> float:
        start = time.perf_counter()
        optimizer.zero_grad()
        logits = network(image)
        pce(logits, batch).mean().backward()
        optimizer.step()
        if watch:
            potts(logits.detach(), batch)
        return time.perf_counter() - start

    times = {False: [], True: []}
    for _ in range(args.steps):
        for watch in (False, True):
            times[watch].append(step(watch))
    plain, watched = (statistics.median(times[w][2:]) for w in (False, True))
    print("| step | s (median) | ratio |\n|---|---|---|")
    print(f"| partial CE | {plain:.3f} | 1.00 |")
    print(f"| partial CE + logged Potts energy | {watched:.3f} | {watched / plain:.2f} |")
    return watched / plain


if __name__ == "__main__":
    main()
