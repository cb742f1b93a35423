"""Box geometry in torch: boxes from a box-id map, the tightness segments of a box, sums over sub-boxes.

Everything here works on all boxes of a batch at once (no Python loop over boxes, segments or
voxels), in 2D and 3D, on any device. A box is half-open in voxel indices: ``lo ≤ p < hi`` on
every spatial axis.

**Tightness segments** (Kervadec et al., "Bounding boxes for weakly supervised segmentation:
global constraints get close to full supervision", MIDL 2020): along each spatial axis the box is
cut into bands of ``width`` consecutive lines perpendicular to that axis, spanning the box on the
other axes (in 2D: bands of rows and bands of columns; in 3D: slabs of planes along each of the
three axes). If the box is tight, every line (2D) or plane (3D) crossing it meets the object, so
the band holds at least as many foreground voxels as it has lines: ``Σ_{p∈band} S(p) ≥ band width``.
The last band of an axis is shorter when the box side is not a multiple of ``width``; it is kept
with its own width as target, so the bands cover the box exactly (the original code left the last
row out). A segment is stored as its sub-box ``(lo, hi)`` (``2N`` integers), never as a dense mask.

**Sums over sub-boxes** come from a summed-area table (integral image): one cumulative sum per
axis of the map, then ``2^N`` look-ups per segment. Its gradient is exact (cumsum and gather).

Example:
    >>> import torch
    >>> lo, hi = torch.tensor([[0, 0]]), torch.tensor([[7, 3]])   # a 7 x 3 box
    >>> seg = box_segments(lo, hi, width=5)
    >>> seg.lo.tolist(), seg.hi.tolist(), seg.target.tolist()
    ([[0, 0], [5, 0], [0, 0]], [[5, 3], [7, 3], [7, 3]], [5, 2, 3])
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import NamedTuple

import torch

__all__ = ["BoxTable", "Segments", "box_segments", "boxes_from_ids", "segment_sums", "sub_box_sums"]


class Segments(NamedTuple):
    """Tightness segments of a set of boxes, ``S`` of them.

    Attributes:
        box: index of the box of each segment ``(S,)``.
        axis: the axis the band is cut along ``(S,)``.
        lo: first voxel of each segment per axis ``(S, N)``.
        hi: end (exclusive) of each segment per axis ``(S, N)``.
        target: the band's width along ``axis`` ``(S,)``: ``width``, or less for the last band.
    """

    box: torch.Tensor
    axis: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor
    target: torch.Tensor


class BoxTable(NamedTuple):
    """The boxes of a batch of box-id maps, ``G`` of them.

    Attributes:
        row: ``image · C' + channel`` of each box ``(G,)``.
        lo: first voxel per axis ``(G, N)``; ``hi``: end (exclusive) per axis ``(G, N)``.
        count: number of voxels carrying the box's id ``(G,)`` (its area |Ω_I|).
        voxel_row, voxel_index, voxel_box: for every voxel inside a box, its row, its flat spatial
            index and its box ``(P,)``.
        voxel_coords: for every voxel inside a box, its coordinates ``(P, N)``.
    """

    row: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor
    count: torch.Tensor
    voxel_row: torch.Tensor
    voxel_index: torch.Tensor
    voxel_box: torch.Tensor
    voxel_coords: torch.Tensor


def _check_pair(lo: torch.Tensor, hi: torch.Tensor) -> None:
    if lo.ndim != 2 or lo.shape != hi.shape or lo.shape[1] not in (2, 3):
        raise ValueError(f"lo and hi must both have shape (G, 2 or 3), got {tuple(lo.shape)} and {tuple(hi.shape)}")
    if lo.is_floating_point() or hi.is_floating_point():
        raise ValueError(f"lo and hi must be integer tensors, got {lo.dtype} and {hi.dtype}")
    if bool((hi <= lo).any()):
        bad = int((hi <= lo).any(1).nonzero()[0, 0])
        raise ValueError(f"box {bad} is empty: lo {lo[bad].tolist()}, hi {hi[bad].tolist()} (need hi > lo)")


def _band_offsets(lo: torch.Tensor, hi: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(G, N)`` bands of ``width`` lines per box and axis, and the index of each one's first segment."""
    counts = (hi.long() - lo.long() + width - 1) // width
    flat = counts.reshape(-1)
    return counts, (torch.cumsum(flat, 0) - flat).reshape(counts.shape)


def _unravel(flat_index: torch.Tensor, spatial: Sequence[int]) -> torch.Tensor:
    """``(P, N)`` coordinates of flat indices into maps of shape ``spatial`` (last axis first, N ≤ 3 steps)."""
    coords, rest = [], flat_index
    for size in reversed(list(spatial)):
        coords.append(rest % size)
        rest = rest // size
    return torch.stack(coords[::-1], dim=1)


