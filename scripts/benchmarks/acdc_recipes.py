"""Train the acdc bundle under each supervision recipe at one fixed budget and print one table.

For every recipe: ``python -m monai.bundle run training`` (bundle + profile + recipe), then
``run evaluating`` on the validation patients with the final checkpoint (no model selection on the
validation labels), in each label's own space. The table gives per-class 3D Dice, mean Dice, the
LV Dice as a share of full supervision, mean HD95 (mm) and seconds per training iteration as a
ratio to full supervision (all recipes run one after another in this one invocation).

    python scripts/benchmarks/acdc_recipes.py --dataset_dir ../shared/data/acdc \
        --num_validation 20 --max_epochs 20 --output_dir runs/bench_acdc

A recipe is named by its run folder: the stem of a file of configs/supervision/, or a variant of
``size.yaml`` from :data:`SIZE_VARIANTS` (e.g. ``size_common_penalty``: ``--size_bounds common
--constraint_handling penalty``), whose folder names are those the docs' tables were measured in.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from wss_monai.bundle import bundle_configs
from wss_monai.utils.bundle_runs import bundle_command, finished_run, run_logged

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_RECIPES = [
    "full",
    "scribble_files",
    "scribble",
    "points",
    "tags_penalty",
    "tags_log_barrier",
    "size_common_penalty",
    "size_common_log_barrier",
    "size_individual_penalty",
    "size_individual_log_barrier",
]
SIZE_VARIANTS = {
    "tags_penalty": ("tags", "penalty", 2),
    "tags_log_barrier": ("tags", "log_barrier", 2),
    "tags_3d_log_barrier": ("tags", "log_barrier", 3),
    "size_common_penalty": ("common", "penalty", 2),
    "size_common_log_barrier": ("common", "log_barrier", 2),
    "size_common_3d_log_barrier": ("common", "log_barrier", 3),
    "size_individual_penalty": ("individual", "penalty", 2),
    "size_individual_log_barrier": ("individual", "log_barrier", 2),
    "size_individual_3d_log_barrier": ("individual", "log_barrier", 3),
    "size_individual_lagrangian": ("individual", "lagrangian", 2),
    "size_individual_relu_lagrangian": ("individual", "relu_lagrangian", 2),
    "size_centroid_log_barrier": ("centroid", "log_barrier", 2),
}
"""Run name → (size_bounds, constraint_handling, constraint_dims) of configs/supervision/size.yaml."""
CLASSES = ("rv", "myo", "lv")
logger = logging.getLogger("benchmark.acdc")


def recipe_parser(
    description: str, default_recipes: list[str], recipes_help: str | None = None
) -> argparse.ArgumentParser:
    """The command line of :func:`run_recipe`: dataset and output folders, recipes, profile and training budget."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_dir", required=True)
    parser.add_argument("--output_dir", default="runs/bench_acdc")
    parser.add_argument("--recipes", nargs="+", default=default_recipes, help=recipes_help)
    parser.add_argument("--profile", default=None, help="a file name under configs/profiles, without .yaml")
    parser.add_argument("--max_epochs", type=int, default=20)
    parser.add_argument("--spatial_size", type=int, default=128)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--learning_rate", type=float, default=0.002)
    parser.add_argument("--num_validation", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def recipe_configs(recipe: str) -> tuple[Path, dict]:
    """The recipe file of a run name and its parameters: size.yaml for :data:`SIZE_VARIANTS`, else ``<recipe>.yaml``."""
    if recipe in SIZE_VARIANTS:
        size_bounds, handling, dims = SIZE_VARIANTS[recipe]
        parameters = {"size_bounds": size_bounds, "constraint_handling": handling, "constraint_dims": dims}
        return ROOT / "configs/supervision/size.yaml", parameters
    path = ROOT / "configs/supervision" / f"{recipe}.yaml"
    if not path.is_file():
        raise ValueError(
            f"recipe must be a file stem of configs/supervision/ or one of {sorted(SIZE_VARIANTS)}, got {recipe!r}"
        )
    return path, {}


def run_recipe(recipe: str, args: argparse.Namespace) -> dict:
    recipe_file, parameters = recipe_configs(recipe)
    out = Path(args.output_dir).resolve() / recipe
    out.mkdir(parents=True, exist_ok=True)
    overlays = [ROOT / "configs/profiles" / f"{args.profile}.yaml"] if args.profile else []
    overlays.append(recipe_file)
    configs = bundle_configs("acdc", *overlays)
    common = {
        **parameters,
        "dataset_dir": Path(args.dataset_dir).resolve(),
        "output_dir": out,
        "seed": args.seed,
        "num_validation": args.num_validation,
        "spatial_size": args.spatial_size,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
    }
    start = time.perf_counter()
    if not finished_run(out):  # finished runs are reused: delete a folder to redo it
        train = {**common, "max_epochs": args.max_epochs, "val_interval": args.max_epochs}
        run_logged(bundle_command("training", configs, train), out / "log.txt", cwd=ROOT)
    train_seconds = time.perf_counter() - start
    if not (out / "eval/summary.json").is_file():
        evaluate = {**common, "ckpt_path": out / "models/model_final.pt"}
        evaluation = bundle_configs("acdc", *overlays, kind="evaluate")
        run_logged(bundle_command("evaluating", evaluation, evaluate), out / "log.txt", cwd=ROOT)
    summary = json.loads((out / "eval/summary.json").read_text())
    timing = json.loads((out / "timing.json").read_text())
    metrics = summary["metrics"]
    return {
        "recipe": recipe,
        **{f"dice_{c}": metrics[f"dice_{c}"]["mean"] for c in CLASSES},
        "mean_dice": summary["mean_dice"],
        "mean_hd95": summary["mean_hd95"],
        "s_per_iter": timing["seconds_per_iteration_median"],
        "iterations": timing["iterations"],
        "wall_s": train_seconds,
    }


def format_table(rows: list[dict]) -> str:
    full = next((r for r in rows if r["recipe"] == "full"), None)
    header = "| recipe | RV | MYO | LV | mean Dice | LV / full | mean HD95 (mm) | s / iter | time vs full |"
    lines = [header, "|" + "---|" * 9]
    for r in rows:
        lv_share = f"{r['dice_lv'] / full['dice_lv']:.0%}" if full and full["dice_lv"] > 0 else "-"
        ratio = f"{r['s_per_iter'] / full['s_per_iter']:.3f}" if full else "-"
        lines.append(
            f"| {r['recipe']} | {r['dice_rv']:.3f} | {r['dice_myo']:.3f} | {r['dice_lv']:.3f} | {r['mean_dice']:.3f} "
            f"| {lv_share} | {r['mean_hd95']:.1f} | {r['s_per_iter']:.4f} | {ratio} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = recipe_parser(__doc__, DEFAULT_RECIPES).parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    rows = []
    for recipe in args.recipes:
        rows.append(run_recipe(recipe, args))
        logger.info("%s: mean Dice %.3f, %.4f s/iter", recipe, rows[-1]["mean_dice"], rows[-1]["s_per_iter"])
    table = format_table(rows)
    out = Path(args.output_dir)
    (out / "results.md").write_text(table + "\n")
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    print(table)


if __name__ == "__main__":
    main()
