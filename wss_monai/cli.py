"""The ``wss-monai`` command: synthetic data, datalists, overlays and the end-to-end demo.

wss-monai phantoms --output_dir data/phantoms --num_patients 16
wss-monai datalist --dataset_dir data/phantoms --output datalist.json
wss-monai overlay --image img.nii.gz --weak scribble.nii.gz --pred seg.nii.gz --label gt.nii.gz --out o.png
wss-monai demo --work_dir runs/demo
"""

from __future__ import annotations

import argparse
import logging
import sys

from wss_monai.utils.logging import setup_logging

logger = logging.getLogger("wss_monai.cli")


def _phantoms(args: argparse.Namespace) -> None:
    from wss_monai.data.phantoms import make_cardiac_phantoms

    path = make_cardiac_phantoms(
        args.output_dir, num_patients=args.num_patients, seed=args.seed, shape=(args.size, args.size)
    )
    logger.info("wrote %d phantom patients to %s", args.num_patients, path)


def _datalist(args: argparse.Namespace) -> None:
    from wss_monai.data.acdc import make_acdc_datalist

    datalist = make_acdc_datalist(
        args.dataset_dir,
        args.output,
        num_validation=args.num_validation,
        seed=args.seed,
        with_scribbles=args.with_scribbles,
    )
    logger.info("%d training and %d validation frames", len(datalist["training"]), len(datalist["validation"]))


def _overlay(args: argparse.Namespace) -> None:
    import nibabel as nib

    from wss_monai.visualize import save_overlay

    panels = {}
    if args.weak:
        weak = nib.load(args.weak).get_fdata()
        weak[weak == args.unlabelled] = -1
        panels["weak label"] = weak
    if args.pred:
        panels["prediction"] = nib.load(args.pred).get_fdata()
    if args.label:
        panels["ground truth"] = nib.load(args.label).get_fdata()
    path = save_overlay(
        nib.load(args.image).get_fdata(), panels, args.out, class_names=args.class_names, weak_panels=["weak label"]
    )
    logger.info("wrote %s", path)


def _demo(args: argparse.Namespace) -> None:
    from wss_monai.demo import run_demo

    run_demo(args.work_dir, num_patients=args.num_patients, max_epochs=args.max_epochs, seed=args.seed)


def build_parser() -> argparse.ArgumentParser:
    from wss_monai.data.acdc import count_or_fraction

    parser = argparse.ArgumentParser(
        prog="wss-monai", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("phantoms", help="write synthetic cardiac volumes in the raw ACDC layout")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--num_patients", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=96)
    p.set_defaults(func=_phantoms)

    p = sub.add_parser("datalist", help="read a raw ACDC folder and write a seeded patient-level split")
    p.add_argument("--dataset_dir", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--num_validation", type=count_or_fraction, default=0.25, help="patients (>= 1) or a fraction")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--with_scribbles", action="store_true")
    p.set_defaults(func=_datalist)

    p = sub.add_parser("overlay", help="PNG of an image slice with weak label, prediction and ground truth")
    p.add_argument("--image", required=True)
    p.add_argument("--weak")
    p.add_argument("--pred")
    p.add_argument("--label")
    p.add_argument("--out", required=True)
    p.add_argument("--unlabelled", type=int, default=4, help="value of unannotated voxels in the weak label file")
    p.add_argument("--class_names", nargs="+", default=["background", "rv", "myo", "lv"])
    p.set_defaults(func=_overlay)

    p = sub.add_parser(
        "demo", help="phantoms → training from scribbles and full labels → prediction → evaluation → PNG"
    )
    p.add_argument("--work_dir", default="runs/demo")
    p.add_argument("--num_patients", type=int, default=16)
    p.add_argument("--max_epochs", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = build_parser().parse_args(argv)
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
