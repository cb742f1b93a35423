"""Scribbles generated from a full label: erosion style and human (skeleton stroke) style.

References:
    - Erosion scribbles: H. Kervadec et al., "Constrained-CNN losses for weakly supervised
      segmentation", MedIA 2019 (each structure eroded with a 10-pixel kernel, smaller kernels
      until the result is not empty; about 0.1 % of the pixels of ACDC labelled).
    - Human-style strokes and "shortened scribbles" (length 1 = full scribble, 0 = click):
      D. Marin, M. Tang et al., "Beyond gradient descent for regularized segmentation losses",
      CVPR 2019; M. Tang et al., "On regularized losses for weakly-supervised CNN segmentation",
      ECCV 2018 (ScribbleSup-style scribbles).
"""

from __future__ import annotations

import itertools
from functools import lru_cache
from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.transforms import Randomizable, Transform
from monai.utils import TransformBackends, convert_data_type
from scipy import ndimage, sparse
from scipy.sparse import csgraph
from skimage.morphology import skeletonize

from wss_monai.constants import UNLABELLED
from wss_monai.transforms._slices import (
    KeyLoopd,
    RandomKeyLoopd,
    apply_per_slice,
    check_int,
    check_number,
    check_spatial_dims,
    check_unlabelled,
    class_map,
    to_input_type,
)

__all__ = [
    "ErosionScribble",
    "ErosionScribbled",
    "ShortenScribble",
    "ShortenScribbled",
    "StrokeScribble",
    "StrokeScribbled",
    "box_erosion",
    "shorten_strokes",
]


def box_erosion(mask: np.ndarray, size: int, border_value: int = 0) -> np.ndarray:
    """Binary erosion of ``mask`` by a square / cube of side ``size``, one axis at a time.

    Equal to ``scipy.ndimage.binary_erosion(mask, np.ones((size,) * mask.ndim), border_value=...)``
    (a box is the Minkowski sum of segments along the axes) but costs O(ndim · size) per voxel
    instead of O(size ** ndim).

    Example:
        >>> import numpy as np
        >>> m = np.zeros((6, 6), bool); m[1:5, 1:5] = True
        >>> int(box_erosion(m, 3).sum())
        4
    """
    out = np.asarray(mask, dtype=bool)
    for axis in range(out.ndim):
        shape = [1] * out.ndim
        shape[axis] = size
        out = ndimage.binary_erosion(out, structure=np.ones(shape, bool), border_value=border_value)
    return out


