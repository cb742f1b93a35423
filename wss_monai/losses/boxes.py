"""Box constraints on the softmax: tightness prior, emptiness outside the boxes, box size.

Reference: H. Kervadec, J. Dolz, S. Wang, E. Granger, I. Ben Ayed, "Bounding boxes for weakly
supervised segmentation: global constraints get close to full supervision", MIDL 2020.

With ``S_k`` the softmax of class k and the boxes of class k read from the batch's box-id map
(:class:`wss_monai.transforms.BoxIds`), three families of constraints ``z ≤ 0``:

- **tightness prior**: for every segment ``s`` of every box (bands of ``w`` lines along each axis,
  :func:`wss_monai.transforms.box_segments`), ``z = w_s - Σ_{p∈s} S_k(p)`` (``w_s = w``, or less for
  the last band of a side);
- **emptiness**: ``z = Σ_{p outside all boxes of k} S_k(p)`` (one per image and class; an image with
  no box of class k pushes the whole class to 0 there);
- **box size**: ``ε|Ω_I| - Σ_{p∈I} S_k(p) ≤ 0`` and ``Σ_{p∈I} S_k(p) - u|Ω_I| ≤ 0`` per box ``I``
  (``u = 1`` by default, the definition of the paper; the authors' code bounds the prostate by
  ``[0.5, 0.9] |Ω_I|``). With ``log_size`` the lower bound is taken in log form,
  ``z = ε|Ω_I| (log ε|Ω_I| - log Σ_{p∈I} S_k(p))``: the same value and gradient to first order at
  the bound, but where class k has all but vanished from its box (``S_k ≈ 0`` there) the gradient of
  the plain form, scaled by ``S_k (1 - S_k)`` at every voxel, vanishes with it, while the log form's
  is scaled by ``S_k (1 - S_k) / Σ S_k`` and stays of order ``ε (1 - S_k)`` per voxel (``log Σ S_k``
  is taken from the box's summed softmax, or, where that sum nears the dtype's smallest normal number, as
  a log-sum-exp of the log-softmax, finite even where the softmax underflows). With ``size_classes``
  a box of class k bounds the summed probability of several classes, ``Σ_{p∈I} Σ_{j∈U_k} S_j(p)``:
  the box of a ring holds the structure it encloses too (the myocardium's box is the epicardium's, a
  disc that holds the left ventricle's cavity; a tumour's box holds its core). With
  ``size_less_classes`` the lower bound of a box of class k counts its box less the voxels of the boxes
  of the listed classes inside it, ``ε (|Ω_I| - |Ω_I ∩ ∪_{J of class j ∈ L_k} Ω_J|)``: a ring fills
  ``π/4`` of the square between the boxes of its outer and inner contours when both are circles, where
  it fills only ``π/4 (1 - r²/R²)`` of its own box (on ACDC's training slices the myocardium fills 0.71
  or more of its box less the LV's in 95 % of them, median 0.78; of its box alone, median 0.38).

With ``ellipse_epsilon`` a box bounds from below the summed probability inside its inscribed ellipse
(ellipsoid in 3D; centre and semi-axes those of the box), ``ε_E |E_I| - Σ_{p∈E_I} Σ_{j∈V_k} S_j(p) ≤ 0``
(the log form with ``log_size``): a rounded structure that touches every side of its tight box fills
most of that ellipse (on ACDC's training slices the LV cavity fills 0.84 or more of its box's ellipse in
95 % of them, median 0.93; the myocardium with the cavity it encloses 0.91 of the myocardium's box's,
median 0.96), where the box-size bound asks only for a share of the box, met as well by a structure
that stops short of its box's sides between the tightness segments' lines.

Each is handled as the project's other inequality constraints (:mod:`wss_monai.losses.constraints`):
the log-barrier extension ``ψ_t(z)`` (default; ``t`` raised by
:class:`wss_monai.handlers.LogBarrierScheduler`, which finds this term by its ``mode``) or the
quadratic penalty. Sums are raw voxel counts (not normalised), hence the recipe's weight 1e-4.
Segment and box sums are ``index_add`` of the boxes' voxels (every voxel of a box lies in one band
per axis): the cost is a few scatter-adds over the boxes' voxels, whatever the number of boxes and segments.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from wss_monai.losses.base import WeakLoss, reduce_per_image
from wss_monai.losses.constraints import log_barrier_extension, quadratic_penalty
from wss_monai.transforms.box_segments import box_segments, boxes_from_ids, segment_sums

__all__ = ["BOX_MODES", "BOX_TERMS", "BoxConstraintLoss"]

BOX_TERMS = ("tightness", "emptiness", "size")
"""The constraint families of :class:`BoxConstraintLoss`."""
BOX_MODES = ("log_barrier", "penalty")
"""How a box constraint is handled (the Lagrangian modes need constraint ids stable across epochs,
which boxes moved by augmentation do not have)."""


class BoxConstraintLoss(WeakLoss):
    """Tightness prior, emptiness and box-size constraints of the boxes in ``batch[key]``.

    Args:
        key: batch key of the box-id map ``(B, C', H, W[, D])``, one channel per constrained class.
        terms: the constraint families to use, a subset of :data:`BOX_TERMS`.
        width: segment width ``w`` of the tightness prior (voxels).
        epsilon: lower size bound ``ε`` as a fraction of the box (0.5 in the authors' code for
            the prostate, 0.3 for lesions); one value, or one per constrained class (a ring such as the
            myocardium fills less of its box than a disc).
        upper: upper box-size bound ``u`` as a fraction of the box (``epsilon <= upper <= 1``); one value, or
            one per constrained class.
        margin_key: batch key of the margin ``m`` ``(B, N_s)`` (voxels per spatial axis) the boxes were
            drawn with (:class:`~wss_monai.transforms.BoundingBoxesd` ``margin_key``; a slice may carry
            its volume's ``(B, 3)``, the leading axes are used), or ``None``. Given,
            the lower size bound counts the box less its margin, ``ε · |Ω_I| · Π_a max(e_a − 2 m_a, 1) / e_a``
            for a box of extent ``e``: a structure fills ``ε`` of its tight box, not of a loose one (on
            ACDC a 10-voxel margin doubles the boxes of the small structures). The upper bound keeps
            ``|Ω_I|``.
        log_size: the lower size bound in log form (above): its gradient does not vanish with the
            class's softmax in the box.
        size_classes: per constrained class, the output channels whose probabilities its boxes' size
            bounds count (each list holds the class itself), e.g. ``[[1], [2, 3], [3]]`` for a class 2
            that encloses class 3; ``None``: each class alone. Tightness and emptiness keep the class alone.
        size_less_classes: per constrained class, the other constrained classes whose boxes are taken out of
            its boxes' area in the lower size bound, e.g. ``[[], [3], []]`` for a ring (class 2) around
            class 3: ``ε`` of the box less the enclosed boxes (after ``margin_key``'s share, clamped at 0);
            ``None``: the whole box. The upper bound keeps ``|Ω_I|`` unless ``size_less_upper``.
        size_less_upper: the upper size bound too counts the box less the enclosed boxes,
            ``u (|Ω_I| - |Ω_I ∩ ∪_J Ω_J|)`` (needs ``size_less_classes``): a ring's fill of that area is
            narrow on both sides (ACDC's myocardium, training slices: 0.71 to 0.87 from the 5th to the 95th
            percentile), where of its whole box ``u`` would have to stay near 1.
        ellipse_epsilon: lower bound ``ε_E`` on the share of each box's inscribed ellipse that the class
            fills (a term of the ``size`` family); one value, or one per constrained class (0: none for that
            class); ``None``: no ellipse bound.
        ellipse_classes: per constrained class, the output channels the ellipse bound counts (holding the
            class itself), e.g. ``[[1], [2, 3], [3]]``: the myocardium's ellipse holds the LV cavity too;
            ``None``: each class alone.
        mode: one of :data:`BOX_MODES`.
        t: initial log-barrier ``t``.
        classes: output channels matching the map's channels; ``None``: 1..C-1.
        reduction: ``"mean"``/``"sum"`` over images of each image's summed costs, or ``"none"`` ``(B,)``.
        term_weights: a factor on each family's summed cost, e.g. ``{"emptiness": 0.01}`` (this project's
            addition; the paper weighs all alike): the emptiness sum runs over every voxel outside the boxes,
            thousands for a lesion's box of 20; families not named keep 1. ``None``: all 1.

    Shapes:
        logits ``(B, C, H, W[, D])``; ``batch[key]`` ``(B, C', H, W[, D])``; output scalar or ``(B,)``.

    Example:
        >>> import math, torch
        >>> ids = torch.zeros(1, 1, 4, 4)
        >>> ids[0, 0, :2, :2] = 1                       # a 2 x 2 box in a 4 x 4 image
        >>> logits = torch.zeros(1, 2, 4, 4)            # S_1 = 0.5 everywhere
        >>> loss = BoxConstraintLoss(terms=["emptiness"], mode="penalty")
        >>> loss(logits, {"box_ids": ids}).item()       # (12 voxels outside x 0.5)^2
        36.0
        >>> logits[:, 1] = math.log(0.25)               # S_1 = 0.2: each line of the box holds 0.4 < 1
        >>> loss = BoxConstraintLoss(terms=["tightness"], width=1, mode="penalty")
        >>> round(loss(logits, {"box_ids": ids}).item(), 4)   # 4 segments x (1 - 0.4)^2
        1.44
    """

    def __init__(
        self,
        key: str = "box_ids",
        terms: Sequence[str] = BOX_TERMS,
        width: int = 5,
        epsilon: float | Sequence[float] = 0.5,
        upper: float | Sequence[float] = 1.0,
        margin_key: str | None = None,
        log_size: bool = False,
        size_classes: Sequence[Sequence[int]] | None = None,
        size_less_classes: Sequence[Sequence[int]] | None = None,
        size_less_upper: bool = False,
        ellipse_epsilon: float | Sequence[float] | None = None,
        ellipse_classes: Sequence[Sequence[int]] | None = None,
        mode: str = "log_barrier",
        t: float = 5.0,
        classes: Sequence[int] | None = None,
        reduction: str = "mean",
        term_weights: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__(reduction=reduction)
        terms = [terms] if isinstance(terms, str) else list(terms)
        bad = [term for term in terms if term not in BOX_TERMS]
        if bad or not terms:
            raise ValueError(f"terms must be a non-empty subset of {BOX_TERMS}, got {terms}")
        term_weights = dict(term_weights or {})
        unknown = [name for name in term_weights if name not in BOX_TERMS]
        bad_values = [
            w for w in term_weights.values()
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0
        ]  # fmt: skip
        if unknown or bad_values:
            raise ValueError(
                f"term_weights must map families of {BOX_TERMS} to finite numbers >= 0, got {term_weights}"
            )
        self.term_weights = {name: float(term_weights.get(name, 1.0)) for name in BOX_TERMS}
        if isinstance(width, bool) or int(width) != width or width < 1:
            raise ValueError(f"width must be an integer >= 1, got {width!r}")
        epsilons = [float(e) for e in (epsilon if isinstance(epsilon, (list, tuple)) else [epsilon])]
        if not epsilons or not all(0 <= e <= 1 for e in epsilons):
            raise ValueError(f"epsilon must lie in [0, 1] (one value or one per class), got {epsilon!r}")
        uppers = [float(u) for u in (upper if isinstance(upper, (list, tuple)) else [upper])]
        if not uppers or (len(epsilons) > 1 and len(uppers) > 1 and len(epsilons) != len(uppers)):
            raise ValueError(f"upper must give one value, or one per class as epsilon {epsilon!r} does, got {upper!r}")
        if len(uppers) == 1 and not max(epsilons) <= uppers[0] <= 1:
            raise ValueError(f"upper must lie in [epsilon, 1] = [{max(epsilons)}, 1], got {upper!r}")
        if not all(e <= u <= 1 for e, u in zip(epsilons * len(uppers) if len(epsilons) == 1 else epsilons, uppers)):
            raise ValueError(f"upper must lie in [epsilon, 1] per class, got epsilon {epsilon!r}, upper {upper!r}")
        if mode not in BOX_MODES:
            raise ValueError(f"mode must be one of {BOX_MODES}, got {mode!r}")
        if not t > 0 or not math.isfinite(t):
            raise ValueError(f"t must be a finite positive number, got {t!r}")
        self.key, self.terms, self.width = key, terms, int(width)
        self.epsilon = epsilons if isinstance(epsilon, (list, tuple)) else epsilons[0]
        self.upper = uppers if isinstance(upper, (list, tuple)) else uppers[0]
        self.margin_key = margin_key
        self.log_size = bool(log_size)
        self.size_classes = (
            None
            if size_classes is None
            else self._checked_channel_lists(size_classes, "size_classes", "[[1], [2, 3], [3]]", allow_empty=False)
        )
        self.size_less_classes = (
            None
            if size_less_classes is None
            else self._checked_channel_lists(size_less_classes, "size_less_classes", "[[], [3], []]", allow_empty=True)
        )
        if size_less_upper and size_less_classes is None:
            raise ValueError("size_less_upper needs size_less_classes (the enclosed classes to take out of the box)")
        self.size_less_upper = bool(size_less_upper)
        if ellipse_epsilon is not None:
            values = ellipse_epsilon if isinstance(ellipse_epsilon, (list, tuple)) else [ellipse_epsilon]
            if not values or not all(isinstance(e, (int, float)) and 0 <= e <= 1 for e in values):
                raise ValueError(
                    f"ellipse_epsilon must lie in [0, 1] (one value or one per class), got {ellipse_epsilon!r}"
                )
            ellipse_epsilon = [float(e) for e in values] if isinstance(ellipse_epsilon, (list, tuple)) else values[0]
        self.ellipse_epsilon = ellipse_epsilon
        self.ellipse_classes = (
            None
            if ellipse_classes is None
            else self._checked_channel_lists(
                ellipse_classes, "ellipse_classes", "[[1], [2, 3], [3]]", allow_empty=False
            )
        )
        self.mode, self.t = mode, float(t)
        self.classes = None if classes is None else [int(c) for c in classes]

    def _cost(self, z: torch.Tensor) -> torch.Tensor:
        return log_barrier_extension(z, self.t) if self.mode == "log_barrier" else quadratic_penalty(z)

    def constraint_values(self, logits: torch.Tensor, batch: Mapping) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per family, ``(z, image)``: the constraint values (``≤ 0`` where they hold) and the image of each."""
        self.check_logits(logits)
        num_images, num_classes = logits.shape[:2]
        classes = list(range(1, num_classes)) if self.classes is None else self.classes
        if any(not 0 <= c < num_classes for c in classes):
            raise ValueError(f"classes {classes} out of range for a {num_classes}-class output")
        ids = self.read(batch, self.key).to(logits.device)
        expected = (num_images, len(classes), *logits.shape[2:])
        if tuple(ids.shape) != expected:
            raise ValueError(f"{self.key!r} must have shape {expected} (B, C', *spatial), got {tuple(ids.shape)}")
        scores = logits.float() if logits.dtype != torch.float64 else logits
        all_probs = torch.softmax(scores, dim=1)
        contiguous = classes == list(range(classes[0], classes[0] + len(classes)))
        probs = all_probs[:, classes[0] : classes[0] + len(classes)] if contiguous else all_probs[:, classes]
        plane = math.prod(logits.shape[2:])
        values = {}
        if "emptiness" in self.terms:
            outside = (probs * (ids <= 0)).flatten(2).sum(-1)  # (B, C')
            image = torch.arange(num_images, device=logits.device).repeat_interleave(len(classes))
            values["emptiness"] = (outside.reshape(-1), image)
        if "tightness" in self.terms or "size" in self.terms:
            table = boxes_from_ids(ids)
            box_image = table.row // len(classes)
            where = table.voxel_row * plane + table.voxel_index  # the boxes' voxels in the flat (B·C', *spatial) maps

            def at_boxes(maps: torch.Tensor) -> torch.Tensor:  # (B·C', *spatial) -> (P,)
                return maps.reshape(-1).index_select(0, where)

            members = self._size_members(classes, num_classes, logits.device) if "size" in self.terms else None
            if members is None:
                box_voxels = at_boxes(probs.reshape(-1, *logits.shape[2:]))  # each box's own class
            else:  # every channel of the image at each box voxel, one gather: (P, C)
                channel = table.voxel_row % len(classes)
                first = torch.div(table.voxel_row, len(classes), rounding_mode="floor") * (num_classes * plane)
                every = (first + table.voxel_index)[:, None] + torch.arange(
                    0, num_classes * plane, plane, device=first.device
                )
                channel_values = all_probs.reshape(-1).index_select(0, every.reshape(-1)).reshape(every.shape)
                own = torch.as_tensor(classes, device=first.device).index_select(0, channel)  # each voxel's class
                box_voxels = channel_values.gather(1, own[:, None]).squeeze(1)
            if "tightness" in self.terms:
                seg = box_segments(table.lo, table.hi, self.width)
                sums = segment_sums(box_voxels, table, logits.shape[2:], self.width)
                values["tightness"] = (seg.target.to(sums.dtype) - sums, box_image[seg.box])
            if "size" in self.terms:
                voxels = box_voxels if members is None else (channel_values * members.index_select(0, channel)).sum(1)
                inside = voxels.new_zeros(table.count.shape).index_add(0, table.voxel_box, voxels)
                count = table.count.to(inside.dtype)
                lower = count * self._inner_share(batch, table, box_image, num_images).to(count.dtype)
                upper_area = count
                if self.size_less_classes is not None:
                    enclosed = self._enclosed_count(ids, classes, table, count.dtype, at_boxes)
                    lower = (lower - enclosed).clamp_min(0.0)
                    if self.size_less_upper:
                        upper_area = count - enclosed
                bound = self._per_box(self.epsilon, "epsilon", table.row, len(classes), inside) * lower
                if self.log_size and not self._underflows(inside):
                    below = self._log_lower_bound_of_sums(inside, bound)
                elif self.log_size:  # a class has all but left a box: log Σ S from the log-softmax
                    log_probs = torch.log_softmax(scores, 1)
                    if members is None:
                        log_voxels = at_boxes(log_probs[:, classes])
                    else:
                        log_values = log_probs.reshape(-1).index_select(0, every.reshape(-1)).reshape(every.shape)
                        counted = members.index_select(0, channel) > 0
                        log_voxels = torch.logsumexp(log_values.masked_fill(~counted, -torch.inf), dim=1)
                    below = self._log_lower_bound(log_voxels, table.voxel_box, bound)
                else:
                    below = bound - inside
                above = inside - self._per_box(self.upper, "upper", table.row, len(classes), inside) * upper_area
                z, image = torch.cat([below, above]), box_image.repeat(2)
                if self.ellipse_epsilon is not None:
                    in_ellipse, kept = self._ellipse_values(scores, all_probs, box_voxels, classes, table)
                    z, image = torch.cat([z, in_ellipse]), torch.cat([image, box_image[kept]])
                values["size"] = (z, image)
        return values

    @staticmethod
    def _checked_channel_lists(
        value: Sequence[Sequence[int]], name: str, example: str, allow_empty: bool
    ) -> list[list[int]]:
        """``value`` as one list of distinct output channels >= 0 per constrained class (``name`` in the error)."""
        lists = [list(group) if isinstance(group, (list, tuple)) else None for group in value]
        valid = bool(lists) and all(
            group is not None
            and (allow_empty or len(group) > 0)
            and all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in group)
            and len(set(group)) == len(group)
            for group in lists
        )
        if not valid:
            kind = "a list" if allow_empty else "a non-empty list"
            raise ValueError(
                f"{name} must give, per constrained class, {kind} of distinct output channels "
                f"(e.g. {example}), got {value!r}"
            )
        return lists

    def _enclosed_count(
        self, ids: torch.Tensor, classes: list[int], table, dtype: torch.dtype, at_boxes
    ) -> torch.Tensor:
        """``(N_boxes,)``: the voxels of each box inside a box of one of its class's ``size_less_classes``."""
        if len(self.size_less_classes) != len(classes):
            raise ValueError(
                f"size_less_classes gives {len(self.size_less_classes)} lists {self.size_less_classes} for "
                f"{len(classes)} constrained classes {classes}"
            )
        taken = []  # per constrained class, the map channels of the classes taken out of its boxes
        for c, group in zip(classes, self.size_less_classes):
            if c in group or any(j not in classes for j in group):
                raise ValueError(
                    f"size_less_classes of class {c} may list only other constrained classes of {classes}, got {group}"
                )
            taken.append([classes.index(j) for j in group])
        boxed = ids > 0
        covered = torch.zeros_like(boxed)  # (B, C', *spatial): inside a box of a class taken out
        for i, group in enumerate(taken):  # one union per constrained class
            if group:
                covered[:, i] = boxed[:, group].any(1)
        voxels = at_boxes(covered).to(dtype)
        return torch.zeros(table.count.shape, dtype=dtype, device=ids.device).index_add(0, table.voxel_box, voxels)

    def _size_members(self, classes: list[int], num_classes: int, device) -> torch.Tensor | None:
        """``(C', C)`` 0/1 matrix of the channels each constrained class's size bounds count, or ``None``."""
        return self._members(self.size_classes, "size_classes", classes, num_classes, device)

    @staticmethod
    def _members(groups, name: str, classes: list[int], num_classes: int, device) -> torch.Tensor | None:
        """``(C', C)`` 0/1 matrix of the channels of ``groups`` (one list per constrained class), or ``None``."""
        if groups is None:
            return None
        if len(groups) != len(classes):
            raise ValueError(
                f"{name} gives {len(groups)} lists {groups} for {len(classes)} constrained classes {classes}"
            )
        members = torch.zeros(len(classes), num_classes, device=device)
        for i, (c, group) in enumerate(zip(classes, groups)):
            if c not in group or any(j >= num_classes for j in group):
                raise ValueError(
                    f"{name} of class {c} must hold {c} itself and channels below {num_classes}, got {group}"
                )
            members[i, group] = 1.0
        return members

    def _ellipse_values(
        self, scores: torch.Tensor, all_probs: torch.Tensor, box_voxels: torch.Tensor, classes: list[int], table
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z, boxes)``: the inscribed-ellipse bounds of the boxes whose bound ``ε_E |E_I|`` is positive.

        ``box_voxels`` ``(P,)``: each box voxel's softmax of its own class; of the voxels in their box's
        ellipse, those of a class whose ``ellipse_classes`` list others add those channels (gathered for
        them alone).
        """
        num_classes, dtype = all_probs.shape[1], all_probs.dtype
        epsilon = self._per_box(self.ellipse_epsilon, "ellipse_epsilon", table.row, len(classes), all_probs)
        epsilon = torch.as_tensor(epsilon, dtype=dtype, device=all_probs.device).expand(table.row.shape)
        voxel = (epsilon.index_select(0, table.voxel_box) > 0).nonzero().squeeze(1)  # the voxels of bounded boxes
        box = table.voxel_box.index_select(0, voxel)
        lo, hi = table.lo.to(dtype), table.hi.to(dtype)
        centre, radius = (lo + hi - 1) / 2, (hi - lo) / 2
        coords = table.voxel_coords.index_select(0, voxel).to(dtype)
        offset = (coords - centre.index_select(0, box)) / radius.index_select(0, box)
        voxel = voxel.index_select(0, (offset.square().sum(1) <= 1).nonzero().squeeze(1))  # ... in their ellipse
        box = table.voxel_box.index_select(0, voxel)
        groups = self.ellipse_classes or [[c] for c in classes]
        members = self._members(groups, "ellipse_classes", classes, num_classes, all_probs.device)
        row = table.voxel_row.index_select(0, voxel)
        channel = row % len(classes)
        plane = math.prod(all_probs.shape[2:])
        pixel = torch.div(row, len(classes), rounding_mode="floor") * (
            num_classes * plane
        ) + table.voxel_index.index_select(0, voxel)
        held_voxels = box_voxels.index_select(0, voxel)
        flat = all_probs.reshape(-1)
        for i, group in enumerate(groups):  # the other channels a class's ellipse counts (none for most)
            for j in (j for j in group if j != classes[i]):
                pick = (channel == i).nonzero().squeeze(1)
                extra = flat.index_select(0, pixel.index_select(0, pick) + j * plane)
                held_voxels = held_voxels.index_add(0, pick, extra)
        area = torch.zeros_like(epsilon).index_add(0, box, torch.ones_like(held_voxels))
        held = torch.zeros_like(area).index_add(0, box, held_voxels)
        bound = epsilon * area
        kept = (bound > 0).nonzero().squeeze(1)
        if not self.log_size:
            z = bound - held
        elif not self._underflows(held.index_select(0, kept)):
            z = self._log_lower_bound_of_sums(held, bound)
        else:  # log Σ S over the ellipse from the log-softmax of every counted channel
            every = pixel[:, None] + torch.arange(0, num_classes * plane, plane, device=pixel.device)  # (n, C)
            log_values = torch.log_softmax(scores, 1).reshape(-1).index_select(0, every.reshape(-1))
            counted = members.index_select(0, channel) > 0
            log_voxels = torch.logsumexp(log_values.reshape(every.shape).masked_fill(~counted, -torch.inf), dim=1)
            z = self._log_lower_bound(log_voxels, box, bound)
        return z.index_select(0, kept), kept

    @staticmethod
    def _underflows(inside: torch.Tensor) -> bool:
        """Whether a box's summed softmax is too small for ``log Σ S`` from the sum: under ``tiny / eps`` of its dtype.

        Above it, the voxels whose softmax underflowed to 0 would have added less than ``eps`` of the sum.
        """
        info = torch.finfo(inside.dtype)
        return bool((inside.detach() < info.tiny / info.eps).any())

    @staticmethod
    def _log_lower_bound_of_sums(inside: torch.Tensor, bound: torch.Tensor | float) -> torch.Tensor:
        """``b (log b - log Σ_{p∈I} S)`` per box from its summed softmax ``inside``; ``-Σ S`` where ``b = 0``."""
        bound = torch.as_tensor(bound, dtype=inside.dtype, device=inside.device).expand_as(inside)
        tiny = torch.finfo(inside.dtype).tiny
        return torch.where(bound > 0, bound * (torch.log(bound.clamp_min(tiny)) - torch.log(inside)), -inside)

    @staticmethod
    def _log_lower_bound(log_voxels: torch.Tensor, box: torch.Tensor, bound: torch.Tensor) -> torch.Tensor:
        """``b (log b - log Σ_{p∈I} S)`` per box ``(G,)`` from the log-softmax of its voxels (``box``: the box of
        each); ``-Σ S`` where ``b = 0``."""
        peak = torch.full(bound.shape, -torch.inf, dtype=log_voxels.dtype, device=log_voxels.device)
        peak = peak.scatter_reduce(0, box, log_voxels.detach(), "amax").clamp_min(-1e4)  # a shift, no gradient
        shifted = torch.zeros_like(peak).index_add(0, box, torch.exp(log_voxels - peak[box]))
        log_inside = peak + torch.log(shifted)
        bound = torch.as_tensor(bound, dtype=log_inside.dtype, device=log_inside.device).expand_as(log_inside)
        safe = bound.clamp_min(torch.finfo(log_inside.dtype).tiny)
        return torch.where(bound > 0, bound * (torch.log(safe) - log_inside), -torch.exp(log_inside))

    def _inner_share(self, batch: Mapping, table, box_image: torch.Tensor, num_images: int) -> torch.Tensor:
        """Share ``(N_boxes,)`` of each box left when its margin is taken off every side (1 without ``margin_key``)."""
        if self.margin_key is None:
            return torch.ones(table.count.shape, device=table.count.device)
        dims = table.lo.shape[1]
        margin = torch.as_tensor(self.read(batch, self.margin_key), dtype=torch.float64).to(table.lo.device)
        if margin.ndim != 2 or margin.shape[0] != num_images or margin.shape[1] < dims:
            raise ValueError(
                f"{self.margin_key!r} must have shape {(num_images, dims)} (B, N_s): the margin of the boxes in "
                f"voxels per spatial axis, got {tuple(margin.shape)}"
            )
        margin = margin[:, :dims]  # a slice keeps the in-plane axes of its volume's (H, W, D) margin
        if not torch.isfinite(margin).all() or (margin < 0).any():
            raise ValueError(f"{self.margin_key!r} must hold finite margins >= 0, got {margin.tolist()}")
        extent = (table.hi - table.lo).to(torch.float64)
        inner = (extent - 2 * margin[box_image]).clamp_min(1.0)
        return (inner / extent).prod(1)

    @staticmethod
    def _per_box(
        value: float | list[float], name: str, row: torch.Tensor, num_constrained: int, like: torch.Tensor
    ) -> torch.Tensor | float:
        """``ε`` or ``u`` of every box (from its class channel, ``row mod C'``), or the one value."""
        if not isinstance(value, list):
            return value
        if len(value) != num_constrained:
            raise ValueError(f"{name} gives {len(value)} values {value} for {num_constrained} constrained classes")
        return like.new_tensor(value)[row % num_constrained]

    def forward(self, logits: torch.Tensor, batch: Mapping) -> torch.Tensor:
        values = self.constraint_values(logits, batch)
        per_image = logits.new_zeros(
            logits.shape[0], dtype=torch.float64 if logits.dtype == torch.float64 else torch.float32
        )
        for name, (z, image) in values.items():  # at most three families
            cost = self._cost(z).to(per_image.dtype) * self.term_weights[name]
            per_image = per_image.index_add(0, image, cost)
        return reduce_per_image(per_image, self.reduction)
