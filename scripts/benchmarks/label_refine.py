"""Time of the label app's interactive refinement on a 128 x 128 x 16 cardiac phantom, CPU.

The network's probabilities stand in as a smoothed, wrong segmentation (the left ventricle dilated
into the myocardium by 3 voxels, softmax of 4 x the Gaussian-smoothed one-hot); the annotator's
scribbles are the phantom's own. Timed (wall and CPU seconds of this process): α-expansion over the 4
classes (2 sweeps) and the binary
graph cut of MONAI Label's convention (target LV), each median of ``--repeats`` runs, plus the
Dice of the LV before and after::

    python scripts/benchmarks/label_refine.py --output_dir runs/label_refine
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from wss_monai.constants import UNLABELLED
from wss_monai.data.phantoms import make_cardiac_phantoms
from wss_monai.label import refine_segmentation

logger = logging.getLogger("label_refine")


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))


def _probabilities(label: np.ndarray, num_classes: int = 4) -> np.ndarray:
    wrong = label.copy()
    grown = ndimage.binary_dilation(label == 3, iterations=3) & (label == 2)
    wrong[grown] = 3
    onehot = np.stack([(wrong == c).astype(np.float32) for c in range(num_classes)])
    smooth = np.stack([ndimage.gaussian_filter(o, sigma=(1.5, 1.5, 0.3)) for o in onehot])
    logits = 4.0 * smooth
    exp = np.exp(logits - logits.max(0, keepdims=True))
    return exp / exp.sum(0, keepdims=True)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", default=None, help="where to write label_refine.json")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    root = make_cardiac_phantoms(tempfile.mkdtemp(), num_patients=1, shape=(128, 128), num_slices=(16, 16))
    frame = sorted((root / "training" / "patient001").glob("patient001_frame01.nii.gz"))[0]
    image = nib.load(str(frame))
    label = np.asarray(nib.load(str(frame).replace(".nii.gz", "_gt.nii.gz")).dataobj).astype(np.int64)
    scribble = np.asarray(nib.load(str(frame).replace(".nii.gz", "_scribble.nii.gz")).dataobj).astype(np.int64)
    seeds = np.where(scribble == 4, UNLABELLED, scribble)
    probabilities = _probabilities(label)
    spacing = np.sqrt((image.affine[:3, :3] ** 2).sum(0)).tolist()
    volume = np.asarray(image.dataobj, dtype=np.float32)[None]
    results = {"shape": list(label.shape), "seeds": int((seeds != UNLABELLED).sum())}
    results["lv_dice_network"] = _dice(probabilities.argmax(0) == 3, label == 3)
    cases = {
        "alpha_expansion": {"seeds": seeds, "target": None},
        "graph_cut_target_lv": {"seeds": np.where((seeds == 3) | (seeds == 0), seeds, UNLABELLED), "target": 3},
    }
    for name, case in cases.items():
        times, cpu = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            refined, info = refine_segmentation(probabilities, volume, case["seeds"], spacing=spacing,
                                                target=case["target"])  # fmt: skip
            times.append(time.perf_counter() - start)
            cpu.append(info["cpu_seconds"])
        results[name] = {"seconds_median": round(statistics.median(times), 2),
                         "cpu_seconds_median": round(statistics.median(cpu), 2), "solver": info["solver"],
                         "lv_dice": round(_dice(refined == 3, label == 3), 4)}  # fmt: skip
        logger.info("%s: %s", name, results[name])
    if args.output_dir:
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        (Path(args.output_dir) / "label_refine.json").write_text(json.dumps(results, indent=2) + "\n")
    logger.info("%s", json.dumps(results))
    return results


if __name__ == "__main__":
    main()
