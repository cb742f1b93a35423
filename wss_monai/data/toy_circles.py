"""The two-circles toy set of the log-barrier paper: segment the darker of two equal circles.

Each image holds two non-overlapping discs of the same radius on a constant background with
additive Gaussian noise; the discs differ only in intensity, and the **darker** one is the target
(label 1, the rest 0). Size and position alone cannot tell the discs apart, so a network trained
only with constraints on the target's size (``[0.9 τ, 1.1 τ]``) and centroid (the true centroid
± 20 px on each axis) must use the centroid to pick the right disc.

Published setting (Kervadec et al., "Constrained deep networks: Lagrangian optimization via
log-barrier extensions", EUSIPCO 2022, toy experiment): 1,000 training and 100 validation images
of 256 × 256, log-barrier ``t`` starting at 1 (reported Dice: log-barrier 0.945, ReLU Lagrangian
0.798, penalty 0.712, standard Lagrangian 0.005, full supervision 0.998). The default size here is
128 × 128 so that it trains on a CPU; pass ``size=(256, 256)`` (and a radius range scaled with
it: the default is 8-16 % of the shorter side) for the published setting.

Image ``i`` is drawn from ``numpy.random.default_rng([seed, i])``: the same seed gives the same
image whatever ``num_images``, and :func:`write_two_circles` draws its validation images as
indices ``num_train, …, num_train + num_val - 1``, i.e. as one set of ``num_train + num_val``
images split in two.

Bounds come in the layout that :class:`wss_monai.losses.InequalityConstraintLoss` reads,
``(N, C' = 1, M, 2)`` as ``[lower, upper]``: size ``M = 1`` in pixels, centroid ``M = 2`` in
voxel indices from 0 in the axis order of :func:`wss_monai.losses.soft_centroid` (row ``H``, then
column ``W``). With the dataset, use ``classes=[1]`` and ``index_key="index"``.

Example:
    >>> circles = make_two_circles(2, size=(64, 64), seed=0)
    >>> circles.images.shape, circles.labels.shape, circles.size_bounds.shape, circles.centroid_bounds.shape
    ((2, 1, 64, 64), (2, 1, 64, 64), (2, 1, 1, 2), (2, 1, 2, 2))
    >>> bool((circles.size_bounds[:, 0, 0, 0] < circles.sizes).all())
    True

Command line::

    python -m wss_monai.data.toy_circles --output_dir /tmp/two_circles --size 256 256
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import numbers
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from monai.transforms import apply_transform

from wss_monai.data.seeded import SeededTransformDataset

__all__ = ["TwoCircles", "TwoCirclesDataset", "load_two_circles", "main", "make_two_circles", "write_two_circles"]

logger = logging.getLogger(__name__)

DEFAULT_SIZE = (128, 128)
DEFAULT_RADIUS_FRACTION = (0.08, 0.16)
"""Default radius range, as fractions of the shorter image side (10-20 px at 128², 20-41 px at 256²)."""
_MAX_TRIES = 1000


class TwoCircles(NamedTuple):
    """Arrays of :func:`make_two_circles` (``N`` images of ``H × W``).

    Attributes:
        images: ``(N, 1, H, W)`` float32.
        labels: ``(N, 1, H, W)`` uint8, 1 on the darker (target) disc, 0 elsewhere.
        size_bounds: ``(N, 1, 1, 2)`` float32 ``[(1 - size_margin) τ, (1 + size_margin) τ]``, τ in pixels.
        centroid_bounds: ``(N, 1, 2, 2)`` float32 ``[c - centroid_margin, c + centroid_margin]`` per axis (row, column).
        sizes: ``(N,)`` float32 true target sizes τ in pixels.
        centroids: ``(N, 2)`` float32 true target centroids (row, column) in voxel indices.
        distractor_centroids: ``(N, 2)`` float32 centroids of the brighter disc.
        radii: ``(N,)`` float32 disc radius of each image.
    """

    images: np.ndarray
    labels: np.ndarray
    size_bounds: np.ndarray
    centroid_bounds: np.ndarray
    sizes: np.ndarray
    centroids: np.ndarray
    distractor_centroids: np.ndarray
    radii: np.ndarray


def _check_size(size: Any) -> tuple[int, int]:
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        size = (size, size)
    try:
        values = tuple(size)
    except TypeError as error:
        raise ValueError(f"size must be an int or a pair (H, W) of ints >= 8, got {size!r}") from error
    ok = len(values) == 2 and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values)
    if not ok or min(values) < 8:
        raise ValueError(f"size must be an int or a pair (H, W) of ints >= 8, got {size!r}")
    return int(values[0]), int(values[1])


def _check_nonneg(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _check_radius_range(radius_range: Any, size: tuple[int, int], min_gap: float) -> tuple[float, float]:
    short = min(size)
    if radius_range is None:
        radius_range = (DEFAULT_RADIUS_FRACTION[0] * short, DEFAULT_RADIUS_FRACTION[1] * short)
    try:
        low, high = (float(r) for r in radius_range)
    except (TypeError, ValueError) as error:
        raise ValueError(f"radius_range must be a pair (low, high) of numbers, got {radius_range!r}") from error
    if not (math.isfinite(low) and math.isfinite(high) and 1 <= low <= high):
        raise ValueError(f"radius_range must satisfy 1 <= low <= high, got {radius_range!r}")
    # the centres range over [m, n - 1 - m] (m = ceil(r)): the farthest two can be is that box's diagonal
    m = math.ceil(high)
    if 2 * m + 1 > short or math.hypot(size[0] - 1 - 2 * m, size[1] - 1 - 2 * m) < 2 * high + min_gap:
        raise ValueError(
            f"radius_range {radius_range!r} is too large for two non-overlapping circles in an image of size {size}"
        )
    return low, high


def _draw_image(
    rng: np.random.Generator,
    size: tuple[int, int],
    radius_range: tuple[float, float],
    min_gap: float,
) -> tuple[float, np.ndarray, np.ndarray]:
    """Radius and two integer centres (row, col) of discs inside the image, at least ``2r + min_gap`` apart."""
    height, width = size
    for _ in range(_MAX_TRIES):
        radius = float(rng.uniform(*radius_range))
        margin = math.ceil(radius)
        centres = np.stack(
            [rng.integers(margin, height - margin, size=2), rng.integers(margin, width - margin, size=2)], axis=1
        )
        if np.hypot(*(centres[0] - centres[1])) >= 2 * radius + min_gap:
            return radius, centres[0], centres[1]
    raise ValueError(
        f"could not place two circles with radius_range {radius_range} and min_gap {min_gap} in an image of "
        f"size {size} after {_MAX_TRIES} tries; use smaller circles"
    )


def make_two_circles(
    num_images: int,
    size: int | Sequence[int] = DEFAULT_SIZE,
    radius_range: Sequence[float] | None = None,
    seed: int = 0,
    noise_std: float = 0.1,
    target_intensity: float = 0.5,
    distractor_intensity: float = 1.0,
    background_intensity: float = 0.0,
    min_gap: float = 2.0,
    size_margin: float = 0.1,
    centroid_margin: float = 20.0,
    first_index: int = 0,
) -> TwoCircles:
    """Images with two equal, non-overlapping discs; the darker one is labelled (Kervadec et al. 2022).

    Image ``i`` (``first_index ≤ i < first_index + num_images``) draws, from
    ``default_rng([seed, i])``, a radius ``r ~ U(radius_range)`` and two integer centres uniform over
    the positions where the disc ``{p : ‖p - c‖ ≤ r}`` lies inside the image, redrawn until
    ``‖c_1 - c_2‖ ≥ 2r + min_gap``. The pixels of each disc take its intensity, the others
    ``background_intensity``, and i.i.d. ``N(0, noise_std²)`` noise is added:
    ``x(p) = I(p) + ε(p)``.
    The two discs have the same pixel shape (same radius, integer centres), hence the same size.

    Args:
        num_images: number of images N >= 1.
        size: ``(H, W)`` or an int for square images (default 128 × 128; published 256 × 256).
        radius_range: ``(low, high)`` radius in pixels; ``None``: 8-16 % of the shorter side.
        seed: seed of the generator of each image.
        noise_std: standard deviation of the additive Gaussian noise.
        target_intensity: intensity of the target disc; must be below ``distractor_intensity``.
        distractor_intensity: intensity of the other (brighter) disc.
        background_intensity: intensity outside the discs.
        min_gap: smallest distance in pixels between the two disc boundaries.
        size_margin: relative margin of the size bounds, in [0, 1] (0.1 in the paper).
        centroid_margin: half-width in pixels of the centroid bounds (20 in the paper).
        first_index: index of the first image (to draw disjoint sets from the same seed).

    Returns:
        A :class:`TwoCircles` of arrays.

    Raises:
        ValueError: a bad argument (the message names it and the value), or circles too large to fit.
    """
    if isinstance(num_images, bool) or not isinstance(num_images, numbers.Integral) or num_images < 1:
        raise ValueError(f"num_images must be an integer >= 1, got {num_images!r}")
    if isinstance(first_index, bool) or not isinstance(first_index, numbers.Integral) or first_index < 0:
        raise ValueError(f"first_index must be an integer >= 0, got {first_index!r}")
    size = _check_size(size)
    noise_std = _check_nonneg("noise_std", noise_std)
    min_gap = _check_nonneg("min_gap", min_gap)
    centroid_margin = _check_nonneg("centroid_margin", centroid_margin)
    size_margin = _check_nonneg("size_margin", size_margin)
    if size_margin > 1:
        raise ValueError(f"size_margin must be in [0, 1], got {size_margin!r}")
    for name, value in (
        ("target_intensity", target_intensity),
        ("distractor_intensity", distractor_intensity),
        ("background_intensity", background_intensity),
    ):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    if not target_intensity < distractor_intensity:
        raise ValueError(
            "target_intensity must be below distractor_intensity (the darker circle is the target), got "
            f"target_intensity={target_intensity!r} and distractor_intensity={distractor_intensity!r}"
        )
    radius_range = _check_radius_range(radius_range, size, min_gap)

    height, width = size
    rows = np.arange(height, dtype=np.float64)[:, None]
    cols = np.arange(width, dtype=np.float64)[None, :]
    images = np.empty((num_images, 1, height, width), dtype=np.float32)
    labels = np.empty((num_images, 1, height, width), dtype=np.uint8)
    radii = np.empty(num_images, dtype=np.float32)
    centres = np.empty((num_images, 2, 2), dtype=np.float32)
    for n in range(num_images):
        rng = np.random.default_rng([int(seed), int(first_index) + n])
        radius, target, distractor = _draw_image(rng, size, radius_range, min_gap)
        in_target = (rows - target[0]) ** 2 + (cols - target[1]) ** 2 <= radius**2
        in_distractor = (rows - distractor[0]) ** 2 + (cols - distractor[1]) ** 2 <= radius**2
        image = np.full(size, background_intensity, dtype=np.float64)
        image[in_target] = target_intensity
        image[in_distractor] = distractor_intensity
        image += rng.normal(0.0, noise_std, size=size) if noise_std > 0 else 0.0
        images[n, 0] = image
        labels[n, 0] = in_target
        radii[n] = radius
        centres[n] = [target, distractor]

    sizes = labels.reshape(num_images, -1).sum(1).astype(np.float32)
    # the disc is symmetric about its integer centre: its centroid is the centre exactly
    centroids = centres[:, 0]
    size_bounds = (sizes[:, None] * np.array([1 - size_margin, 1 + size_margin]))[:, None, None, :]
    centroid_bounds = (centroids[..., None] + np.array([-centroid_margin, centroid_margin]))[:, None]
    logger.debug("drew %d two-circle images of size %s (seed %s)", num_images, size, seed)
    return TwoCircles(
        images=images,
        labels=labels,
        size_bounds=size_bounds.astype(np.float32),
        centroid_bounds=centroid_bounds.astype(np.float32),
        sizes=sizes,
        centroids=centroids.copy(),
        distractor_centroids=centres[:, 1].copy(),
        radii=radii,
    )


def _save(path: Path, circles: TwoCircles, settings: dict) -> None:
    np.savez_compressed(path, **circles._asdict(), settings=np.array(json.dumps(settings)))


def load_two_circles(path: str | Path) -> TwoCircles:
    """Reads a ``.npz`` file written by :func:`write_two_circles`.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file lacks one of the :class:`TwoCircles` arrays.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"two-circles file does not exist: {path}")
    with np.load(path) as data:
        missing = [name for name in TwoCircles._fields if name not in data.files]
        if missing:
            raise ValueError(f"{path} is not a two-circles file: arrays {missing} are missing; has {data.files}")
        return TwoCircles(**{name: data[name] for name in TwoCircles._fields})


