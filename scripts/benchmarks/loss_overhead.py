"""What the size constraint adds to a training step of the acdc bundle's reference network.

One training step (forward, loss, backward, AdamW step) of the bundle's 2D U-Net with partial
cross-entropy alone, then with the size constraint added (quadratic penalty, log-barrier at t = 5
and at t = 1e9), measured side by side in one run: the variants alternate round by round and the
median step time of each is reported with its ratio to partial CE alone. Also reported: the
constraint loss alone (forward + backward on fixed logits) as a share of the pCE step.

    python scripts/benchmarks/loss_overhead.py --rounds 7 --steps 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

from wss_monai.losses import CompositeLoss, InequalityConstraintLoss, PartialCrossEntropyLoss

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import loss_only_medians, random_scribbles, reference_network, time_variants  # noqa: E402


def make_batch(batch_size: int, size: int, num_classes: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    scribble = random_scribbles(batch_size, size, num_classes, g)
    lower = torch.rand(batch_size, num_classes, generator=g) * size * size / (2 * num_classes)
    bounds = torch.stack([lower, lower * 1.2], -1)
    return {"image": torch.randn(batch_size, 1, size, size, generator=g), "scribble": scribble, "bounds": bounds}


def variants(num_classes: int) -> dict[str, torch.nn.Module]:
    every = list(range(num_classes))

    def with_size(**kw):
        return CompositeLoss(
            {
                "pce": PartialCrossEntropyLoss(),
                "size": {"loss": InequalityConstraintLoss(classes=every, **kw), "weight": 1e-2},
            }
        )

    return {
        "pCE": CompositeLoss({"pce": PartialCrossEntropyLoss()}),
        "pCE + size penalty": with_size(mode="penalty", normalize=True),
        "pCE + size log-barrier t=5": with_size(mode="log_barrier", t=5.0),
        "pCE + size log-barrier t=1e9": with_size(mode="log_barrier", t=1e9),
    }


def run_setting(batch_size: int, size: int, rounds: int, steps: int, num_classes: int = 4) -> list[str]:
    torch.manual_seed(0)
    network = reference_network("acdc")
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-4)
    batch = make_batch(batch_size, size, num_classes)
    losses = variants(num_classes)
    constraints = batch_size * num_classes * 2
    times = time_variants(network, optimizer, losses, batch, rounds, steps)
    loss_only = loss_only_medians(network, losses, batch, rounds, steps)
    base = statistics.median(times["pCE"])
    rows = []
    for name in losses:
        step = statistics.median(times[name])
        extra = loss_only[name] - loss_only["pCE"]
        rows.append(
            f"| {batch_size} × {size}² | {constraints if name != 'pCE' else 0} | {name} | {1000 * step:.1f} "
            f"| {step / base:.3f} | {1000 * loss_only[name]:.2f} | {extra / base:+.2%} |"
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} threads, {args.rounds} rounds x {args.steps} steps per variant")
    print("| batch | constraints | loss | ms / step | step vs pCE | loss fwd+bwd (ms) | constraint cost / pCE step |")
    print("|---|---|---|---|---|---|---|")
    for batch_size, size in ((16, 128), (128, 64)):
        for row in run_setting(batch_size, size, args.rounds, args.steps):
            print(row, flush=True)


if __name__ == "__main__":
    main()
