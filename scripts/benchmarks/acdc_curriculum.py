"""Curriculum semi-supervision on ACDC: FS-on-n, curriculum, proposals and oracle for n = 5, 10, 20.

Kervadec et al., "Curriculum semi-supervised segmentation", MICCAI 2019. For each n (labelled
training patients, seeded and nested), one after another through ``python -m monai.bundle``:

1. ``fs``: full supervision on the n patients only (``configs/supervision/full_subset.yaml``);
2. stage 1: the LV size regressor on the same n patients (``bundles/acdc/configs/size_regressor.yaml``);
3. ``curriculum``: stage 2 with its predicted bounds (``curriculum.yaml``);
4. ``proposals``: pseudo-labels from the ``fs`` network on the unlabelled patients (``proposals.yaml``);
5. ``oracle``: the true LV sizes instead of the regressor's (``curriculum_oracle.yaml``);

then ``run evaluating`` of each final checkpoint on the validation patients (3D Dice, HD95 in mm).
The split is that of ``acdc_recipes.py`` (seeded patient split, seed 0, 20 validation patients),
the network the bundle's U-Net at 128². Every segmentation run gets the same number of training
iterations (``--iterations``, batch 16): the epochs of each run are derived from its number of
training slices (read from the NIfTI headers). Finished runs are reused; delete a folder to redo it.

    python scripts/benchmarks/acdc_curriculum.py --dataset_dir ../shared/data/acdc \
        --output_dir runs/bench_curriculum3 --iterations 200 --regressor_epochs 8

Curriculum and oracle use the recipes' weak side (the log-barrier extension on raw LV pixel counts);
``--constraint_handling penalty`` gives the published quadratic penalty instead. Two processes with
disjoint ``--n`` may share an output folder; rerunning with all n (finished runs are reused) writes the
combined table.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from wss_monai.bundle import bundle_configs  # noqa: E402
from wss_monai.data.hybrid_acdc import make_hybrid_acdc_datalist  # noqa: E402
from wss_monai.utils.bundle_runs import finished_run  # noqa: E402

REGRESSOR = ROOT / "bundles/acdc/configs/size_regressor.yaml"
RECIPES = {
    "fs": "full_subset",
    "curriculum": "curriculum",
    "proposals": "proposals",
    "oracle": "curriculum_oracle",
}
PUBLISHED_LV = {  # Kervadec et al. 2019, ACDC LV Dice (%)
    5: {"fs": 24.8, "curriculum": 53.1, "oracle": 74.3},
    10: {"fs": 44.4, "curriculum": 58.5, "oracle": 75.7},
    20: {"fs": 71.7, "curriculum": 72.7, "oracle": 79.0},
}
CLASSES = ("rv", "myo", "lv")
logger = logging.getLogger("benchmark.curriculum")


def bundle_command(run_id: str, configs: list[Path], overrides: dict) -> list[str]:
    files = "[" + ",".join(f"'{c}'" for c in configs) + "]"
    command = [sys.executable, "-m", "monai.bundle", "run", run_id, "--config_file", files]
    for key, value in overrides.items():
        command += [f"--{key}", str(value)]
    return command


def run_logged(command: list[str], log_file: Path) -> None:
    logger.info("%s", " ".join(command))
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "a") as log:
        result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    if result.returncode:
        raise RuntimeError(f"command failed ({result.returncode}); see {log_file}")


def count_slices(cases: list[dict]) -> int:
    """Training slices of a datalist split: the depth of each image, from its NIfTI header."""
    return sum(int(nib.load(case["image"]).shape[2]) for case in cases)


def epochs_for(method: str, n: int, args: argparse.Namespace) -> int:
    """Epochs giving about ``args.iterations`` iterations for this method's training set."""
    subset = "full" if method == "fs" else "all"
    datalist = make_hybrid_acdc_datalist(
        args.dataset_dir,
        None,
        num_full_patients=n,
        num_validation=args.num_validation,
        seed=args.seed,
        subset=subset,
        full_repeats="balance",
        check=False,
    )
    per_epoch = math.ceil(count_slices(datalist["training"]) / args.batch_size)
    return max(1, round(args.iterations / per_epoch))


def common_overrides(n: int, out: Path, args: argparse.Namespace) -> dict:
    return {
        "dataset_dir": Path(args.dataset_dir).resolve(),
        "output_dir": out,
        "seed": args.seed,
        "num_validation": args.num_validation,
        "spatial_size": args.spatial_size,
        "num_full_patients": n,
    }


def train_regressor(n: int, args: argparse.Namespace) -> tuple[Path, dict]:
    out = Path(args.output_dir).resolve() / f"n{n}" / "regressor"
    checkpoint = out / "models/size_regressor.pt"
    if not (out / "size_regressor/summary.json").is_file():
        overrides = {**common_overrides(n, out, args), "regressor_epochs": args.regressor_epochs}
        run_logged(bundle_command("training", [REGRESSOR], overrides), out / "log.txt")
    return checkpoint, json.loads((out / "size_regressor/summary.json").read_text())


