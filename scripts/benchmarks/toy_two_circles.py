"""The two-circles toy benchmark of the log-barrier paper: every method, one seed, one table.

Draws the toy set once (``<output_dir>/data``: 1,000 training and 100 validation images), then
trains each method with :func:`wss_monai.experiments.run_two_circles` at the same seed, network and
budget, one after another, and prints a markdown table (also written to ``<output_dir>/table.md``
and ``results.json``). A method whose ``<output_dir>/<method>/summary.json`` holds the same settings
is reused, not retrained: delete its folder to redo it.

    OMP_NUM_THREADS=2 python scripts/benchmarks/toy_two_circles.py --output_dir runs/toy_two_circles

The defaults are the settings of ``docs/two_circles.md`` (128², radius 25 px, 25 epochs, batch 8,
Adam lr 2e-3, UNet channels 8-16-32, centroid weight ×10); ``--methods`` runs a subset, so two
invocations on different methods can share the cores and a third prints the whole table.

Published (Kervadec et al., EUSIPCO 2022, 256², ENet, 50 epochs of batch 1): log-barrier 0.945,
ReLU Lagrangian 0.798, penalty 0.712, standard Lagrangian 0.005, full supervision 0.998.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path

import torch

from wss_monai.data.toy_circles import load_two_circles, write_two_circles
from wss_monai.experiments.two_circles import TWO_CIRCLES_METHODS, run_two_circles
from wss_monai.utils.logging import setup_logging

PUBLISHED_DICE = {
    "full": 0.998,
    "log_barrier": 0.945,
    "relu_lagrangian": 0.798,
    "penalty": 0.712,
    "lagrangian": 0.005,
}
LABELS = {
    "full": "full supervision (CE)",
    "log_barrier": "log-barrier extension",
    "relu_lagrangian": "ReLU Lagrangian",
    "penalty": "quadratic penalty",
    "lagrangian": "standard Lagrangian",
    "proposals": "Lagrangian proposals (size only)",
}
DEFAULT_ORDER = ["log_barrier", "penalty", "relu_lagrangian", "lagrangian", "proposals", "full"]
logger = logging.getLogger("benchmark.toy_two_circles")


def prepare_data(
    folder: Path, num_train: int, num_val: int, size: int, seed: int, radius_range: tuple[float, float]
) -> Path:
    """Writes the toy set unless ``folder`` already holds one with these counts, size and radii."""
    paths = [folder / "train.npz", folder / "val.npz"]
    if all(p.is_file() for p in paths):
        train, val = (load_two_circles(p) for p in paths)
        same = (len(train.images), len(val.images), train.images.shape[2:]) == (num_train, num_val, (size, size))
        radii = list(train.radii) + list(val.radii)
        if same and radius_range[0] <= min(radii) and max(radii) <= radius_range[1]:
            return folder
        logger.info("the data in %s has other settings: redrawing it", folder)
    write_two_circles(folder, num_train=num_train, num_val=num_val, seed=seed, size=size, radius_range=radius_range)
    return folder


def format_table(results: dict[str, dict]) -> str:
    lines = [
        "| method | Dice mean ± std (last 10 epochs) | best Dice | satisfaction | stability | s/epoch "
        "| published Dice |",
        "|---|---|---|---|---|---|---|",
    ]
    for method, s in results.items():
        published = PUBLISHED_DICE.get(method)
        stability = "–" if math.isnan(s["stability"]) else f"{s['stability']:.3f}"
        lines.append(
            f"| {LABELS.get(method, method)} | {s['dice_mean']:.3f} ± {s['dice_std']:.3f} | {s['dice_best']:.3f} "
            f"| {s['satisfied']:.3f} | {stability} | {s['seconds_per_epoch']:.1f} "
            f"| {'–' if published is None else f'{published:.3f}'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output_dir", default="runs/toy_two_circles")
    parser.add_argument("--methods", nargs="+", default=DEFAULT_ORDER, choices=TWO_CIRCLES_METHODS)
    parser.add_argument("--size", type=int, default=128, help="image side (published 256)")
    parser.add_argument(
        "--radius_range", type=float, nargs=2, default=[25.0, 25.0], help="disc radius in px (published: 25)"
    )
    parser.add_argument("--num_train", type=int, default=1000)
    parser.add_argument("--num_val", type=int, default=100)
    parser.add_argument("--max_epochs", type=int, default=25)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--learning_rate", type=float, default=2e-3)
    parser.add_argument("--channels", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--weight", type=float, default=1e-2)
    parser.add_argument("--centroid_scale", type=float, default=10.0)
    parser.add_argument("--t0", type=float, default=1.0)
    parser.add_argument("--mu", type=float, default=1.1)
    parser.add_argument("--dual_step", type=float, default=1.0)
    parser.add_argument("--proposal_lr", type=float, default=5e-4, help="Pathak: 5e-5 (with 500 iterations)")
    parser.add_argument("--proposal_max_iter", type=int, default=50, help="Pathak: 500")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num_threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    setup_logging()
    if args.num_threads:
        torch.set_num_threads(args.num_threads)

    out = Path(args.output_dir)
    radius_range = (args.radius_range[0], args.radius_range[1])
    data = prepare_data(out / "data", args.num_train, args.num_val, args.size, args.seed, radius_range)
    settings = {
        "max_epochs": args.max_epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "channels": args.channels,
        "strides": [2] * (len(args.channels) - 1),
        "weight": args.weight,
        "centroid_scale": args.centroid_scale,
        "t0": args.t0,
        "mu": args.mu,
        "dual_step": args.dual_step,
        "proposal_lr": args.proposal_lr,
        "proposal_max_iter": args.proposal_max_iter,
        "seed": args.seed,
    }
    results = {}
    for method in args.methods:
        folder = out / method
        summary_file = folder / "summary.json"
        if summary_file.is_file():
            saved = json.loads(summary_file.read_text())
            same = all(saved["settings"].get(k) == v for k, v in settings.items())
            same = same and saved["settings"]["num_train"] == args.num_train
            if same and saved["settings"]["image_size"] == [args.size, args.size]:
                logger.info("reusing %s", summary_file)
                results[method] = saved
                continue
        results[method] = run_two_circles(method, folder, data, **settings)
        print(f"{method}: Dice {results[method]['dice_mean']:.3f}", file=sys.stderr, flush=True)

    table = format_table(results)
    header = (
        f"Two circles, {args.num_train} train / {args.num_val} val images of {args.size}², radius "
        f"{args.radius_range[0]:g}-{args.radius_range[1]:g} px, "
        f"{args.max_epochs} epochs, batch {args.batch_size}, Adam lr {args.learning_rate}, "
        f"UNet channels {args.channels}, seed {args.seed}"
    )
    (out / "table.md").write_text(header + "\n\n" + table + "\n")
    (out / "results.json").write_text(
        json.dumps({m: {k: v for k, v in s.items() if k != "history"} for m, s in results.items()}, indent=2)
    )
    print(header + "\n\n" + table)
    return results


if __name__ == "__main__":
    main()
