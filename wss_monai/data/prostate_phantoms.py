"""Synthetic prostate-like T2 volumes written in the raw PROMISE12 layout (MetaImage).

Each case is an axial stack ``(X, Y, Z)`` with anisotropic spacing (in-plane 0.4-0.7 mm, 2.2-4 mm
between slices): a pelvis-like ellipse of soft tissue in a dark background, a bright bladder above the
organ in some slices, a ring of brighter fat, and the **organ**: an ellipsoid with a smoothly perturbed
surface (the prostate), only slightly brighter than the tissue around it (contrast 0.06-0.12 against
a noise of 0.05), with a darker central zone. A smooth multiplicative bias field and Gaussian noise
are added. Labels: 0 background, 1 organ (``CaseXX_segmentation.mhd``, uint8).

Case ``k`` is drawn from ``numpy.random.default_rng([seed, k])``, so a seed gives the same cases
whatever ``num_cases``.

Example:
    >>> import tempfile
    >>> root = make_promise12_phantoms(tempfile.mkdtemp(), num_cases=2, seed=0, shape=(32, 32), num_slices=(4, 4))
    >>> sorted(p.name for p in root.glob("*.mhd"))
    ['Case00.mhd', 'Case00_segmentation.mhd', 'Case01.mhd', 'Case01_segmentation.mhd']

Command line::

    python -m wss_monai.data.prostate_phantoms --output_dir /tmp/promise12_phantoms --num_cases 20
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

__all__ = ["make_promise12_phantoms", "main"]

logger = logging.getLogger(__name__)


def _write_mhd(array: np.ndarray, spacing: Sequence[float], origin: Sequence[float], path: Path) -> None:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.transpose(array, (2, 1, 0)))  # (x, y, z) -> SimpleITK's (z, y, x)
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetOrigin(tuple(float(o) for o in origin))
    sitk.WriteImage(image, str(path))


def _case(rng: np.random.Generator, shape: Sequence[int], nz: int) -> tuple[np.ndarray, np.ndarray, tuple]:
    nx, ny = shape
    spacing = (*(rng.uniform(0.4, 0.7),) * 2, rng.uniform(2.2, 4.0))
    x, y, z = np.meshgrid(np.arange(nx), np.arange(ny), np.arange(nz), indexing="ij")
    centre = np.array([nx / 2, ny / 2, (nz - 1) / 2]) + rng.uniform(-0.08, 0.08, 3) * np.array([nx, ny, nz])
    axes = np.array([nx * rng.uniform(0.12, 0.18), ny * rng.uniform(0.10, 0.15), max(nz * rng.uniform(0.3, 0.4), 1.2)])
    noise = ndimage.gaussian_filter(rng.standard_normal((nx, ny, nz)), (nx / 10, ny / 10, 1.0))
    noise /= max(float(noise.std()), 1e-6)
    radius = np.sqrt(
        ((x - centre[0]) / axes[0]) ** 2 + ((y - centre[1]) / axes[1]) ** 2 + ((z - centre[2]) / axes[2]) ** 2
    )
    organ = radius + 0.12 * noise < 1.0
    organ[tuple(np.round(centre).astype(int))] = True
    pelvis = ((x - nx / 2) / (0.45 * nx)) ** 2 + ((y - ny / 2) / (0.4 * ny)) ** 2 < 1.0
    fat = pelvis & ~(((x - nx / 2) / (0.38 * nx)) ** 2 + ((y - ny / 2) / (0.33 * ny)) ** 2 < 1.0)
    bladder = (
        ((x - centre[0]) / (axes[0] * 1.2)) ** 2 + ((y - centre[1] + 2.2 * axes[1]) / (axes[1] * 1.1)) ** 2 < 1.0
    ) & (z >= centre[2])
    tissue = rng.uniform(0.35, 0.45)
    image = np.where(pelvis, tissue, 0.05)
    image = np.where(fat, tissue + 0.3, image)
    image = np.where(bladder & pelvis & ~organ, 0.9, image)
    contrast = rng.uniform(0.06, 0.12)
    image = np.where(organ, tissue + contrast - 0.05 * (radius < 0.5), image)
    bias = 1.0 + 0.15 * ndimage.gaussian_filter(rng.standard_normal((nx, ny, nz)), (nx / 4, ny / 4, nz))
    image = ndimage.gaussian_filter(image * bias, (0.7, 0.7, 0.0)) + rng.normal(0.0, 0.05, image.shape)
    return image.astype(np.float32), organ.astype(np.uint8), spacing


def make_promise12_phantoms(
    output_dir: str | Path,
    num_cases: int = 8,
    seed: int = 0,
    shape: Sequence[int] = (96, 96),
    num_slices: Sequence[int] = (12, 20),
) -> Path:
    """Write ``CaseXX.mhd`` / ``CaseXX_segmentation.mhd`` phantoms (XX from 00) in ``output_dir``.

    Args:
        output_dir: folder to write to (created).
        num_cases: number of cases.
        seed: case ``k`` is drawn from ``default_rng([seed, k])``.
        shape: in-plane size ``(X, Y)``, each >= 16.
        num_slices: ``(min, max)`` slices per case (inclusive), min >= 2.

    Returns:
        ``Path(output_dir)``, ready for :func:`wss_monai.data.promise12.find_promise12_cases`.
    """
    if isinstance(num_cases, bool) or int(num_cases) != num_cases or num_cases < 1:
        raise ValueError(f"num_cases must be an integer >= 1, not {num_cases!r}")
    if len(shape) != 2 or min(shape) < 16:
        raise ValueError(f"shape must be (X, Y) with both >= 16, not {tuple(shape)}")
    if len(num_slices) != 2 or not 2 <= num_slices[0] <= num_slices[1]:
        raise ValueError(f"num_slices must be (min, max) with 2 <= min <= max, not {tuple(num_slices)}")
    root = Path(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    for index in range(int(num_cases)):
        rng = np.random.default_rng([int(seed), index])
        nz = int(rng.integers(num_slices[0], num_slices[1] + 1))
        image, label, spacing = _case(rng, shape, nz)
        origin = rng.uniform(-50.0, 50.0, 3)
        _write_mhd(image, spacing, origin, root / f"Case{index:02d}.mhd")
        _write_mhd(label, spacing, origin, root / f"Case{index:02d}_segmentation.mhd")
    logger.info("wrote %d PROMISE12 phantom cases to %s", num_cases, root)
    return root


def main(argv: Sequence[str] | None = None) -> Path:
    """Command line: ``python -m wss_monai.data.prostate_phantoms --output_dir DIR [--num_cases N]``."""
    parser = argparse.ArgumentParser(
        prog="python -m wss_monai.data.prostate_phantoms", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--num_cases", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shape", type=int, nargs=2, default=(96, 96))
    parser.add_argument("--num_slices", type=int, nargs=2, default=(12, 20))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return make_promise12_phantoms(args.output_dir, args.num_cases, args.seed, args.shape, args.num_slices)


if __name__ == "__main__":
    main()
