"""Real ACDC scribbles: partial CE, + grid / dense / gated CRF, and full labels, judged as a user would.

For every method: ``python -m monai.bundle run training`` (acdc bundle + recipe + regulariser
overlay), then ``run inferring`` on the images of the chosen split (held-out **test** patients by
default: never trained on, never used to choose a setting), then each prediction is scored against
its ground truth in 3D (Dice and HD95 in mm per class, from the label's affine). Also reported: the
share of false-positive foreground voxels lying more than 20 mm (in-plane) from every scribble of the
volume, which is where partial CE alone fails.

The split is the bundle's seeded patient split with ``--num_validation`` patients for validation
(settings were chosen there) and ``--num_test`` held-out test patients. All methods share one budget.

    python scripts/benchmarks/acdc_scribbles.py --dataset_dir ../shared/data/acdc \
        --output_dir runs/bench_scribbles --max_epochs 25

Step costs, measured side by side, come from ``scripts/benchmarks/crf_overhead.py``.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from wss_monai.metrics.volume import spacing_from_affine, volume_metrics
from wss_monai.utils.bundle_runs import bundle_command, record_config_if_missing, run_logged

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ("background", "rv", "myo", "lv")
SCRIBBLES = "configs/supervision/scribble_files.yaml"
METHODS = {
    "pCE": [SCRIBBLES],
    "pCE + grid CRF": [SCRIBBLES, "configs/regularisers/grid_crf.yaml"],
    "pCE + dense CRF": [SCRIBBLES, "configs/regularisers/dense_crf.yaml"],
    "pCE + gated CRF": [SCRIBBLES, "configs/regularisers/gated_crf.yaml"],
    "full": ["configs/supervision/full.yaml"],
}
FAR_MM = 20.0
logger = logging.getLogger("benchmark.acdc_scribbles")


def slug(name: str) -> str:
    return name.lower().replace(" + ", "_").replace(" ", "_")


def run_method(name: str, args: argparse.Namespace) -> Path:
    """Trains one method and segments the split's images through the bundle commands; returns the run folder."""
    out = Path(args.output_dir).resolve() / slug(name)
    configs = [ROOT / "bundles/acdc/configs/train.yaml"]
    configs += [ROOT / c for c in METHODS[name]] + [ROOT / c for c in args.overlay]
    common = {
        "dataset_dir": Path(args.dataset_dir).resolve(),
        "output_dir": out,
        "seed": args.seed,
        "num_validation": args.num_validation,
        "num_test": args.num_test,
        "spatial_size": args.spatial_size,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
    }
    if not (out / "models/model_final.pt").is_file():  # finished runs are reused: delete a folder to redo it
        train = {**common, "max_epochs": args.max_epochs, "val_interval": args.max_epochs}
        run_logged(bundle_command("training", configs, train), out / "log.txt", cwd=ROOT)
    cases = json.loads((out / "datalist.json").read_text())[args.split]
    inputs = out / f"{args.split}_images"
    inputs.mkdir(exist_ok=True)
    for case in cases:
        link = inputs / Path(case["image"]).name
        if not link.exists():
            link.symlink_to(case["image"])
    predictions = out / f"predictions_{args.split}"
    if len(list(predictions.glob("*_seg.nii.gz"))) < len(cases):
        record_config_if_missing(out, configs, common)  # a run trained before runs recorded their config
        infer = {"run_dir": out, "input_dir": inputs, "output_dir": predictions}
        infer["ckpt_path"] = out / "models/model_final.pt"
        infer_config = [ROOT / "bundles/acdc/configs/inference.yaml"]
        run_logged(bundle_command("inferring", infer_config, infer), out / "log.txt", cwd=ROOT)
    return out


def far_false_positive_share(pred: np.ndarray, label: np.ndarray, scribble: np.ndarray, spacing) -> float:
    """Share of the false-positive foreground voxels more than ``FAR_MM`` in-plane from every scribbled voxel."""
    false_positive = (pred > 0) & (pred != label)
    if not false_positive.any():
        return 0.0
    scribbled = scribble < len(CLASSES)
    far = np.zeros_like(false_positive)
    for z in range(pred.shape[2]):
        if scribbled[..., z].any():
            distance = ndimage.distance_transform_edt(~scribbled[..., z], sampling=spacing[:2])
        else:
            distance = np.full(pred.shape[:2], np.inf)
        far[..., z] = distance > FAR_MM
    return float((false_positive & far).sum() / false_positive.sum())


def score(out: Path, args: argparse.Namespace) -> dict:
    """Mean per-class Dice, HD95 and far false-positive share over the split's cases."""
    cases = json.loads((out / "datalist.json").read_text())[args.split]
    rows = []
    for case in cases:
        label_image = nib.load(case["label"])
        label = np.asarray(label_image.dataobj).astype(np.int64)
        stem = Path(case["image"]).name.split(".")[0]
        pred = np.asarray(nib.load(out / f"predictions_{args.split}" / f"{stem}_seg.nii.gz").dataobj).astype(np.int64)
        spacing = spacing_from_affine(label_image.affine)
        row = volume_metrics(pred, label, CLASSES, spacing)
        scribble = np.asarray(nib.load(case["image"].replace(".nii.gz", "_scribble.nii.gz")).dataobj)
        row["far_fp"] = far_false_positive_share(pred, label, scribble, spacing)
        rows.append(row)
    summary = {key: float(np.nanmean([r[key] for r in rows])) for key in rows[0]}
    summary["mean_dice"] = statistics.mean(summary[f"dice_{c}"] for c in CLASSES[1:])
    summary["mean_hd95"] = statistics.mean(summary[f"hd95_{c}"] for c in CLASSES[1:])
    summary["cases"] = len(rows)
    timing = json.loads((out / "timing.json").read_text())
    summary["s_per_iter"] = timing["seconds_per_iteration_median"]
    (out / f"scores_{args.split}.json").write_text(json.dumps({"summary": summary, "cases": rows}, indent=2))
    return summary


def format_table(rows: dict[str, dict]) -> str:
    full = rows.get("full")
    lines = [
        "| method | RV | MYO | LV | mean Dice | % of full | mean HD95 (mm) | far false positives |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        share = f"{r['mean_dice'] / full['mean_dice']:.0%}" if full and full["mean_dice"] > 0 else "-"
        lines.append(
            f"| {name} | {r['dice_rv']:.3f} | {r['dice_myo']:.3f} | {r['dice_lv']:.3f} | {r['mean_dice']:.3f} "
            f"| {share} | {r['mean_hd95']:.1f} | {r['far_fp']:.0%} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_dir", required=True)
    parser.add_argument("--output_dir", default="runs/bench_scribbles")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--overlay", nargs="*", default=[], help="extra config files merged into every method")
    parser.add_argument("--split", default="test", choices=["validation", "test"])
    parser.add_argument("--max_epochs", type=int, default=25)
    parser.add_argument("--spatial_size", type=int, default=128)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--learning_rate", type=float, default=0.002)
    parser.add_argument("--num_validation", type=int, default=15)
    parser.add_argument("--num_test", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    rows = {}
    for name in args.methods:
        rows[name] = score(run_method(name, args), args)
        logger.info("%s: mean Dice %.3f on %d %s cases", name, rows[name]["mean_dice"], rows[name]["cases"], args.split)
    table = format_table(rows)
    out = Path(args.output_dir)
    (out / f"results_{args.split}.md").write_text(table + "\n")
    (out / f"results_{args.split}.json").write_text(json.dumps(rows, indent=2))
    print(table)
    return table


if __name__ == "__main__":
    main()