def write_two_circles(
    output_dir: str | Path,
    num_train: int = 1000,
    num_val: int = 100,
    seed: int = 0,
    size: int | Sequence[int] = DEFAULT_SIZE,
    **kwargs: Any,
) -> dict[str, Path]:
    """Draws the training and validation sets and saves them as ``train.npz`` and ``val.npz``.

    The validation images are indices ``num_train … num_train + num_val - 1`` of the same seed, so
    the two sets never share an image. Each file holds the :class:`TwoCircles` arrays and the
    generation settings (``settings``, a JSON string).

    Args:
        output_dir: folder to write to (created if needed).
        num_train: training images (1,000 in the paper).
        num_val: validation images (100 in the paper); 0 writes no validation file.
        seed: seed of :func:`make_two_circles`.
        size: image size (published: 256 × 256).
        kwargs: other arguments of :func:`make_two_circles`.

    Returns:
        ``{"training": path, "validation": path}`` (no ``"validation"`` when ``num_val == 0``).
    """
    if "first_index" in kwargs or "num_images" in kwargs:
        raise ValueError("write_two_circles sets num_images and first_index itself; pass num_train and num_val")
    if isinstance(num_val, bool) or not isinstance(num_val, numbers.Integral) or num_val < 0:
        raise ValueError(f"num_val must be an integer >= 0, got {num_val!r}")
    output_dir = Path(output_dir).expanduser()
    output_dir.mkdir(parents=True, exist_ok=True)
    settings = {"seed": int(seed), "size": list(_check_size(size)), **kwargs}
    paths = {}
    train = make_two_circles(num_train, size=size, seed=seed, **kwargs)
    paths["training"] = output_dir / "train.npz"
    _save(paths["training"], train, {**settings, "first_index": 0, "num_images": int(num_train)})
    if num_val:
        val = make_two_circles(num_val, size=size, seed=seed, first_index=int(num_train), **kwargs)
        paths["validation"] = output_dir / "val.npz"
        _save(paths["validation"], val, {**settings, "first_index": int(num_train), "num_images": int(num_val)})
    logger.info("wrote %d training and %d validation two-circle images to %s", num_train, num_val, output_dir)
    return paths


