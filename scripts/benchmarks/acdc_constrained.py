"""ACDC LV under size constraints: tags, common and individual bounds in 2D (per slice) and 3D (per volume).

Trains (``run training``) and evaluates (``run evaluating``, final checkpoint, 3D Dice and HD95 in mm
in each label's own space) every recipe of ``--recipes`` exactly as ``acdc_recipes.py`` does, in the
same output folder: finished runs there are reused, so the 2D log-barrier runs and full supervision
of ``acdc_recipes.py`` serve as the reference rows without being trained again. Prints one LV table
(markdown) and writes it to ``<output_dir>/constrained.md`` and ``constrained.json``.

    nohup env OMP_NUM_THREADS=1 .venv/bin/python scripts/benchmarks/acdc_constrained.py \
        --dataset_dir ../shared/data/acdc > runs/acdc_constrained.log 2>&1 &

The 2D recipes use batches of 16 shuffled slices; the 3D ones batches of all slices of 2 whole
volumes (``VolumeBatchSampler``), hence another number of iterations per epoch (the table gives it).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from acdc_recipes import recipe_parser, run_recipe  # noqa: E402

DEFAULT_RECIPES = [
    "tags_3d_log_barrier",
    "size_common_3d_log_barrier",
    "size_individual_3d_log_barrier",
]
# (label, recipe) rows of the table, in order; a row is shown when its run exists or was trained here
TABLE_ROWS = [
    ("full supervision", "full"),
    ("tags, 2D", "tags_log_barrier"),
    ("tags, 3D", "tags_3d_log_barrier"),
    ("common bounds, 2D", "size_common_log_barrier"),
    ("common bounds, 3D", "size_common_3d_log_barrier"),
    ("individual bounds, 2D", "size_individual_log_barrier"),
    ("individual bounds, 3D", "size_individual_3d_log_barrier"),
    ("individual bounds, 2D, Lagrangian", "size_individual_lagrangian"),
    ("individual bounds, 2D, ReLU Lagrangian", "size_individual_relu_lagrangian"),
    ("individual size + LV centroid, 2D", "size_centroid_log_barrier"),
]
logger = logging.getLogger("benchmark.acdc_constrained")


def lv_row(label: str, recipe: str, result: dict, summary: dict, max_epochs: int) -> dict:
    metrics = summary["metrics"]
    return {
        "label": label,
        "recipe": recipe,
        "dice_lv": metrics["dice_lv"]["mean"],
        "dice_lv_std": metrics["dice_lv"]["std"],
        "hd95_lv": metrics["hd95_lv"]["mean"],
        "mean_dice": result["mean_dice"],
        "iterations_per_epoch": result["iterations"] // max_epochs,
        "s_per_iter": result["s_per_iter"],
    }


def format_table(rows: list[dict]) -> str:
    full = next((r for r in rows if r["recipe"] == "full"), None)
    lines = [
        "| supervision (log-barrier unless said) | LV Dice | LV / full | LV HD95 (mm) | mean Dice (3 classes) "
        "| iterations / epoch | s / iter |",
        "|" + "---|" * 7,
    ]
    for r in rows:
        share = f"{r['dice_lv'] / full['dice_lv']:.0%}" if full and full["dice_lv"] > 0 else "-"
        lines.append(
            f"| {r['label']} | {r['dice_lv']:.3f} ± {r['dice_lv_std']:.3f} | {share} | {r['hd95_lv']:.1f} "
            f"| {r['mean_dice']:.3f} | {r['iterations_per_epoch']} | {r['s_per_iter']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = recipe_parser(__doc__, DEFAULT_RECIPES, "recipes to train if not done yet").parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    out = Path(args.output_dir)
    for recipe in args.recipes:
        result = run_recipe(recipe, args)
        logger.info("%s: LV Dice %.3f, %.4f s/iter", recipe, result["dice_lv"], result["s_per_iter"])
    rows = []
    for label, recipe in TABLE_ROWS:
        if recipe not in args.recipes and not (out / recipe / "eval/summary.json").is_file():
            continue
        result = run_recipe(recipe, args)  # reuses the finished run and its evaluation
        summary = json.loads((out / recipe / "eval/summary.json").read_text())
        rows.append(lv_row(label, recipe, result, summary, args.max_epochs))
    table = format_table(rows)
    (out / "constrained.md").write_text(table + "\n")
    (out / "constrained.json").write_text(json.dumps(rows, indent=2))
    print(table)


if __name__ == "__main__":
    main()
