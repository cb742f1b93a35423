"""What the box losses add to a training step of the acdc bundle's reference network, with ~1,000 segments per batch.

One training step (forward, loss, backward, AdamW step) of the bundle's 2D U-Net (its training config's
``network_def``) on a batch of 16 images of 128² with 4 classes, for five losses side by side in one run:
full supervision (MONAI ``DiceCELoss``, the reference), the masked cross-entropy baseline on the boxes, the
box prior (tightness, emptiness and box size through the log-barrier,
:class:`wss_monai.losses.BoxConstraintLoss`), and the box prior with the best ACDC setting of
``docs/boxes.md`` (the lower size bound in log form, the MYO's on its box less the LV's), with and without
the bounds on the boxes' inscribed ellipses. The variants
alternate round by round (the order rotated each round); each gets its median step time and its ratio to
full supervision, the median over rounds of the ratio within a round (target for the prior: ≤ 1.05), plus
the loss alone (forward + backward on fixed logits) and that cost as a share of the reference step. Each is
measured twice: in wall-clock time (``_timing``'s helpers), and in CPU time of this process
(``time.process_time``, one thread), which other programs on a shared machine do not inflate.

Boxes: per image, one box of each foreground class, 40-70 pixels a side at random places, so that
with the default width w = 5 the batch holds about 1,000 tightness segments (the exact count is printed).

    OMP_NUM_THREADS=1 python scripts/benchmarks/box_loss_overhead.py --rounds 5 --steps 2 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from monai.losses import DiceCELoss

from wss_monai.losses import BoxConstraintLoss, CompositeLoss, PartialCrossEntropyLoss, TargetLoss
from wss_monai.transforms import BoxTarget, box_segments, boxes_from_ids, boxes_to_ids

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import loss_only_medians, paired_ratios, reference_network, time_variants  # noqa: E402


def make_batch(batch_size: int, size: int, num_classes: int, seed: int = 0) -> dict:
    """Images, a full label, the box-id maps ``(B, C - 1, H, W)`` and the masked-CE target of random boxes."""
    rng = np.random.default_rng(seed)
    ids, targets, labels = [], [], []
    for _ in range(batch_size):
        boxes = []
        for cls in range(1, num_classes):
            side = rng.integers(40, 71, 2)
            lo = rng.integers(0, size - side + 1)
            boxes.append([cls, *lo, *(lo + side)])
        box_ids = boxes_to_ids(np.asarray(boxes), (size, size), num_classes)
        ids.append(box_ids)
        targets.append(BoxTarget()(box_ids))
        labels.append(np.where(targets[-1] < 0, 0, targets[-1]))
    return {
        "image": torch.randn(batch_size, 1, size, size, generator=torch.Generator().manual_seed(seed)),
        "label": torch.as_tensor(np.stack(labels)).long(),
        "box_ids": torch.as_tensor(np.stack(ids)),
        "box_target": torch.as_tensor(np.stack(targets)).long(),
    }


def ring_prior(width: int, ellipses: bool = False) -> BoxConstraintLoss:
    """The ACDC settings of docs/boxes.md: the log-form lower bound, LV 0.7, MYO 0.7 of its box less the LV's,
    and with ``ellipses`` the bounds on the boxes' inscribed ellipses (the best setting)."""
    extra = {"ellipse_epsilon": [0.0, 0.91, 0.84], "ellipse_classes": [[1], [2, 3], [3]]} if ellipses else {}
    return BoxConstraintLoss(
        width=width, epsilon=[0.5, 0.7, 0.7], log_size=True, size_less_classes=[[], [3], []], **extra
    )


def cpu_times(network, optimizer, losses: dict, batch: dict, rounds: int, steps: int) -> dict[str, list[float]]:
    """CPU seconds per training step of each loss, one value per round, the order rotated each round."""
    names = list(losses)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start = time.process_time()
            for _ in range(steps):
                optimizer.zero_grad(set_to_none=True)
                losses[name](network(batch["image"]), batch)["loss"].backward()
                optimizer.step()
            times[name].append((time.process_time() - start) / steps)
    return times


def cpu_loss_only(network, losses: dict, batch: dict, repeats: int = 10) -> dict[str, float]:
    """Median CPU seconds of each loss's forward + backward on the network's logits of the batch."""
    with torch.no_grad():
        logits = network(batch["image"])
    out = {}
    for name, loss in losses.items():
        samples = []
        for _ in range(repeats):
            x = logits.detach().requires_grad_()
            start = time.process_time()
            loss(x, batch)["loss"].backward()
            samples.append(time.process_time() - start)
        out[name] = statistics.median(samples)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--width", type=int, default=5, help="segment width w")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    num_classes = 4
    network = reference_network("acdc")
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-5)
    batch = make_batch(args.batch_size, args.size, num_classes)
    table = boxes_from_ids(batch["box_ids"])
    segments = box_segments(table.lo, table.hi, args.width).box.numel()
    losses = {
        "full (DiceCE)": CompositeLoss({"dice_ce": TargetLoss(DiceCELoss(to_onehot_y=True, softmax=True))}),
        "masked CE": CompositeLoss({"masked_ce": PartialCrossEntropyLoss(key="box_target")}),
        "box prior": CompositeLoss({"boxes": {"loss": BoxConstraintLoss(width=args.width), "weight": 1e-4}}),
        "box prior, log form, ring bound": CompositeLoss({"boxes": {"loss": ring_prior(args.width), "weight": 1e-4}}),
        "box prior, log form, ring bound, ellipses": CompositeLoss(
            {"boxes": {"loss": ring_prior(args.width, ellipses=True), "weight": 1e-4}}
        ),
    }
    times = time_variants(network, optimizer, losses, batch, args.rounds, args.steps)
    loss_only = loss_only_medians(network, losses, batch, args.rounds, args.steps)
    cpu = cpu_times(network, optimizer, losses, batch, args.rounds, args.steps)
    cpu_loss = cpu_loss_only(network, losses, batch)
    reference = "full (DiceCE)"
    base, cpu_base = statistics.median(times[reference]), statistics.median(cpu[reference])
    ratios, cpu_ratios = paired_ratios(times, reference), paired_ratios(cpu, reference)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {args.rounds} rounds x {args.steps} steps "
        f"per variant, batch {args.batch_size} x {args.size}², {table.row.numel()} boxes, {segments} segments "
        f"(w = {args.width}) per batch"
    )
    print("| loss | clock | ms / step (median) | step vs full (paired) | loss fwd+bwd (ms) | loss cost / full step |")
    print("|---|---|---|---|---|---|")
    for name in losses:
        for clock, steps, ratio, alone, ref in (
            ("wall", times, ratios, loss_only, base),
            ("CPU", cpu, cpu_ratios, cpu_loss, cpu_base),
        ):
            print(
                f"| {name} | {clock} | {1000 * statistics.median(steps[name]):.1f} | {ratio[name]:.3f} "
                f"| {1000 * alone[name]:.2f} | {alone[name] / ref:.2%} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