def box_segments(lo: torch.Tensor, hi: torch.Tensor, width: int = 5) -> Segments:
    """The tightness segments (bands of ``width`` lines along every axis) of ``G`` boxes.

    Args:
        lo: first voxel of each box per axis ``(G, N)``, integers, ``N`` = 2 or 3.
        hi: end (exclusive) of each box per axis ``(G, N)``.
        width: band width ``w`` in voxels (the paper's default is 5).

    Returns:
        :class:`Segments`; box ``g`` gives ``Σ_a ⌈(hi_a - lo_a) / w⌉`` segments, ordered by box, then axis,
        then position along the axis.

    Raises:
        ValueError: bad shapes, a box with ``hi ≤ lo`` on some axis, or ``width < 1``.
    """
    if isinstance(width, bool) or int(width) != width or width < 1:
        raise ValueError(f"width must be an integer >= 1, got {width!r}")
    _check_pair(lo, hi)
    width = int(width)
    num_boxes, dims = lo.shape
    lo, hi = lo.long(), hi.long()
    counts, first = _band_offsets(lo, hi, width)
    counts, first = counts.reshape(-1), first.reshape(-1)  # (G·N,)
    pair = torch.repeat_interleave(torch.arange(num_boxes * dims, device=lo.device), counts)
    box, axis = pair // dims, pair % dims
    step = torch.arange(pair.numel(), device=lo.device) - first[pair]
    seg_lo, seg_hi = lo[box].clone(), hi[box].clone()
    rows = torch.arange(pair.numel(), device=lo.device)
    start = lo[box, axis] + step * width
    end = torch.minimum(start + width, hi[box, axis])
    seg_lo[rows, axis], seg_hi[rows, axis] = start, end
    return Segments(box, axis, seg_lo, seg_hi, end - start)


