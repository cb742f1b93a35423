"""What one small false positive far from the lesions costs under GDL and under the boundary loss.

On every lesion-bearing 2D slice of the lesion phantoms, the prediction is the ground truth itself
(binary, two channels) plus one 2 x 2 false-positive square whose centre lies ``d`` mm from the
nearest lesion voxel of the slice. The script prints, per ``d``, the median over slices of

- the rise of MONAI's ``GeneralizedDiceLoss`` (per image, background included, as in
  ``configs/lesion/gdl.yaml``), and
- the rise of the boundary loss (:class:`wss_monai.losses.BoundaryLoss`, mean over the image of
  φ·S with 2D signed distance maps in mm, :class:`wss_monai.transforms.SignedDistanceMap`),

and their ratio: at weight α the boundary term adds α × ratio of what GDL already charges for the
same error. The boundary loss removes far-away false positives only where that product is not small.

    python scripts/benchmarks/boundary_fp_penalty.py --kind wmh --sizes 64 128 --distances 3 10 20
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.losses import GeneralizedDiceLoss
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from lesion_boundary import generate_phantoms  # noqa: E402

from wss_monai.data.isles import find_isles_cases  # noqa: E402
from wss_monai.data.wmh import find_wmh_cases  # noqa: E402
from wss_monai.losses import BoundaryLoss  # noqa: E402
from wss_monai.transforms import SignedDistanceMap  # noqa: E402

logger = logging.getLogger("benchmark.boundary_fp_penalty")


def lesion_slices(kind: str, size: int, cases: int, seed: int, work: Path) -> list[tuple[np.ndarray, tuple]]:
    """``(label slice, in-plane spacing)`` of every 2D slice holding a label-1 voxel."""
    root = generate_phantoms(kind, work / kind, seed, size, cases)
    found = find_isles_cases(root) if kind == "isles" else find_wmh_cases(root)
    slices = []
    for case in found:
        image = nib.load(case["label"])
        label = np.asanyarray(image.dataobj) == 1
        spacing = tuple(float(s) for s in np.abs(np.diag(image.affine)[:2]))
        slices += [(label[..., z], spacing) for z in range(label.shape[2]) if label[..., z].any()]
    return slices


def penalties(label: np.ndarray, spacing: tuple, distance_mm: float, rng: np.random.Generator) -> tuple | None:
    """Rise of GDL and of the boundary loss for one 2 x 2 false positive ``distance_mm`` from the lesions."""
    distance = ndimage.distance_transform_edt(~label, sampling=spacing)
    ring = np.argwhere(np.abs(distance - distance_mm) < 0.5 * max(spacing))
    ring = ring[(ring[:, 0] < label.shape[0] - 1) & (ring[:, 1] < label.shape[1] - 1)]
    if not len(ring):
        return None
    x, y = ring[rng.integers(len(ring))]
    wrong = label.copy()
    wrong[x : x + 2, y : y + 2] = True
    target = torch.from_numpy(np.stack([~label, label]).astype(np.float32))[None]
    predicted = torch.from_numpy(np.stack([~wrong, wrong]).astype(np.float32))[None]
    gdl = GeneralizedDiceLoss(softmax=False, to_onehot_y=False)
    gdl_rise = float(gdl(predicted, target) - gdl(target, target))
    phi = SignedDistanceMap(num_classes=2, spacing=spacing)(torch.from_numpy(label.astype(np.int64))[None])[None]
    logits = torch.log(predicted.clamp_min(1e-12))  # softmax(log S) = S for a binary S
    boundary = BoundaryLoss()
    bl_rise = float(
        boundary(logits, {"dist_map": phi}) - boundary(torch.log(target.clamp_min(1e-12)), {"dist_map": phi})
    )
    return gdl_rise, bl_rise


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kind", default="wmh", choices=["isles", "wmh"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128], help="in-plane phantom sizes")
    parser.add_argument("--distances", type=float, nargs="+", default=[3.0, 10.0, 20.0], help="mm")
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    rng = np.random.default_rng(args.seed)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for size in args.sizes:
            slices = lesion_slices(args.kind, size, args.cases, args.seed, Path(work) / str(size))
            fraction = np.median([label.mean() for label, _ in slices])
            for d in args.distances:
                rises = [r for label, spacing in slices if (r := penalties(label, spacing, d, rng)) is not None]
                gdl, bl = np.median(np.array(rises), axis=0)
                ratio = np.median([b / g for g, b in rises])
                rows.append((size, fraction, d, len(rises), gdl, bl, ratio))
    lines = [
        f"{args.kind.upper()} phantoms, one 2 x 2 false positive per lesion slice, medians over slices",
        "",
        "| size | lesion share of a slice | distance (mm) | slices | GDL rise | boundary-loss rise | ratio BL / GDL |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {s}² | {f:.2%} | {d:g} | {n} | {g:.4f} | {b:.5f} | {r:.3f} |" for s, f, d, n, g, b, r in rows]
    print("\n".join(lines))
    return rows


if __name__ == "__main__":
    main()
