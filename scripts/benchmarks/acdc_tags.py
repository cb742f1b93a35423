"""Image-level tags on real ACDC: SEC and its ablations against tags with size bounds and full labels.

SEC (Kolesnikov and Lampert, ECCV 2016; ``configs/supervision/tags_sec.yaml``) takes two bundle
runs: the tag classifier (``tags_sec_classifier.yaml``), whose best model on the validation
patients' CAM localisation Dice gives the cues, then the segmentation network. The ablations are
overrides of the same recipe: without expansion (``expand_weight 0``), without constrain
(``constrain_weight 0``), and global weighted rank pooling replaced by global max pooling (all decays
0) or global average pooling (all decays 1). The comparison rows are tags turned into size bounds
with a log-barrier (``size.yaml --size_bounds tags``) and full labels, at the same budget.

Every method trains through ``python -m monai.bundle run training``, then ``run inferring`` segments
the held-out **test** patients (never trained on, never used to choose a setting), scored in 3D
(:mod:`acdc_scribbles`: Dice, HD95 in mm, trimap accuracy, seconds per epoch, which are only
comparable between runs made on an equally loaded machine). The table also gives the cues'
precision and coverage per class on the validation patients.

    python scripts/benchmarks/acdc_tags.py --dataset_dir ../shared/data/acdc --output_dir runs/bench_tags

A finished run folder is reused, so ``full`` can be shared with ``acdc_scribbles.py`` (same
budget) by linking its folder into the output directory.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from acdc_scribbles import (  # noqa: E402
    CLASSES,
    add_budget_arguments,
    budget,
    prediction_set,
    summarise,
    train_and_segment,
    volume_scores,
)

from wss_monai.bundle import bundle_configs  # noqa: E402
from wss_monai.utils.bundle_runs import bundle_command, finished_run, run_logged  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SEC = "configs/supervision/tags_sec.yaml"
SIZE = "configs/supervision/size.yaml"
METHODS = {
    "SEC": ([SEC], {}),
    "SEC without expansion": ([SEC], {"expand_weight": 0}),
    "SEC without constrain": ([SEC], {"constrain_weight": 0}),
    "SEC, GWRP as max pooling": ([SEC], {"gwrp_present_decay": 0, "gwrp_absent_decay": 0, "gwrp_background_decay": 0}),
    "SEC, GWRP as average pooling": (
        [SEC],
        {"gwrp_present_decay": 1, "gwrp_absent_decay": 1, "gwrp_background_decay": 1},
    ),
    "tags + size log-barrier": (
        [SIZE],
        {"size_bounds": "tags", "constraint_handling": "log_barrier", "constraint_dims": 2},
    ),
    "full": (["configs/supervision/full.yaml"], {}),
}
logger = logging.getLogger("benchmark.acdc_tags")


def slug(name: str) -> str:
    return {"tags + size log-barrier": "tags_log_barrier"}.get(name) or (
        name.lower().replace(",", "").replace(" ", "_")
    )


def cue_settings(args: argparse.Namespace) -> dict:
    return {
        "crf_scale_factor": args.crf_scale_factor,
        "sec_foreground_fraction": args.foreground_fraction,
        "sec_background_fraction": args.background_fraction,
    }


def train_classifier(args: argparse.Namespace) -> Path:
    """Stage 1: the tag classifier; its best model on the validation patients is ``models/model.pt``."""
    out = Path(args.output_dir).resolve() / "sec_classifier"
    if not finished_run(out):
        configs = bundle_configs("acdc", SEC, "configs/supervision/tags_sec_classifier.yaml")
        overrides = {
            **budget(out, args),
            "max_epochs": args.classifier_epochs,
            "val_interval": args.classifier_val_interval,
        }
        run_logged(bundle_command("training", configs, overrides), out / "log.txt", cwd=ROOT)
    return out


def cue_quality(classifier_run: Path, args: argparse.Namespace) -> dict:
    """Per class, the cues' precision (share of cue voxels of that class) and coverage (share of all voxels).

    The cues are those stage 2 trains on (:class:`wss_monai.transforms.CAMCues`, tags from the label)
    at the training resolution, over the validation patients. Cached in ``cue_quality.json``.
    """
    settings = cue_settings(args)
    cache = classifier_run / "cue_quality.json"
    cached = json.loads(cache.read_text()) if cache.is_file() else {}
    key = json.dumps(settings, sort_keys=True)
    if key in cached:
        return cached[key]
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Resized

    from wss_monai.bundle import TrainedRun
    from wss_monai.transforms import CAMCues, ImageTags

    run = TrainedRun(classifier_run)
    size = run.get("spatial_size")
    load = Compose(
        [LoadImaged(["image", "label"], image_only=True), EnsureChannelFirstd(["image", "label"])]
        + list(run.get("normalize_image"))
        + [Resized("label", spatial_size=(size, size, -1), mode="nearest")]
    )
    classifier = run.get("network").eval()
    state = torch.load(classifier_run / "models/model.pt", map_location="cpu", weights_only=True)
    classifier.load_state_dict(state.get("model", state))
    cues = CAMCues(
        classifier,
        foreground_fraction=settings["sec_foreground_fraction"],
        background_fraction=settings["sec_background_fraction"],
    )
    tags = ImageTags(len(CLASSES))
    hits, cued, total = torch.zeros(len(CLASSES)), torch.zeros(len(CLASSES)), 0
    for case in json.loads((classifier_run / "datalist.json").read_text())["validation"]:
        data = load({"image": case["image"], "label": case["label"]})
        label = torch.as_tensor(data["label"]).long()
        cue = torch.as_tensor(cues(data["image"], tags(label))).long()
        for klass in range(len(CLASSES)):
            mask = cue == klass
            cued[klass] += mask.sum()
            hits[klass] += (mask & (label == klass)).sum()
        total += label.numel()
    result = {}
    for klass, name in enumerate(CLASSES):
        result[f"cue_precision_{name}"] = float(hits[klass] / cued[klass]) if cued[klass] else float("nan")
        result[f"cue_coverage_{name}"] = float(cued[klass] / total)
    cached[key] = result
    cache.write_text(json.dumps(cached, indent=2))
    return result


def run_method(name: str, classifier_run: Path, args: argparse.Namespace) -> Path:
    recipe, overrides = METHODS[name]
    configs = bundle_configs("acdc", *recipe)
    if recipe == [SEC]:
        overrides = {**overrides, **cue_settings(args), "sec_classifier_ckpt": classifier_run / "models/model.pt"}
    return train_and_segment(Path(args.output_dir).resolve() / slug(name), configs, overrides, args)


def format_table(rows: dict[str, dict], cues: dict) -> str:
    full = rows.get("full")
    lines = [
        "| method | RV | MYO | LV | mean Dice | % of full | mean HD95 (mm) | trimap acc 4 px | trimap acc 16 px "
        "| s / epoch |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        share = f"{r['mean_dice'] / full['mean_dice']:.0%}" if full and full["mean_dice"] > 0 else "-"
        lines.append(
            f"| {name} | {r['dice_rv']:.3f} | {r['dice_myo']:.3f} | {r['dice_lv']:.3f} | {r['mean_dice']:.3f} "
            f"| {share} | {r['mean_hd95']:.1f} | {r['trimap_acc_w4']:.3f} | {r['trimap_acc_w16']:.3f} "
            f"| {r['s_per_epoch']:.0f} |"
        )
    lines += ["", "| cues on the validation patients | " + " | ".join(CLASSES) + " |", "|---" * 5 + "|"]
    for what in ("precision", "coverage"):
        lines.append(f"| {what} | " + " | ".join(f"{cues[f'cue_{what}_{c}']:.3f}" for c in CLASSES) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_dir", required=True)
    parser.add_argument("--output_dir", default="runs/bench_tags")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--classifier_epochs", type=int, default=25)
    parser.add_argument("--classifier_val_interval", type=int, default=5)
    parser.add_argument("--crf_scale_factor", type=float, default=0.25, help="SEC's CRF ran at 1/8 of its input")
    parser.add_argument("--foreground_fraction", type=float, default=0.2)
    parser.add_argument("--background_fraction", type=float, default=0.1)
    parser.add_argument("--cues_only", action="store_true", help="train the classifier and report its cues only")
    add_budget_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    classifier_run = train_classifier(args)
    cues = cue_quality(classifier_run, args)
    logger.info("cues on the validation patients: %s", cues)
    if args.cues_only:
        return json.dumps(cues)
    rows = {}
    for name in args.methods:
        out = run_method(name, classifier_run, args)
        rows[name] = summarise(volume_scores(out, args.split, predictions=prediction_set(args)), out)
        (out / f"scores_{prediction_set(args)}.json").write_text(json.dumps(rows[name], indent=2))
        logger.info("%s: mean Dice %.3f on %d %s cases", name, rows[name]["mean_dice"], rows[name]["cases"], args.split)
    table = format_table(rows, cues)
    out_dir = Path(args.output_dir)
    (out_dir / f"results_{prediction_set(args)}.md").write_text(table + "\n")
    (out_dir / f"results_{prediction_set(args)}.json").write_text(json.dumps({"methods": rows, "cues": cues}, indent=2))
    print(table)
    return table


if __name__ == "__main__":
    main()