def boxes_from_ids(ids: torch.Tensor) -> BoxTable:
    """The boxes of box-id maps ``(B, C', *spatial)``: one per (image, channel, positive id).

    A voxel belongs to box ``i`` of channel ``c`` where ``ids[b, c] == i > 0`` (0 or negative: outside
    every box of that class, e.g. depth padding). The box is the bounding box of those voxels, and
    ``count`` their number. With the ids of :class:`wss_monai.transforms.BoxIds` a box is one drawn
    box, or the union of boxes of one class that overlap or touch (its bounding box then encloses
    them; see that class).

    Example:
        >>> import torch
        >>> ids = torch.zeros(1, 1, 4, 5)
        >>> ids[0, 0, 1:3, 1:4] = 1
        >>> table = boxes_from_ids(ids)
        >>> table.lo.tolist(), table.hi.tolist(), table.count.tolist()
        ([[1, 1]], [[3, 4]], [6])
    """
    if ids.ndim not in (4, 5):
        raise ValueError(f"box ids must have shape (B, C', H, W[, D]), got {tuple(ids.shape)}")
    spatial = ids.shape[2:]
    flat = ids.detach().reshape(ids.shape[0] * ids.shape[1], -1)
    voxel_row, voxel_index = (flat > 0.5).nonzero(as_tuple=True)  # ids are integers (stored as float or int)
    values = flat.reshape(-1).index_select(0, voxel_row * flat.shape[1] + voxel_index)
    values = (values.round() if values.is_floating_point() else values).long()
    radix = int(values.max()) + 1 if values.numel() else 1
    counts = torch.bincount(voxel_row * radix + values, minlength=flat.shape[0] * radix)  # O(P), no sort
    keys = counts.nonzero().squeeze(1)
    num_boxes = keys.numel()
    lookup = torch.full_like(counts, -1)
    lookup[keys] = torch.arange(num_boxes, device=counts.device)
    voxel_box = lookup[voxel_row * radix + values]
    coords = _unravel(voxel_index, spatial)  # (P, N)
    index = voxel_box[:, None].expand_as(coords)
    big = max(spatial)
    lo = coords.new_full((num_boxes, len(spatial)), big).scatter_reduce(0, index, coords, "amin")
    hi = coords.new_full((num_boxes, len(spatial)), -1).scatter_reduce(0, index, coords, "amax") + 1
    return BoxTable(keys // radix, lo, hi, counts[keys], voxel_row, voxel_index, voxel_box, coords)


def segment_sums(voxel_values: torch.Tensor, table: BoxTable, spatial: Sequence[int], width: int = 5) -> torch.Tensor:
    """The sums of the tightness segments of :func:`box_segments` over the voxels of each box, in its order.

    Every voxel of a box lies in one band per axis, ``(coordinate − lo) // width`` along it, so the
    ``Σ_a ⌈(hi_a − lo_a) / width⌉`` segment sums of all boxes are ``N`` scatter-adds of the boxes'
    voxel values: no summed-area table over the whole maps, no loop over boxes or segments.
    A box of :func:`boxes_from_ids` that is the union of touching boxes counts the voxels carrying
    its id (:func:`sub_box_sums` on its bounding box would count the corners outside them too).

    Args:
        voxel_values: one value per voxel of ``table`` ``(P,)``, in the order of ``table.voxel_index``.
        table: the boxes (:func:`boxes_from_ids`).
        spatial: the spatial shape of the maps (float64 sums above 2¹⁷ voxels).
        width: band width ``w``.

    Returns:
        ``(S,)`` sums in ``voxel_values``' dtype (accumulated in float64 for maps over 2¹⁷ voxels),
        differentiable with respect to ``voxel_values``.

    Example:
        >>> import torch
        >>> ids = torch.zeros(1, 1, 3, 4)
        >>> ids[0, 0, :, 1:4] = 1                     # a 3 x 3 box
        >>> table = boxes_from_ids(ids)
        >>> values = torch.arange(9.0)                # row-major over the box: [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
        >>> segment_sums(values, table, (3, 4), width=2).tolist()   # rows 0-1, row 2, columns 1-2, column 3
        [15.0, 21.0, 21.0, 15.0]
    """
    width = int(width)
    dims = table.lo.shape[1]
    counts, first = _band_offsets(table.lo, table.hi, width)
    box = table.voxel_box
    segment = first[box] + torch.div(table.voxel_coords - table.lo[box], width, rounding_mode="floor")  # (P, N)
    dtype = torch.float64 if math.prod(spatial) > 2**17 or voxel_values.dtype == torch.float64 else torch.float32
    sums = torch.zeros(int(counts.sum()), dtype=dtype, device=voxel_values.device)
    expanded = voxel_values.to(dtype)[:, None].expand(-1, dims)
    return sums.index_add(0, segment.reshape(-1), expanded.reshape(-1)).to(voxel_values.dtype)


def sub_box_sums(values: torch.Tensor, row: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """``Σ_{p ∈ [lo, hi)} values[row, p]`` for many sub-boxes at once, through a summed-area table.

    Args:
        values: maps ``(R, *spatial)``, ``N`` = 2 or 3 spatial axes.
        row: the map of each sub-box ``(S,)``.
        lo, hi: corners of each sub-box ``(S, N)``, half-open, inside the map.

    Returns:
        ``(S,)`` sums, differentiable with respect to ``values``. The table is accumulated in float32 for
        maps up to 2¹⁷ voxels (256² slices: rounding below 0.01 voxel) and in float64 above (3D volumes);
        the result has ``values``' dtype.

    Example:
        >>> import torch
        >>> v = torch.arange(12.0).reshape(1, 3, 4)
        >>> sub_box_sums(v, torch.tensor([0]), torch.tensor([[1, 1]]), torch.tensor([[3, 3]])).tolist()
        [30.0]
    """
    spatial = values.shape[1:]
    if lo.shape[-1] != len(spatial):
        raise ValueError(f"sub-boxes have {lo.shape[-1]} axes, the maps {len(spatial)}: {tuple(values.shape)}")
    table = values.double() if values[0].numel() > 2**17 or values.dtype == torch.float64 else values.float()
    for axis in range(1, table.ndim):
        table = torch.cumsum(table, dim=axis)
    table = torch.nn.functional.pad(table, [1, 0] * len(spatial))  # a zero row in front of every axis
    padded = [s + 1 for s in spatial]
    strides = [1] * len(padded)
    for axis in range(len(padded) - 2, -1, -1):
        strides[axis] = strides[axis + 1] * padded[axis + 1]
    flat = table.reshape(table.shape[0], -1)
    corners = list(itertools.product((0, 1), repeat=len(spatial)))  # 2^N corners, not a loop over boxes
    index = torch.stack(
        [sum((hi[:, a] if c else lo[:, a]) * strides[a] for a, c in enumerate(corner)) for corner in corners]
    )  # (2^N, S): one gather for every corner, so the backward scatters into one zero table
    signs = torch.tensor(
        [-1.0 if (len(spatial) - sum(corner)) % 2 else 1.0 for corner in corners], dtype=table.dtype, device=flat.device
    )
    total = (flat[row.expand_as(index), index] * signs[:, None]).sum(0)
    return total.to(values.dtype)
