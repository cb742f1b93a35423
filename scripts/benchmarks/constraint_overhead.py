"""What 10,000+ inequality constraints per batch add to a training step of the acdc bundle's reference network.

One training step (forward, loss, backward, AdamW step) of the bundle's 2D U-Net (its training config's
``network_def``) on a batch of 16 images of 128² with partial cross-entropy alone, then with an
``InequalityConstraintLoss`` added in each mode (penalty, log-barrier, standard and ReLU Lagrangian).
The variants alternate round by round in one run (the order rotated each round); the median step time
of each is reported with its ratio to pCE alone, the median over rounds of the ratio within a round
(target: ≤ 1.05).

Constraint count: ``function="fractional"`` on ``M`` fixed maps ``f_m`` (e.g. intensity bands or
spatial weightings), ``Σ_p f_m(p) S_k(p) / Σ_p S_k(p)`` for every class k (background included), a
lower and an upper bound each: ``B · C · M · 2 = 16 · 4 · 80 · 2 = 10,240`` constraints per batch with the
default ``--maps 80``. The Lagrangian variants also run what training runs with them: the value hook
of :class:`wss_monai.handlers.DualAscentHandler` that records the constraint values of every batch
(those the loss's forward computed, accumulated per constraint id); their multipliers start non-zero.

    OMP_NUM_THREADS=1 python scripts/benchmarks/constraint_overhead.py --rounds 7 --steps 3 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

from wss_monai.handlers import DualVariables, hook_constraint_values
from wss_monai.losses import CONSTRAINT_MODES, CompositeLoss, InequalityConstraintLoss, PartialCrossEntropyLoss
from wss_monai.losses.inequality import fractional_moment

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import (  # noqa: E402
    loss_only_medians,
    paired_ratios,
    random_scribbles,
    reference_network,
    time_variants,
)


def make_batch(batch_size: int, size: int, num_classes: int, maps: torch.Tensor, seed: int = 0) -> dict:
    """Images, 1 % scribbles, and bounds ``(B, C, M, 2)``: a random reference's moments ± 5 %."""
    g = torch.Generator().manual_seed(seed)
    scribble = random_scribbles(batch_size, size, num_classes, g)
    reference = torch.softmax(4 * torch.randn(batch_size, num_classes, size, size, generator=g), 1)
    values = fractional_moment(reference, maps[None])  # (B, C, M)
    bounds = torch.stack([values * 0.95, values * 1.05], -1)
    return {
        "image": torch.randn(batch_size, 1, size, size, generator=g),
        "scribble": scribble,
        "bounds": bounds,
        "volume_index": torch.arange(batch_size),
        "slice_index": torch.zeros(batch_size, dtype=torch.long),
    }


def variants(num_classes: int, maps: torch.Tensor, batch: dict) -> tuple[dict[str, torch.nn.Module], list]:
    losses = {"pCE": CompositeLoss({"pce": PartialCrossEntropyLoss()})}
    hooks = []
    for mode in CONSTRAINT_MODES:
        term = InequalityConstraintLoss(
            function="fractional", mode=mode, classes=list(range(num_classes)), weight_map=maps
        )
        if mode in ("lagrangian", "relu_lagrangian"):
            # as in training: the dual-ascent hook records every batch; start from non-zero multipliers
            with torch.no_grad():
                z, ids = term.constraint_values(
                    torch.randn(batch["image"].shape[0], num_classes, *maps.shape[1:]), batch
                )
            duals = DualVariables(mode)
            term.dual_variables = duals
            duals.accumulate(z.abs() + 1, ids)
            duals.step(0.1)
            hooks.append(hook_constraint_values(term, duals.accumulate))
        losses[f"pCE + {mode}"] = CompositeLoss({"pce": PartialCrossEntropyLoss(), "c": {"loss": term, "weight": 1e-3}})
    return losses, hooks


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--maps", type=int, default=80, help="fractional-moment maps M per class")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    num_classes = 4
    network = reference_network("acdc")
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-5)
    maps = torch.rand(args.maps, args.size, args.size, generator=torch.Generator().manual_seed(1))
    batch = make_batch(args.batch_size, args.size, num_classes, maps)
    losses, _ = variants(num_classes, maps, batch)
    constraints = args.batch_size * num_classes * args.maps * 2
    times = time_variants(network, optimizer, losses, batch, args.rounds, args.steps)
    loss_only = loss_only_medians(network, losses, batch, args.rounds, args.steps)
    base = statistics.median(times["pCE"])
    ratios = paired_ratios(times, "pCE")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {args.rounds} rounds x {args.steps} steps "
        f"per variant, batch {args.batch_size} x {args.size}², {constraints:,} constraints per batch "
        f"({args.batch_size} images x {num_classes} classes x {args.maps} moments x 2 sides)"
    )
    print(
        "| loss | constraints / batch | ms / step (median) | step vs pCE (paired) | loss fwd+bwd (ms) "
        "| loss cost / pCE step |"
    )
    print("|---|---|---|---|---|---|")
    for name in losses:
        step = statistics.median(times[name])
        extra = loss_only[name] - loss_only["pCE"]
        print(
            f"| {name} | {constraints if name != 'pCE' else 0:,} | {1000 * step:.1f} | {ratios[name]:.3f} "
            f"| {1000 * loss_only[name]:.2f} | {extra / base:+.2%} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