def run_method(method: str, n: int, args: argparse.Namespace, extra: dict) -> dict:
    out = Path(args.output_dir).resolve() / f"n{n}" / method
    recipe = ROOT / "configs/supervision" / f"{RECIPES[method]}.yaml"
    configs = bundle_configs("acdc", recipe)
    common = {**common_overrides(n, out, args), **extra}
    start = time.perf_counter()
    if not finished_run(out):
        epochs = epochs_for(method, n, args)
        train = {
            **common,
            "max_epochs": epochs,
            "val_interval": epochs,
            "batch_size": args.batch_size,
            "learning_rate": args.learning_rate,
        }
        run_logged(bundle_command("training", configs, train), out / "log.txt")
    train_seconds = time.perf_counter() - start
    if not (out / "eval/summary.json").is_file():
        evaluate = {**common, "ckpt_path": out / "models/model_final.pt"}
        evaluation = bundle_configs("acdc", recipe, kind="evaluate")
        run_logged(bundle_command("evaluating", evaluation, evaluate), out / "log.txt")
    summary = json.loads((out / "eval/summary.json").read_text())
    timing = json.loads((out / "timing.json").read_text())
    metrics = summary["metrics"]
    return {
        "n": n,
        "method": method,
        **{f"dice_{c}": metrics[f"dice_{c}"]["mean"] for c in CLASSES},
        "mean_dice": summary["mean_dice"],
        "mean_hd95": summary["mean_hd95"],
        "hd95_lv": metrics.get("hd95_lv", {}).get("mean"),
        "iterations": timing["iterations"],
        "s_per_iter": timing["seconds_per_iteration_median"],
        "wall_s": train_seconds,
    }


def format_table(rows: list[dict], regressors: dict) -> str:
    header = (
        "| n | method | LV Dice | published LV | RV | MYO | mean Dice | mean HD95 (mm) | LV HD95 (mm) | iterations |"
    )
    lines = [header, "|" + "---|" * 10]
    for r in rows:
        published = PUBLISHED_LV.get(r["n"], {}).get(r["method"])
        lines.append(
            f"| {r['n']} | {r['method']} | {r['dice_lv']:.3f} "
            f"| {'-' if published is None else f'{published / 100:.3f}'} "
            f"| {r['dice_rv']:.3f} | {r['dice_myo']:.3f} | {r['mean_dice']:.3f} | {r['mean_hd95']:.1f} "
            f"| {'-' if r['hd95_lv'] is None else format(r['hd95_lv'], '.1f')} | {r['iterations']} |"
        )
    lines += [
        "",
        "| n | regressor val MAE (px) | mean true LV size (px) | median rel. error (LV present) "
        "| true size in ±10 % bounds |",
    ]
    lines.append("|" + "---|" * 5)
    for n, summary in regressors.items():
        v = summary["validation"]
        median = v.get("median_relative_error_present")
        lines.append(
            f"| {n} | {v['mae_pixels']:.1f} | {v['mean_true_size']:.1f} | "
            f"{'-' if median is None else f'{median:.1%}'} | {v['share_within_bounds']:.1%} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_dir", required=True)
    parser.add_argument("--output_dir", default="runs/bench_curriculum")
    parser.add_argument("--n", type=int, nargs="+", default=[5, 10, 20], help="labelled training patients")
    parser.add_argument("--methods", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--iterations", type=int, default=250, help="training iterations of every segmentation run")
    parser.add_argument("--regressor_epochs", type=int, default=5, help="passes over the x10-augmented labelled set")
    parser.add_argument("--spatial_size", type=int, default=128)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--learning_rate", type=float, default=0.002)
    parser.add_argument("--num_validation", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--constraint_handling",
        choices=["log_barrier", "penalty"],
        default=None,
        help="weak side of curriculum and oracle (default: the recipes' default, log_barrier; penalty: published)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows, regressors = [], {}
    start = time.perf_counter()
    for n in args.n:
        fs_checkpoint = out.resolve() / f"n{n}" / "fs" / "models/model_final.pt"
        for method in args.methods:
            extra: dict = {}
            if method == "curriculum":
                checkpoint, regressors[n] = train_regressor(n, args)
                extra["size_regressor_ckpt"] = checkpoint
            if method in ("curriculum", "oracle") and args.constraint_handling is not None:
                extra["constraint_handling"] = args.constraint_handling
            if method == "proposals":
                if not fs_checkpoint.is_file():
                    raise RuntimeError(f"proposals for n={n} need the fs run first ({fs_checkpoint})")
                extra["proposals_ckpt"] = fs_checkpoint
            rows.append(run_method(method, n, args, extra))
            logger.info(
                "n=%d %s: LV Dice %.3f, mean Dice %.3f (%.0f s so far)",
                n,
                method,
                rows[-1]["dice_lv"],
                rows[-1]["mean_dice"],
                time.perf_counter() - start,
            )
            (out / "results.json").write_text(json.dumps({"rows": rows, "regressors": regressors}, indent=2))
    table = format_table(rows, regressors)
    (out / "results.md").write_text(table + "\n")
    print(table)
    print(f"\ntotal wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
