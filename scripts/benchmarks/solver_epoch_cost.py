"""Seconds per training epoch of ADM and the robust trust region, as a ratio to partial CE, in one run.

Each method trains ``--epochs`` epochs plus one (the last carries the validation and is left out)
through ``python -m monai.bundle run training`` on the real ACDC scribbles at the benchmark budget
(128², batch 16, every training slice with a scribble each epoch). The trust region runs its stage A
at the start of epoch 1 and every ``tr_interval`` epochs after, so with ``--epochs`` equal to
``tr_interval`` (5 by default) the mean epoch carries exactly one stage A: its cost amortised as
in a long run. ADM solves every batch's proposals in its solver processes. The methods alternate
round by round (the order rotated each round), and each ratio is the median over rounds of the
ratio within a round, so a change of machine load between rounds cancels out.

    OMP_NUM_THREADS=2 python scripts/benchmarks/solver_epoch_cost.py --dataset_dir ../shared/data/acdc \
        --output_dir runs/bench_epoch_cost --rounds 2
"""

from __future__ import annotations

import argparse
import logging
import re
import shutil
import statistics
from pathlib import Path

from acdc_scribbles import METHOD_OVERRIDES as SCRIBBLE_OVERRIDES
from acdc_scribbles import METHODS as SCRIBBLE_METHODS
from acdc_scribbles import slug

from wss_monai.bundle import bundle_configs
from wss_monai.utils.bundle_runs import bundle_command, run_logged

ROOT = Path(__file__).resolve().parents[2]
SCRIBBLES = "configs/supervision/scribble_files.yaml"
AFTER_DENSE_CRF = (
    "trust region after dense CRF",
    "trust region after dense CRF, partial CE kept, b/a 1",
    "trust region beside dense CRF, partial CE kept, b/a 1",
)
METHODS = {
    "pCE": [SCRIBBLES],
    "pCE + ADM": [SCRIBBLES, "configs/regularisers/adm.yaml"],
    "pCE + trust region": [SCRIBBLES, "configs/regularisers/trust_region.yaml"],
    "pCE + trust region, dense CRF": [SCRIBBLES, "configs/regularisers/trust_region.yaml"],
    "dense CRF": [SCRIBBLES, "configs/regularisers/dense_crf.yaml"],
    # the trust-region settings of docs/solvers.md that start from dense-CRF gradient descent, as the accuracy
    # benchmark runs them (time them with --epochs 25: their whole run)
    **{name: SCRIBBLE_METHODS[name] for name in AFTER_DENSE_CRF},
}
METHOD_OVERRIDES = {
    "pCE + trust region, dense CRF": {"tr_solver": "dense_crf"},  # stage A by mean field
    **{name: SCRIBBLE_OVERRIDES.get(name, {}) for name in AFTER_DENSE_CRF},
}
EPOCH_TIME = re.compile(r"WeakSupervisionTrainer: Epoch\[(\d+)\] Complete\. Time taken: (\d+):(\d+):([\d.]+)")
logger = logging.getLogger("benchmark.solver_epoch_cost")


def epoch_times(log: str) -> list[float]:
    """Training epoch wall times in seconds, in epoch order, from a run's log.

    Example:
        >>> epoch_times("... WeakSupervisionTrainer: Epoch[1] Complete. Time taken: 00:01:02.500")
        [62.5]
    """
    return [int(h) * 3600 + int(m) * 60 + float(s) for _, h, m, s in EPOCH_TIME.findall(log)]


def mean_epoch(name: str, run: Path, args: argparse.Namespace) -> float:
    """Trains ``name`` for ``args.epochs + 1`` epochs in ``run`` (replaced) and returns its mean epoch time."""
    shutil.rmtree(run, ignore_errors=True)
    overrides = {
        "dataset_dir": Path(args.dataset_dir).resolve(),
        "output_dir": run,
        "seed": 0,
        "num_validation": 15,
        "num_test": 20,
        "spatial_size": 128,
        "batch_size": 16,
        "learning_rate": 0.002,
        "max_epochs": args.epochs + 1,
        "val_interval": args.epochs + 1,
        **METHOD_OVERRIDES.get(name, {}),
    }
    configs = bundle_configs("acdc", *(ROOT / c for c in METHODS[name]))
    run_logged(bundle_command("training", configs, overrides), run / "log.txt", cwd=ROOT)
    times = epoch_times((run / "log.txt").read_text())[: args.epochs]
    if len(times) < args.epochs:
        raise RuntimeError(f"{run / 'log.txt'} holds {len(times)} epoch times, expected {args.epochs}")
    return statistics.mean(times)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_dir", required=True)
    parser.add_argument("--output_dir", default="runs/bench_epoch_cost")
    parser.add_argument("--epochs", type=int, default=5, help="epochs timed per run (tr_interval: one stage A)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--methods", nargs="+", default=list(METHODS)[:3], choices=list(METHODS),
                        help="pCE is always timed: the ratios are to it")  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    names = ["pCE"] + [name for name in args.methods if name != "pCE"]
    seconds: dict[str, list[float]] = {name: [] for name in names}
    ratios: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        this_round = {name: mean_epoch(name, Path(args.output_dir) / f"{slug(name)}_{r}", args) for name in order}
        for name in names:
            seconds[name].append(this_round[name])
            ratios[name].append(this_round[name] / this_round["pCE"])
            logger.info("round %d: %s %.1f s per epoch", r, name, this_round[name])
    lines = ["| method | s per epoch (median) | ratio to pCE (median of rounds) |", "|---|---|---|"]
    for name in names:
        lines.append(f"| {name} | {statistics.median(seconds[name]):.1f} | {statistics.median(ratios[name]):.2f} |")
    table = "\n".join(lines)
    (Path(args.output_dir) / "results.md").write_text(table + "\n")
    print(table)
    return table


if __name__ == "__main__":
    main()
