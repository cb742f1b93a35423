"""Synthetic T1 brain volumes with small stroke-like lesions, in the ATLAS R1.1 or 2.0 (BIDS) layout.

A brain-like ellipsoid (scalp, skull, CSF rim, grey matter shell, white matter, lateral ventricles)
on a ``(X, Y, Z)`` grid at 1 mm, T1-weighted intensities (white matter brighter than grey matter,
CSF dark), a smooth bias field and Gaussian noise. Lesions: one to three irregular blobs (the
generator of :mod:`wss_monai.data.lesion_phantoms`) in one hemisphere's white and grey matter,
0.2-1 % of the voxels, hypointense on T1 with a low contrast to the grey matter around them.
``lesion_scale`` widens every lesion by that factor along each axis (their volume target by its cube,
so the count is unchanged). On a 64-voxel grid, about 3 mm per voxel for a real head, a lesion is a
few voxels across; ATLAS at 1 mm shows the same lesion some three times as many voxels across.
``lesion_scale=2`` gives semi-axes of 3-8 voxels in-plane: lesions closer to that size in voxels,
at the price of lesions larger relative to the brain.

R1.1 (``layout="r1.1"``): ``Site1/<id>/t01/<id>_t1w_deface_stx.nii.gz`` and the mask; when a case has
more than one lesion, every other case splits them over ``<id>_LesionSmooth_stx.nii.gz`` and
``<id>_LesionSmooth_1_stx.nii.gz`` (the reader's OR-fusion is then needed). 2.0 (``layout="bids"``):
``Training/R001/sub-r001sNNN/ses-1/anat/sub-r001sNNN_ses-1_space-MNI152NLin2009aSym_{T1w,label-L_desc-T1lesion_mask}.nii.gz``.
Case ``k`` comes from ``default_rng([seed, k])``; both layouts hold the same arrays for a seed.

Example:
    >>> import tempfile
    >>> root = make_atlas_phantoms(tempfile.mkdtemp(), num_cases=1, seed=0, shape=(32, 32, 12))
    >>> sorted(str(p.relative_to(root)) for p in root.rglob("*.nii.gz"))[0]
    'Site1/000001/t01/000001_LesionSmooth_stx.nii.gz'
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from wss_monai.data.lesion_phantoms import _add_lesions, _LesionKind, _smooth_noise
from wss_monai.data.phantoms import _save

__all__ = ["make_atlas_phantoms", "main"]

logger = logging.getLogger(__name__)

_LESION = _LesionKind(
    value=1, axes_low=(1.5, 1.5, 1.5), axes_high=(4.0, 4.0, 3.0), max_lobes=3, min_count=1, max_count=3
)


def _subject(
    rng: np.random.Generator, shape: Sequence[int], lesion_scale: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    nx, ny, nz = shape
    x, y, z = np.meshgrid(*(np.arange(n) - (n - 1) / 2 for n in shape), indexing="ij")
    semi = np.array(shape) * rng.uniform(0.40, 0.46, 3)
    noise = _smooth_noise(rng, shape, (3.0, 3.0, 3.0))
    r = np.sqrt((x / semi[0]) ** 2 + (y / semi[1]) ** 2 + (z / semi[2]) ** 2) + 0.03 * noise
    brain = r < 0.82
    white = r < 0.62 + 0.05 * noise
    ventricles = ((np.abs(x) - 0.07 * nx) / (0.05 * nx)) ** 2 + (y / (0.2 * ny)) ** 2 + (z / (0.15 * nz)) ** 2 < 1.0
    t1 = np.select(
        [ventricles, white, brain, r < 0.88, r < 0.95, r < 1.0],
        [0.15, 0.85, 0.55, 0.12, 0.2, 0.7],
        default=0.02,
    ).astype(np.float32)
    label = np.zeros(shape, np.uint8)
    side = 1.0 if rng.random() < 0.5 else -1.0
    hemisphere = (side * x > 0.08 * nx) & brain & ~ventricles & (r < 0.78)
    target = rng.uniform(0.002, 0.01) * brain.sum() * lesion_scale**3
    kind = replace(
        _LESION,
        axes_low=tuple(lesion_scale * a for a in _LESION.axes_low),
        axes_high=tuple(lesion_scale * a for a in _LESION.axes_high),
    )
    _add_lesions(rng, label, hemisphere.astype(float), hemisphere, noise, kind, target, 1.5 * target)
    lesion = label > 0
    t1 = np.where(lesion, rng.uniform(0.3, 0.42) + 0.05 * noise, t1)
    bias = 1.0 + 0.1 * _smooth_noise(rng, shape, (nx / 4, ny / 4, nz / 4))
    t1 = ndimage.gaussian_filter(t1 * bias, 0.6) + rng.normal(0.0, 0.04, shape)
    return t1.astype(np.float32), label


def make_atlas_phantoms(
    output_dir: str | Path,
    num_cases: int = 8,
    seed: int = 0,
    shape: Sequence[int] = (64, 72, 56),
    layout: str = "r1.1",
    lesion_scale: float = 1.0,
) -> Path:
    """Write ATLAS-like phantoms in the ``layout`` (``"r1.1"`` or ``"bids"``) under ``output_dir``; return it.

    ``lesion_scale`` (> 0) multiplies every lesion's semi-axes (1: the default small lesions).
    """
    if layout not in ("r1.1", "bids"):
        raise ValueError(f"layout must be 'r1.1' or 'bids', not {layout!r}")
    if isinstance(num_cases, bool) or int(num_cases) != num_cases or num_cases < 1:
        raise ValueError(f"num_cases must be an integer >= 1, not {num_cases!r}")
    if len(shape) != 3 or min(shape) < 12:
        raise ValueError(f"shape must be (X, Y, Z) with each >= 12, not {tuple(shape)}")
    if isinstance(lesion_scale, bool) or not isinstance(lesion_scale, (int, float)) or not lesion_scale > 0:
        raise ValueError(f"lesion_scale must be a number > 0, not {lesion_scale!r}")
    root = Path(output_dir)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = -np.array(shape) / 2
    for index in range(int(num_cases)):
        rng = np.random.default_rng([int(seed), index])
        t1, label = _subject(rng, tuple(int(s) for s in shape), float(lesion_scale))
        if layout == "r1.1":
            subject = f"{index + 1:06d}"
            folder = root / "Site1" / subject / "t01"
            folder.mkdir(parents=True, exist_ok=True)
            _save(t1, affine, folder / f"{subject}_t1w_deface_stx.nii.gz")
            components, count = ndimage.label(label)
            if count > 1 and index % 2 == 1:  # split the lesions over two masks
                odd = ((components % 2 == 1) & (components > 0)).astype(np.uint8)
                even = ((components % 2 == 0) & (components > 0)).astype(np.uint8)
                _save(odd, affine, folder / f"{subject}_LesionSmooth_stx.nii.gz")
                _save(even, affine, folder / f"{subject}_LesionSmooth_1_stx.nii.gz")
            else:
                _save(label, affine, folder / f"{subject}_LesionSmooth_stx.nii.gz")
        else:
            subject = f"sub-r001s{index + 1:03d}"
            folder = root / "Training" / "R001" / subject / "ses-1" / "anat"
            folder.mkdir(parents=True, exist_ok=True)
            stem = f"{subject}_ses-1_space-MNI152NLin2009aSym"
            _save(t1, affine, folder / f"{stem}_T1w.nii.gz")
            _save(label, affine, folder / f"{stem}_label-L_desc-T1lesion_mask.nii.gz")
    logger.info("wrote %d ATLAS %s phantom cases to %s", num_cases, layout, root)
    return root


def main(argv: Sequence[str] | None = None) -> Path:
    """Command line: ``python -m wss_monai.data.atlas_phantoms --output_dir DIR [--layout bids]``."""
    parser = argparse.ArgumentParser(
        prog="python -m wss_monai.data.atlas_phantoms", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--num_cases", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shape", type=int, nargs=3, default=(64, 72, 56))
    parser.add_argument("--layout", default="r1.1", choices=("r1.1", "bids"))
    parser.add_argument("--lesion_scale", type=float, default=1.0, help="factor on every lesion's semi-axes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return make_atlas_phantoms(args.output_dir, args.num_cases, args.seed, args.shape, args.layout, args.lesion_scale)


if __name__ == "__main__":
    main()
