"""A diagnostic copy of ACDC whose scribbles also mark the far background, to test why partial CE fails.

The real scribbles mark the background only in a ring around the heart (median 17 mm from it): most
of the field of view is never supervised, and partial CE labels bright structures there. This
writes a copy of the dataset (images and labels linked, scribbles rewritten) where, in every slice,
the background voxels farther than ``--far_mm`` (in-plane) from every original scribble get a
background scribble on a sparse random subset (``--fraction`` of them, as dots). Training the same
partial-CE recipe on this copy measures what the unsupervised far field costs. It uses the ground
truth, so it is a diagnostic, not a recipe.

    python scripts/benchmarks/far_background_scribbles.py --dataset_dir ../shared/data/acdc \
        --output_dir runs/acdc_far_background
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from wss_monai.metrics.volume import spacing_from_affine

UNLABELLED = 4
logger = logging.getLogger("benchmark.far_background")


def add_far_background(
    scribble: np.ndarray, label: np.ndarray, spacing, far_mm: float, fraction: float, rng: np.random.Generator
) -> np.ndarray:
    """``scribble`` plus background marks on ``fraction`` of the background voxels beyond ``far_mm`` of it."""
    out = scribble.copy()
    for z in range(scribble.shape[2]):
        annotated = scribble[..., z] != UNLABELLED
        distance = (
            ndimage.distance_transform_edt(~annotated, sampling=spacing[:2])
            if annotated.any()
            else np.full(annotated.shape, np.inf)
        )
        far = (label[..., z] == 0) & (distance > far_mm)
        chosen = far & (rng.random(far.shape) < fraction)
        out[..., z][chosen] = 0
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_dir", required=True, type=Path)
    parser.add_argument("--output_dir", required=True, type=Path)
    parser.add_argument("--far_mm", type=float, default=20.0)
    parser.add_argument("--fraction", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    rng = np.random.default_rng(args.seed)
    added = total = 0
    for scribble_file in sorted(args.dataset_dir.glob("training/patient*/*_scribble.nii.gz")):
        patient_dir = args.output_dir / "training" / scribble_file.parent.name
        patient_dir.mkdir(parents=True, exist_ok=True)
        stem = scribble_file.name.replace("_scribble.nii.gz", "")
        for suffix in (".nii.gz", "_gt.nii.gz"):
            link = patient_dir / f"{stem}{suffix}"
            if not link.exists():
                link.symlink_to((scribble_file.parent / f"{stem}{suffix}").resolve())
        image = nib.load(str(scribble_file))
        scribble = np.asarray(image.dataobj).astype(np.uint8)
        label = np.asarray(nib.load(str(scribble_file.parent / f"{stem}_gt.nii.gz")).dataobj)
        spacing = spacing_from_affine(image.affine)
        out = add_far_background(scribble, label, spacing, args.far_mm, args.fraction, rng)
        added += int((out != scribble).sum())
        total += int((scribble != UNLABELLED).sum())
        nib.save(nib.Nifti1Image(out, image.affine, image.header), str(patient_dir / scribble_file.name))
    logger.info("added %d far background marks to %d scribbled voxels in %s", added, total, args.output_dir)


if __name__ == "__main__":
    main()