class ErosionScribble(Transform):
    """Erosion-style scribbles: the eroded mask of each class present.

    For each class k present in the slice (``spatial_dims=2``) or volume (``spatial_dims=3``), the
    mask ``label == k`` is eroded by a square (cube) of side ``kernel_size``; while the result is
    empty the side shrinks by one (side 1 is the mask itself), so a class present always keeps at
    least one voxel. The image border counts as background: the background class is eroded with
    ``border_value=1`` so that background touching the border survives, foreground classes with
    ``border_value=0``.

    Args:
        num_classes: number of classes K (background included), >= 2.
        kernel_size: side of the first structuring element, >= 1 (10 in Kervadec et al.).
        spatial_dims: 2: each slice of a 3D input along its last axis on its own; 3: whole volume.
        include_background: also scribble class 0.
        unlabelled: value of the voxels left unannotated.

    Input ``(1, H, W[, D])`` integer class map (numpy, torch or MetaTensor); output a float32 map of
    the same shape and type holding the class index on the scribbles and ``unlabelled`` elsewhere.

    Example:
        >>> import numpy as np
        >>> label = np.zeros((1, 8, 8), dtype=np.int64)
        >>> label[0, 2:6, 2:6] = 1
        >>> weak = ErosionScribble(num_classes=2, kernel_size=3)(label)
        >>> weak.shape, weak.dtype
        ((1, 8, 8), dtype('float32'))
        >>> np.argwhere(weak[0] == 1).tolist()
        [[3, 3], [3, 4], [4, 3], [4, 4]]
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        num_classes: int,
        kernel_size: int = 10,
        spatial_dims: int = 2,
        include_background: bool = True,
        unlabelled: float = UNLABELLED,
    ) -> None:
        self.num_classes = check_int("num_classes", num_classes, 2)
        self.kernel_size = check_int("kernel_size", kernel_size, 1)
        self.spatial_dims = check_spatial_dims(spatial_dims)
        self.include_background = bool(include_background)
        self.unlabelled = check_unlabelled(unlabelled, self.num_classes)

    def _scribble(self, lab: np.ndarray) -> np.ndarray:
        out = np.full(lab.shape, self.unlabelled, dtype=np.float32)
        for k in np.unique(lab):
            if k == 0 and not self.include_background:
                continue
            mask = lab == k
            border = 1 if k == 0 else 0
            for size in range(self.kernel_size, 0, -1):  # size 1 is the identity: never empty
                eroded = box_erosion(mask, size, border_value=border)
                if eroded.any():
                    break
            out[eroded] = k
        return out

    def __call__(self, label: Any) -> Any:
        """Args: label: ``(1, H, W[, D])`` class map. Returns: ``(1, H, W[, D])`` float32 weak map."""
        lab = class_map(label, self.num_classes)
        return to_input_type(apply_per_slice(self._scribble, lab, self.spatial_dims)[None], label)


@lru_cache(maxsize=2)
def _half_offsets(ndim: int) -> tuple[np.ndarray, np.ndarray]:
    """Neighbour offsets of the full (8 / 26) neighbourhood, one of each ± pair, and their lengths."""
    offsets = np.array([o for o in itertools.product((-1, 0, 1), repeat=ndim) if o > (0,) * ndim])
    return offsets, np.linalg.norm(offsets, axis=1)


def _skeleton_graph(skeleton: np.ndarray) -> tuple[np.ndarray, sparse.csr_matrix]:
    """Voxel coordinates of a skeleton and its (8 / 26)-adjacency graph, edges weighted by length."""
    coords = np.argwhere(skeleton)
    n = len(coords)
    index = np.full(np.add(skeleton.shape, 2), -1, dtype=np.int64)
    index[tuple((coords + 1).T)] = np.arange(n)
    offsets, lengths = _half_offsets(skeleton.ndim)
    rows, cols, weights = [], [], []
    for offset, length in zip(offsets, lengths):  # loop over the 4 / 13 directions, not voxels
        neighbour = index[tuple((coords + 1 + offset).T)]
        found = np.nonzero(neighbour >= 0)[0]
        rows.append(found)
        cols.append(neighbour[found])
        weights.append(np.full(found.size, length))
    graph = sparse.coo_matrix(
        (np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    ).tocsr()
    return coords, graph


def shorten_strokes(strokes: np.ndarray, length_fraction: float, rng: np.random.RandomState) -> np.ndarray:
    """Keeps a contiguous stretch of ``round(length_fraction · |P|)`` voxels of every connected stroke P.

    In each (8- / 26-connected) piece P of the non-empty boolean mask ``strokes`` a start voxel s is drawn
    uniformly, and the voxels geodesically nearest to s along P are kept. One piece (drawn with
    probability ∝ |P|) keeps at least its start voxel, so ``length_fraction=0`` leaves one click and
    ``1`` every voxel; for a fixed ``rng`` state the kept set grows with ``length_fraction``.
    Shortened scribbles: D. Marin, M. Tang et al., CVPR 2019.

    Example:
        >>> import numpy as np
        >>> line = np.zeros((3, 10), bool); line[1] = True
        >>> [int(shorten_strokes(line, f, np.random.RandomState(0)).sum()) for f in (0.0, 0.5, 1.0)]
        [1, 5, 10]
    """
    coords, graph = _skeleton_graph(strokes)
    n = len(coords)
    num_pieces, piece = csgraph.connected_components(graph, directed=False)
    draws = rng.random_sample(num_pieces + 1)  # same draws for every length_fraction
    sizes = np.bincount(piece, minlength=num_pieces)
    first = np.concatenate([[0], np.cumsum(sizes)[:-1]])  # position of each piece in `by_piece`
    by_piece = np.argsort(piece, kind="stable")
    starts = by_piece[first + np.minimum((draws[:-1] * sizes).astype(np.int64), sizes - 1)]
    keep = np.rint(length_fraction * sizes).astype(np.int64)
    clicked = piece[min(int(draws[-1] * n), n - 1)]
    keep[clicked] = max(keep[clicked], 1)
    distance = csgraph.dijkstra(graph, directed=False, indices=starts, min_only=True)
    order = np.lexsort((np.arange(n), distance, piece))  # by piece, then distance, then index
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - first[piece[order]]
    kept = coords[rank < keep[piece]]
    out = np.zeros(strokes.shape, bool)
    out[tuple(kept.T)] = True
    return out


class StrokeScribble(Randomizable, Transform):
    """Human-style scribbles: strokes along the skeleton of each class, optionally shortened.

    For each class k present in the slice (``spatial_dims=2``) or volume (``spatial_dims=3``):

    * region: a foreground class's mask eroded by one voxel (the mask itself if that empties it);
      for the background, the band of background voxels at Euclidean distance
      ``[m, 2m]`` (``m = background_margin``, in voxels) from the foreground, or the whole
      background when there is no foreground (or the band is empty);
    * skeleton of the region (``skimage.morphology.skeletonize``, 2D or 3D; the region's deepest
      voxel if the skeleton is empty), split into 8- (26-) connected pieces;
    * shortening: in each piece P a start voxel s is drawn uniformly and the
      ``n_P = round(length_fraction · |P|)`` voxels geodesically nearest to s along the skeleton are
      kept: a contiguous stretch of the stroke through s. One piece (drawn with probability
      ∝ |P|) keeps at least its start voxel, so ``length_fraction=0`` is a single click per class
      and ``1`` the full skeleton; for a fixed seed the kept set grows with ``length_fraction``;
    * ``width > 1`` dilates the kept stroke by a square (cube) of side ``width``, clipped to the
      class mask.

    Every voxel of the result lies in the mask of its class. The draws use ``self.R``; seed them
    with ``set_random_state(seed)``. They depend on the label, so they happen in ``__call__``.

    Args:
        num_classes: number of classes K (background included), >= 2.
        length_fraction: fraction of each skeleton piece kept, in [0, 1].
        width: stroke width in voxels, >= 1.
        spatial_dims: 2: each slice of a 3D input along its last axis on its own; 3: whole volume.
        include_background: also scribble class 0.
        background_margin: distance m > 0 (voxels) of the background band from the foreground.
        unlabelled: value of the voxels left unannotated.

    Example:
        >>> import numpy as np
        >>> label = np.zeros((1, 20, 20), dtype=np.int64)
        >>> label[0, 5:15, 3:17] = 1
        >>> stroke = StrokeScribble(num_classes=2, length_fraction=0.0).set_random_state(0)
        >>> weak = stroke(label)
        >>> [int((weak == k).sum()) for k in (0, 1)]  # one click per class
        [1, 1]
        >>> bool(np.all(label[weak >= 0] == weak[weak >= 0]))
        True
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        num_classes: int,
        length_fraction: float = 1.0,
        width: int = 1,
        spatial_dims: int = 2,
        include_background: bool = True,
        background_margin: float = 5,
        unlabelled: float = UNLABELLED,
    ) -> None:
        self.num_classes = check_int("num_classes", num_classes, 2)
        self.length_fraction = check_number("length_fraction", length_fraction, 0.0, 1.0)
        self.width = check_int("width", width, 1)
        self.spatial_dims = check_spatial_dims(spatial_dims)
        self.include_background = bool(include_background)
        self.background_margin = check_number("background_margin", background_margin, 0.0, low_open=True)
        self.unlabelled = check_unlabelled(unlabelled, self.num_classes)

    def randomize(self, data: Any = None) -> None:
        """No-op: the draws depend on the label's skeletons and are made in ``__call__``."""

    def _region(self, lab: np.ndarray, k: int, mask: np.ndarray) -> np.ndarray:
        if k == 0:
            if mask.all():
                return mask
            distance = ndimage.distance_transform_edt(mask)
            m = self.background_margin
            band = (distance >= m) & (distance <= 2 * m)
            return band if band.any() else mask
        eroded = ndimage.binary_erosion(mask)
        return eroded if eroded.any() else mask

    def _stroke(self, region: np.ndarray) -> np.ndarray:
        skeleton = skeletonize(region)
        if not skeleton.any():
            deepest = np.argmax(ndimage.distance_transform_edt(region))
            skeleton = np.zeros(region.shape, bool)
            skeleton.flat[deepest] = True
        return shorten_strokes(skeleton, self.length_fraction, self.R)

    def _scribble(self, lab: np.ndarray) -> np.ndarray:
        out = np.full(lab.shape, self.unlabelled, dtype=np.float32)
        for k in np.unique(lab):
            if k == 0 and not self.include_background:
                continue
            mask = lab == k
            stroke = self._stroke(self._region(lab, int(k), mask))
            if self.width > 1:
                stroke = ndimage.binary_dilation(stroke, structure=np.ones((self.width,) * lab.ndim, bool)) & mask
            out[stroke] = k
        return out

    def __call__(self, label: Any) -> Any:
        """Args: label: ``(1, H, W[, D])`` class map. Returns: ``(1, H, W[, D])`` float32 weak map."""
        lab = class_map(label, self.num_classes)
        return to_input_type(apply_per_slice(self._scribble, lab, self.spatial_dims)[None], label)