class TwoCirclesDataset(SeededTransformDataset):
    """The two-circles images as dataset items, for the training loop.

    Each item is a dict of tensors: ``image`` ``(1, H, W)`` float32, ``label`` ``(1, H, W)`` int64,
    ``size_bounds`` ``(1, 1, 2)``, ``centroid_bounds`` ``(1, 2, 2)`` (float32, the layout of
    :class:`wss_monai.losses.InequalityConstraintLoss` after collation) and ``index`` (the item's
    position, an int: pass ``index_key="index"`` to the Lagrangian modes).

    A ``transform`` is applied to each item (seeded through ``set_random_state``); geometric
    transforms would move the target away from its centroid bounds, so keep to intensity ones.

    Args:
        data: a :class:`TwoCircles` or the path of a ``.npz`` from :func:`write_two_circles`.
        transform: optional callable applied to each item dict.
        index_key: name of the index key.

    Example:
        >>> dataset = TwoCirclesDataset(make_two_circles(3, size=(32, 32), radius_range=(3, 5)))
        >>> item = dataset[2]
        >>> sorted(item), item["centroid_bounds"].shape
        (['centroid_bounds', 'image', 'index', 'label', 'size_bounds'], torch.Size([1, 2, 2]))
    """

    def __init__(
        self, data: TwoCircles | str | Path, transform: Callable | None = None, index_key: str = "index"
    ) -> None:
        if isinstance(data, (str, Path)):
            data = load_two_circles(data)
        if not isinstance(data, TwoCircles):
            raise ValueError(f"data must be a TwoCircles or the path of a .npz file, got {type(data).__name__}")
        num = len(data.images)
        bad = [name for name, value in data._asdict().items() if len(value) != num]
        if bad:
            raise ValueError(f"arrays {bad} do not have one entry per image ({num})")
        self.data, self.transform, self.index_key = data, transform, index_key

    def __len__(self) -> int:
        return len(self.data.images)

    def __getitem__(self, i: int) -> dict:
        item = {
            "image": torch.from_numpy(np.array(self.data.images[i], dtype=np.float32)),
            "label": torch.from_numpy(np.array(self.data.labels[i], dtype=np.int64)),
            "size_bounds": torch.from_numpy(np.array(self.data.size_bounds[i], dtype=np.float32)),
            "centroid_bounds": torch.from_numpy(np.array(self.data.centroid_bounds[i], dtype=np.float32)),
            self.index_key: int(i),
        }
        return apply_transform(self.transform, item) if self.transform is not None else item


def main(argv: Sequence[str] | None = None) -> dict[str, Path]:
    """Command line of :func:`write_two_circles`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--num_train", type=int, default=1000)
    parser.add_argument("--num_val", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, nargs=2, default=list(DEFAULT_SIZE), metavar=("H", "W"))
    parser.add_argument("--radius_range", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"))
    parser.add_argument("--noise_std", type=float, default=0.1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return write_two_circles(
        args.output_dir,
        num_train=args.num_train,
        num_val=args.num_val,
        seed=args.seed,
        size=tuple(args.size),
        radius_range=args.radius_range,
        noise_std=args.noise_std,
    )


if __name__ == "__main__":
    main()
