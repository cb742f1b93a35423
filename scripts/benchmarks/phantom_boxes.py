"""Box supervision on the prostate and lesion phantoms, through the promise12 and atlas bundles.

For every method: ``python -m monai.bundle run training`` (the bundle + ``configs/supervision/boxes.yaml``
or ``full.yaml`` + the method's parameters), then ``run evaluating`` (``configs/engine/evaluate.yaml``) on
the validation cases, which no setting here was chosen on; the table holds the mean 3D Dice and HD95 of
the foreground class and the share of full supervision's Dice. The phantoms are written in each raw
layout first (MetaImage for PROMISE12, ATLAS R1.1 for the lesions):

    python -m wss_monai.data.prostate_phantoms --output_dir runs/phantom_boxes/promise12 --num_cases 16 \\
        --shape 96 96 --num_slices 12 16
    python scripts/benchmarks/phantom_boxes.py --bundle promise12 --dataset_dir runs/phantom_boxes/promise12 \\
        --output_dir runs/phantom_boxes/promise12_runs
    python -m wss_monai.data.atlas_phantoms --output_dir runs/phantom_boxes/atlas --num_cases 16 --shape 64 64 32
    python scripts/benchmarks/phantom_boxes.py --bundle atlas --dataset_dir runs/phantom_boxes/atlas \\
        --output_dir runs/phantom_boxes/atlas_runs --box_epsilon 0.3 --max_epochs 40 --foreground_oversample 0.33
    # lesions twice as wide (closer in voxels to ATLAS at 1 mm), where the box prior beside the masked GDL works
    python -m wss_monai.data.atlas_phantoms --output_dir runs/phantom_boxes/atlas_x2 --num_cases 16 --shape 64 64 32 \\
        --lesion_scale 2

On the lesion bundle full supervision is the lesion engine's generalised Dice (``configs/lesion/gdl.yaml``);
its lesions fill a few slices of each volume, and without ``--foreground_oversample`` every method,
full supervision included, ends predicting no lesion at this budget.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from wss_monai.bundle import bundle_configs
from wss_monai.utils.bundle_runs import bundle_command, finished_run, run_logged

ROOT = Path(__file__).resolve().parents[2]
BOXES = ROOT / "configs/supervision/boxes.yaml"
FULL = ROOT / "configs/supervision/full.yaml"
# the lesion engine's own full baseline (generalised Dice): per-image Dice + CE collapses to an empty
# prediction on slices without any lesion, most of a brain volume (docs/boxes.md)
FULL_RECIPES = {"promise12": FULL, "atlas": ROOT / "configs/lesion/gdl.yaml"}
# five epochs of the generalised Dice on the box target, then the constraints alone or beside it
AFTER_GDL = {"box_warmup_epochs": 5, "box_masked_loss": "gdl"}
BESIDE_GDL = {**AFTER_GDL, "box_masked_ce_after_warmup": 1.0}
AUTHORS_ATLAS_BOUNDS = {"box_epsilon": 0.5, "box_upper": 0.9}
# boxes 10 voxels loose, with the authors' rule for them (segments twice the margin wide) and the lower size bound
# on the box less its margin
LOOSE_BOXES = {"box_margin": 10, "box_segment_width": 20, "box_size_less_margin": True}
METHODS = {  # configs, overrides
    "full": (FULL, {}),
    "box prior": (BOXES, {}),
    "box prior after masked CE": (BOXES, {"box_warmup_epochs": 5}),
    "masked CE": (BOXES, {"box_loss": "masked_ce"}),
    "DeepCut": (BOXES, {"box_loss": "deepcut"}),
    "box prior after masked CE, margin 10, w 20, size less the margin": (
        BOXES,
        {"box_warmup_epochs": 5, **LOOSE_BOXES},
    ),
    "DeepCut, margin 10": (BOXES, {"box_loss": "deepcut", "box_margin": 10}),
    # the generalised Dice on the box target instead of cross-entropy (box_masked_loss gdl): lesions of a few voxels
    "masked GDL": (BOXES, {"box_loss": "masked_ce", "box_masked_loss": "gdl"}),
    "box prior after masked GDL": (BOXES, AFTER_GDL),
    "box prior after masked GDL, log size bound": (BOXES, {**AFTER_GDL, "box_size_log": True}),
    # the emptiness cost at 0.01: about a lesion box's voxels over the voxels outside it in a lesion slice
    "box prior after masked GDL, emptiness 0.01": (BOXES, {**AFTER_GDL, "box_term_weights": {"emptiness": 0.01}}),
    "box prior beside masked GDL": (BOXES, BESIDE_GDL),
    "DeepCut, GDL": (BOXES, {"box_loss": "deepcut", "box_masked_loss": "gdl"}),
    # the size bounds of the authors' ATLAS recipe with emptiness (box_prior_box_size_neg_size): 0.5 to 0.9 of the box
    "box prior after masked GDL, ε 0.5, upper 0.9": (BOXES, {**AFTER_GDL, **AUTHORS_ATLAS_BOUNDS}),
    "box prior beside masked GDL, ε 0.5, upper 0.9": (BOXES, {**BESIDE_GDL, **AUTHORS_ATLAS_BOUNDS}),
    "box prior after masked GDL, margin 10, w 20, size less the margin": (BOXES, {**AFTER_GDL, **LOOSE_BOXES}),
    "box prior beside masked GDL, margin 10, w 20, size less the margin": (BOXES, {**BESIDE_GDL, **LOOSE_BOXES}),
    "masked GDL, margin 10": (BOXES, {"box_loss": "masked_ce", "box_masked_loss": "gdl", "box_margin": 10}),
    "DeepCut, GDL, margin 10": (BOXES, {"box_loss": "deepcut", "box_masked_loss": "gdl", "box_margin": 10}),
}
logger = logging.getLogger("benchmark.phantom_boxes")


def run_method(name: str, args: argparse.Namespace) -> dict:
    """Trains ``name`` and evaluates it on the validation cases; returns the evaluation summary."""
    recipe, extra = METHODS[name]
    recipe = FULL_RECIPES[args.bundle] if recipe == FULL else recipe
    out = Path(args.output_dir).resolve() / name.lower().replace(",", "").replace(" ", "_")
    common = {
        "dataset_dir": Path(args.dataset_dir).resolve(),
        "output_dir": out,
        "seed": args.seed,
        "num_validation": args.num_validation,
        "spatial_size": args.spatial_size,
        "batch_size": args.batch_size,
        "foreground_oversample": args.foreground_oversample,
        **({"box_epsilon": args.box_epsilon} if recipe == BOXES else {}),
        **extra,
    }
    if not finished_run(out):  # finished runs are reused (as acdc_recipes.py does): delete a folder to redo it
        train = {**common, "max_epochs": args.max_epochs, "val_interval": args.max_epochs}
        run_logged(bundle_command("training", bundle_configs(args.bundle, recipe), train), out / "log.txt", cwd=ROOT)
    if not (out / "eval/summary.json").is_file():
        evaluate = {**common, "ckpt_path": out / "models/model_final.pt"}
        evaluation = bundle_configs(args.bundle, recipe, kind="evaluate")
        run_logged(bundle_command("evaluating", evaluation, evaluate), out / "log.txt", cwd=ROOT)
    return json.loads((out / "eval/summary.json").read_text())


def table(bundle: str, summaries: dict[str, dict]) -> str:
    """Markdown rows: mean Dice and HD95 of the foreground class, and the share of full supervision's Dice."""
    full = summaries.get("full", {}).get("mean_dice")
    lines = [
        f"| method ({bundle} phantoms, validation cases) | Dice | % of full | HD95 (mm) |",
        "|---|---|---|---|",
    ]
    for name, summary in summaries.items():
        share = f"{100 * summary['mean_dice'] / full:.0f}%" if full else "-"
        lines.append(f"| {name} | {summary['mean_dice']:.3f} | {share} | {summary['mean_hd95']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", choices=["promise12", "atlas"], required=True)
    parser.add_argument("--dataset_dir", required=True)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--max_epochs", type=int, default=20)
    parser.add_argument("--spatial_size", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--num_validation", type=int, default=4)
    parser.add_argument("--box_epsilon", type=float, default=0.5, help="0.5 for the prostate, 0.3 for lesions")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--foreground_oversample", type=float, default=0.0, help="share of slices drawn among those with foreground"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    summaries = {}
    for name in (["full"] if "full" not in args.methods else []) + args.methods:
        summaries[name] = run_method(name, args)
        logger.info("%s: mean Dice %.3f", name, summaries[name]["mean_dice"])
    text = table(args.bundle, summaries)
    (Path(args.output_dir) / "results.md").write_text(text + "\n")
    print(text)
    return text


if __name__ == "__main__":
    main()