class ShortenScribble(Randomizable, Transform):
    """Shortened scribbles: each class's strokes of an existing scribble map cut to a fraction of their length.

    For each class k scribbled in the slice (``spatial_dims=2``) or volume (``spatial_dims=3``), every
    connected stroke of ``weak == k`` keeps a contiguous stretch of ``round(length_fraction · |P|)``
    voxels around a random start (:func:`shorten_strokes`), and at least one voxel of the class is kept:
    ``1`` is the identity, ``0`` one click per class scribbled. This turns annotators' real scribbles
    (e.g. ACDC's) into the shortened scribbles of D. Marin, M. Tang et al., CVPR 2019.

    Args:
        num_classes: number of classes K (background included), >= 2.
        length_fraction: fraction of each stroke kept, in [0, 1].
        spatial_dims: 2: each slice of a 3D input along its last axis on its own; 3: whole volume.
        unlabelled: value of the voxels left unannotated, in the input and the output.

    Input and output: ``(1, H, W[, D])`` float weak map (class index on the scribbles, ``unlabelled``
    elsewhere), same shape and type.

    Example:
        >>> import numpy as np
        >>> weak = np.full((1, 12, 12), -1.0, dtype=np.float32)
        >>> weak[0, 2, 1:11] = 1; weak[0, 9, 1:11] = 0
        >>> short = ShortenScribble(num_classes=2, length_fraction=0.0, unlabelled=-1).set_random_state(0)(weak)
        >>> [int((short == k).sum()) for k in (0, 1)]  # one click per class
        [1, 1]
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self, num_classes: int, length_fraction: float = 1.0, spatial_dims: int = 2, unlabelled: float = UNLABELLED
    ) -> None:
        self.num_classes = check_int("num_classes", num_classes, 2)
        self.length_fraction = check_number("length_fraction", length_fraction, 0.0, 1.0)
        self.spatial_dims = check_spatial_dims(spatial_dims)
        self.unlabelled = check_unlabelled(unlabelled, self.num_classes)

    def randomize(self, data: Any = None) -> None:
        """No-op: the draws depend on the strokes and are made in ``__call__``."""

    def _shorten(self, weak: np.ndarray) -> np.ndarray:
        out = np.full(weak.shape, self.unlabelled, dtype=np.float32)
        for k in range(self.num_classes):
            strokes = weak == k
            if strokes.any():
                out[shorten_strokes(strokes, self.length_fraction, self.R)] = k
        return out

    def __call__(self, weak: Any) -> Any:
        """Args: weak: ``(1, H, W[, D])`` scribble map. Returns: the shortened map, same shape and type."""
        if self.length_fraction == 1.0:
            return weak
        array = np.asarray(convert_data_type(weak, np.ndarray)[0], dtype=np.float32)
        if array.ndim < 3 or array.shape[0] != 1:
            raise ValueError(f"ShortenScribble expects a (1, H, W[, D]) scribble map, got shape {tuple(array.shape)}.")
        scribbled = array[0] != self.unlabelled
        values = np.unique(array[0][scribbled])
        if values.size and (values.min() < 0 or values.max() >= self.num_classes or np.any(values % 1)):
            raise ValueError(
                f"ShortenScribble: scribble values must be class indices in range({self.num_classes}) or the "
                f"unlabelled value {self.unlabelled}, got {values.tolist()}."
            )
        return to_input_type(apply_per_slice(self._shorten, array[0], self.spatial_dims)[None], weak)


class ErosionScribbled(KeyLoopd):
    """Dictionary wrapper of :class:`ErosionScribble`: ``d[output_key] = ErosionScribble(...)(d[key])``.

    Args:
        keys: keys of the full labels.
        output_key: key of the result; ``None`` replaces each label (required with several keys).
        Other arguments: see :class:`ErosionScribble`.

    Example:
        >>> import numpy as np
        >>> label = np.zeros((1, 8, 8), dtype=np.int64)
        >>> label[0, 2:6, 2:6] = 1
        >>> out = ErosionScribbled(keys="label", num_classes=2, kernel_size=3)({"label": label})
        >>> sorted(out), int((out["scribble"] == 1).sum())
        (['label', 'scribble'], 4)
    """

    def __init__(
        self,
        keys: KeysCollection = "label",
        *,
        num_classes: int,
        kernel_size: int = 10,
        spatial_dims: int = 2,
        include_background: bool = True,
        unlabelled: float = UNLABELLED,
        output_key: str | None = "scribble",
        allow_missing_keys: bool = False,
    ) -> None:
        transform = ErosionScribble(num_classes, kernel_size, spatial_dims, include_background, unlabelled)
        super().__init__(keys, output_key, transform, allow_missing_keys)


class StrokeScribbled(RandomKeyLoopd):
    """Dictionary wrapper of :class:`StrokeScribble`; ``set_random_state`` seeds the array transform.

    Args:
        keys: keys of the full labels.
        output_key: key of the result; ``None`` replaces each label (required with several keys).
        Other arguments: see :class:`StrokeScribble`.

    Example:
        >>> import numpy as np
        >>> label = np.zeros((1, 20, 20), dtype=np.int64)
        >>> label[0, 5:15, 3:17] = 1
        >>> t = StrokeScribbled(keys="label", num_classes=2, length_fraction=0.5).set_random_state(1)
        >>> out = t({"label": label})
        >>> bool(np.all(label[out["scribble"] >= 0] == out["scribble"][out["scribble"] >= 0]))
        True
    """

    def __init__(
        self,
        keys: KeysCollection = "label",
        *,
        num_classes: int,
        length_fraction: float = 1.0,
        width: int = 1,
        spatial_dims: int = 2,
        include_background: bool = True,
        background_margin: float = 5,
        unlabelled: float = UNLABELLED,
        output_key: str | None = "scribble",
        allow_missing_keys: bool = False,
    ) -> None:
        transform = StrokeScribble(
            num_classes, length_fraction, width, spatial_dims, include_background, background_margin, unlabelled
        )
        super().__init__(keys, output_key, transform, allow_missing_keys)


class ShortenScribbled(RandomKeyLoopd):
    """Dictionary wrapper of :class:`ShortenScribble`; ``set_random_state`` seeds the array transform.

    Args:
        keys: keys of the scribble maps.
        output_key: key of the result; ``None`` replaces each map (required with several keys).
        Other arguments: see :class:`ShortenScribble`.

    Example:
        >>> import numpy as np
        >>> weak = np.full((1, 12, 12), -1.0, dtype=np.float32); weak[0, 2, 1:11] = 1
        >>> t = ShortenScribbled(keys="scribble", num_classes=2, length_fraction=0.5, unlabelled=-1)
        >>> int((t.set_random_state(0)({"scribble": weak})["scribble"] == 1).sum())
        5
    """

    def __init__(
        self,
        keys: KeysCollection = "scribble",
        *,
        num_classes: int,
        length_fraction: float = 1.0,
        spatial_dims: int = 2,
        unlabelled: float = UNLABELLED,
        output_key: str | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        transform = ShortenScribble(num_classes, length_fraction, spatial_dims, unlabelled)
        super().__init__(keys, output_key, transform, allow_missing_keys)
