"""General inequality constraints ``lower ≤ f(S) ≤ upper`` on the softmax, and the Lagrangian baselines.

A constraint function maps the softmax ``S`` ``(B, C, *spatial)`` to values ``(B, C', M)``: one
value per image, selected class and moment. Three are provided, all differentiable:

- :func:`soft_size`: ``V_k = Σ_p S_k(p)`` (M = 1);
- :func:`soft_centroid`: ``Σ_p S_k(p) c_p / Σ_p S_k(p)``, one value per spatial axis;
- :func:`fractional_moment`: ``Σ_p f_m(p) S_k(p) / Σ_p S_k(p)`` for maps ``f_m`` (e.g. the image
  intensity: the mean intensity in the region), and :func:`central_moment`, the shape moment
  ``Σ_p S_k(p) (c_p - C_k)^n / Σ_p S_k(p)`` per axis (n = 2: the spread of the region).

Every value is a ratio of sums over voxels, so the slices of a volume are combined by summing the
numerators and denominators over the slices before dividing (``per="volume"``).

:class:`InequalityConstraintLoss` turns the two sides into constraints ``z ≤ 0``
(``z = [lower - f, f - upper]``, ``(G, C', M, 2)``), all computed at once, and handles them by a
quadratic penalty, the log-barrier extension, a standard Lagrangian or a ReLU Lagrangian. It is the
one constraint loss of the project: size bounds are ``function="size"``. It keeps no training state:
the log-barrier ``t`` is written by :class:`wss_monai.handlers.LogBarrierScheduler`, the multipliers
are held by :class:`wss_monai.handlers.DualAscentHandler`, and handlers that watch the constraint
values of each training batch receive them through :meth:`InequalityConstraintLoss.register_value_hook`.
:class:`LagrangianProposalLoss` is the constrained CNN of Pathak et al. (2015) for size bounds.

References:
    Kervadec et al., "Constrained-CNN losses for weakly supervised segmentation", MedIA 2019.
    Kervadec et al., "Constrained deep networks: Lagrangian optimization via log-barrier extensions",
    EUSIPCO 2022.
    Kervadec et al., "Beyond pixel-wise supervision for segmentation: a few global shape
    descriptors might be surprisingly good!", MIDL 2021 (centroid, moments).
    Nandwani et al., "A primal dual formulation for deep learning with constraints", NeurIPS 2019.
    Pathak et al., "Constrained convolutional neural networks for weakly supervised segmentation",
    ICCV 2015.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence

import torch
from torch.utils.hooks import RemovableHandle

from wss_monai.losses.base import WeakLoss, reduce_per_image
from wss_monai.losses.constraints import CONSTRAINT_MODES, LAGRANGIAN_MODES, log_barrier_extension, quadratic_penalty

__all__ = [
    "CONSTRAINT_FUNCTIONS",
    "InequalityConstraintLoss",
    "LagrangianProposalLoss",
    "central_moment",
    "fractional_moment",
    "lagrangian_proposal",
    "soft_centroid",
    "soft_size",
]

CONSTRAINT_FUNCTIONS = ("size", "centroid", "fractional", "moment")

KEY_RADIX = 2**20
"""Item keys built from several batch keys (e.g. volume and slice index) are ``k0·2²⁰ + k1``; each later key < 2²⁰."""


# ---------------------------------------------------------------------------------------------
# constraint functions: raw sums over voxels (additive over slices), then the ratio
# ---------------------------------------------------------------------------------------------


def _select(probs: torch.Tensor, classes: Sequence[int] | None) -> torch.Tensor:
    if probs.ndim < 3:
        raise ValueError(f"probs must have shape (B, C, *spatial), got {tuple(probs.shape)}")
    if classes is None:
        return probs
    num_classes = probs.shape[1]
    bad = [int(c) for c in classes if not 0 <= int(c) < num_classes]
    if bad:
        raise ValueError(f"classes {bad} out of range for a {num_classes}-class output")
    return probs[:, [int(c) for c in classes]]


def _axis_coordinates(probs: torch.Tensor, spacing: Sequence[float] | None, centred: bool) -> list[torch.Tensor]:
    """One coordinate vector per spatial axis (voxel index × spacing), optionally centred on the grid."""
    spatial = probs.shape[2:]
    if spacing is None:
        spacing = [1.0] * len(spatial)
    spacing = [float(s) for s in spacing]
    if len(spacing) != len(spatial):
        raise ValueError(f"spacing must have one value per spatial axis ({len(spatial)}), got {spacing}")
    if not all(s > 0 and math.isfinite(s) for s in spacing):
        raise ValueError(f"spacing must be finite and positive, got {spacing}")
    coords = []
    for n, s in zip(spatial, spacing):
        c = torch.arange(n, device=probs.device, dtype=probs.dtype)
        coords.append((c - (n - 1) / 2 if centred else c) * s)
    return coords


def _axis_marginals(probs: torch.Tensor) -> list[torch.Tensor]:
    """``Σ`` of ``probs`` over every spatial axis but one, for each axis: ``(B, C', n_a)``."""
    axes = list(range(2, probs.ndim))
    return [probs.sum(dim=[d for d in axes if d != a]) if len(axes) > 1 else probs for a in axes]


def _check_map(weight_map: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    weight_map = torch.as_tensor(weight_map, device=probs.device)
    if weight_map.ndim != probs.ndim or weight_map.shape[0] not in (1, probs.shape[0]):
        raise ValueError(
            f"weight_map must have shape (B or 1, M, *spatial) with B = {probs.shape[0]} and "
            f"spatial {tuple(probs.shape[2:])}, got {tuple(weight_map.shape)}"
        )
    if weight_map.shape[2:] != probs.shape[2:]:
        raise ValueError(
            f"weight_map spatial shape {tuple(weight_map.shape[2:])} differs from the prediction's "
            f"{tuple(probs.shape[2:])}"
        )
    return weight_map.to(probs.dtype)


def _raw_sums(
    function: str,
    probs: torch.Tensor,
    spacing: Sequence[float] | None = None,
    weight_map: torch.Tensor | None = None,
    order: int = 2,
) -> torch.Tensor:
    """Additive voxel sums ``(B, C', K)``: ``[Σ S, Σ S·g_1, …]``, from which :func:`_finish` forms the values."""
    mass = probs.flatten(2).sum(-1, keepdim=True)  # (B, C', 1)
    if function == "size":
        return mass
    if function == "centroid":
        coords = _axis_coordinates(probs, spacing, centred=False)
        first = [m @ c for m, c in zip(_axis_marginals(probs), coords)]
        return torch.cat([mass, torch.stack(first, dim=-1)], dim=-1)
    if function == "fractional":
        if weight_map is None:
            raise ValueError("function 'fractional' needs a weight_map (B or 1, M, *spatial)")
        weight_map = _check_map(weight_map, probs)
        if weight_map.shape[0] == 1:  # one map set for the batch: a single (B·C', P) @ (P, M) product, no copy
            weighted = probs.flatten(2) @ weight_map[0].flatten(1).transpose(0, 1)
        else:
            weighted = torch.einsum("bkp,bmp->bkm", probs.flatten(2), weight_map.flatten(2))
        return torch.cat([mass, weighted], dim=-1)
    if function == "moment":
        # raw moments about the grid centre (translation-invariant result, less cancellation)
        coords = _axis_coordinates(probs, spacing, centred=True)
        powers = torch.arange(1, order + 1, device=probs.device, dtype=probs.dtype)
        raw = [m @ (c[:, None] ** powers) for m, c in zip(_axis_marginals(probs), coords)]  # N × (B, C', n)
        return torch.cat([mass, torch.cat(raw, dim=-1)], dim=-1)
    raise ValueError(f"function must be one of {CONSTRAINT_FUNCTIONS}, got {function!r}")


def _finish(function: str, sums: torch.Tensor, order: int = 2, eps: float = 1e-6) -> torch.Tensor:
    """Values ``(·, C', M)`` from the sums of :func:`_raw_sums` (possibly summed over the slices of a volume).

    Ratios divide by ``Σ S`` clamped to ``eps``: an empty prediction gives finite values (that tend to 0),
    and the gradient with respect to the logits stays bounded by the range of the map.
    """
    if function == "size":
        return sums
    mass = sums[..., :1].clamp_min(eps)
    ratios = sums[..., 1:] / mass
    if function in ("centroid", "fractional"):
        return ratios
    # central moment of order n per axis: Σ_j binom(n, j) E[c^j] (-μ)^(n-j), with E[c^0] = 1
    ratios = ratios.unflatten(-1, (-1, order))  # (·, C', N, n)
    expectations = torch.cat([torch.ones_like(ratios[..., :1]), ratios], dim=-1)  # j = 0..n
    mean = ratios[..., :1]
    j = torch.arange(order + 1, device=sums.device)
    binomial = torch.tensor([math.comb(order, int(k)) for k in j], device=sums.device, dtype=sums.dtype)
    return (binomial * expectations * (-mean) ** (order - j).to(sums.dtype)).sum(-1)


def soft_size(probs: torch.Tensor, classes: Sequence[int] | None = None) -> torch.Tensor:
    """Soft size ``V_k = Σ_p S_k(p)`` of each class, ``(B, C', 1)``, in voxels.

    Example:
        >>> import torch
        >>> soft_size(torch.softmax(torch.zeros(1, 2, 4, 4), 1), classes=[1]).tolist()
        [[[8.0]]]
    """
    return _finish("size", _raw_sums("size", _select(probs, classes)))


def soft_centroid(
    probs: torch.Tensor,
    classes: Sequence[int] | None = None,
    spacing: Sequence[float] | None = None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Soft centroid ``C_k = Σ_p S_k(p) c_p / Σ_p S_k(p)``, ``(B, C', N)`` with one value per spatial axis.

    Coordinates are voxel indices from 0, times ``spacing`` (e.g. mm) when given.

    Example:
        >>> import torch
        >>> soft_centroid(torch.softmax(torch.zeros(1, 2, 4, 4), 1), classes=[1]).tolist()
        [[[1.5, 1.5]]]
    """
    probs = _select(probs, classes)
    return _finish("centroid", _raw_sums("centroid", probs, spacing=spacing), eps=eps)


def fractional_moment(
    probs: torch.Tensor,
    weight_map: torch.Tensor,
    classes: Sequence[int] | None = None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """``Σ_p f_m(p) S_k(p) / Σ_p S_k(p)`` for maps ``f`` ``(B or 1, M, *spatial)``: ``(B, C', M)``.

    With ``f`` the image intensity this is the mean intensity inside each soft region.

    Example:
        >>> import torch
        >>> f = torch.arange(16.0).reshape(1, 1, 4, 4)
        >>> fractional_moment(torch.softmax(torch.zeros(1, 2, 4, 4), 1), f, classes=[1]).tolist()
        [[[7.5]]]
    """
    probs = _select(probs, classes)
    return _finish("fractional", _raw_sums("fractional", probs, weight_map=weight_map), eps=eps)


def central_moment(
    probs: torch.Tensor,
    order: int = 2,
    classes: Sequence[int] | None = None,
    spacing: Sequence[float] | None = None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Central shape moment ``Σ_p S_k(p) (c_p - C_k)^n / Σ_p S_k(p)`` per spatial axis, ``(B, C', N)``.

    ``order = 2`` is the variance of the region along each axis (its spread), in voxels² (or mm²).

    Example:
        >>> import torch
        >>> central_moment(torch.softmax(torch.zeros(1, 2, 4, 4), 1), classes=[1]).tolist()  # var of 0..3
        [[[1.25, 1.25]]]
    """
    if int(order) != order or order < 1:
        raise ValueError(f"order must be a positive integer, got {order}")
    probs = _select(probs, classes)
    sums = _raw_sums("moment", probs, spacing=spacing, order=int(order))
    return _finish("moment", sums, order=int(order), eps=eps)


# ---------------------------------------------------------------------------------------------
# batch helpers shared by the losses
# ---------------------------------------------------------------------------------------------


def _softmax(logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits if logits.dtype == torch.float64 else logits.float(), dim=1)


def _group_inverse(loss: WeakLoss, batch: Mapping, group_key: str, num_images: int, device) -> tuple:
    """``(inverse (B,), group values (G,))`` of the volume index of each image."""
    groups = loss.read(batch, group_key).to(device).reshape(-1)
    if groups.numel() != num_images:
        raise ValueError(f"{group_key!r} must hold one volume index per image ({num_images}), got {groups.numel()}")
    values, inverse = torch.unique(groups, return_inverse=True)
    return inverse, values


def _group_first(inverse: torch.Tensor, num_groups: int) -> torch.Tensor:
    """The first image of each group, ``(G,)``."""
    num_images = inverse.numel()
    first = torch.full((num_groups,), num_images, device=inverse.device, dtype=torch.long)
    return first.scatter_reduce(0, inverse, torch.arange(num_images, device=inverse.device), "amin")


def _constraint_ids(keys: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Ids ``key · K + local`` ``(G, C', M, 2)`` of the constraints ``z``, with ``K = C'·M·2``."""
    per_item = math.prod(z.shape[1:])
    local = torch.arange(per_item, device=z.device).reshape(z.shape[1:])
    return keys.reshape(-1, 1, 1, 1) * per_item + local


class InequalityConstraintLoss(WeakLoss):
    """Constraints ``lower ≤ f(S) ≤ upper`` on a constraint function of the softmax, read from the batch.

    Each bound is one constraint ``z ≤ 0``: ``z[..., 0] = lower - f`` and ``z[..., 1] = f - upper``
    (``lower = upper`` makes an equality). ``f`` is one of :data:`CONSTRAINT_FUNCTIONS`: ``"size"``
    (:func:`soft_size`), ``"centroid"`` (:func:`soft_centroid`), ``"fractional"``
    (:func:`fractional_moment` on ``batch[map_key]`` or a fixed ``weight_map``) or ``"moment"``
    (:func:`central_moment` of ``order``). The cost of each constraint depends on ``mode``:

    - ``"penalty"``: ``max(0, z)²`` (Kervadec et al. 2019);
    - ``"log_barrier"``: ``ψ_t(z)`` (:func:`wss_monai.losses.log_barrier_extension`); ``t`` is raised
      by :class:`wss_monai.handlers.LogBarrierScheduler`, which finds this term by ``mode``;
    - ``"lagrangian"``: ``λ_i z_i``, one multiplier ``λ_i ≥ 0`` per constraint, updated once per
      epoch by dual ascent ``λ ← max(0, λ + η z̄)``;
    - ``"relu_lagrangian"``: ``λ_i max(0, z_i)`` (Nandwani et al. 2019), ``λ ← λ + η mean(max(0, z))``,
      so λ only grows.

    Multipliers belong to dataset items: a constraint is identified by its item key, class, moment
    and side. The item key is ``batch[index_key]`` (an integer per item), or several keys combined
    (the default ``("volume_index", "slice_index")`` gives ``volume·2²⁰ + slice``); with
    ``per="volume"`` it is ``batch[group_key]``. The multipliers are not held here: a
    :class:`wss_monai.handlers.DualAscentHandler` gives the term its table (``dual_variables``, a
    :class:`wss_monai.handlers.DualVariables`) and updates it once per epoch; ``forward`` only reads
    it. Without a table (or for a constraint not seen yet) the multiplier is ``multiplier_init``.

    Value hooks: ``register_value_hook(callback)`` calls ``callback(z, ids)`` (detached) after each
    forward on logits that require a gradient, with the values that forward computed, so handlers
    that record every training batch (dual ascent, constraint monitor) need not evaluate the
    constraints a second time. ``forward`` changes no attribute of the module.

    Args:
        key: batch key of the bounds, ``(B, C or C', M, 2)`` as ``[lower, upper]``; ``(B, C or C', 2)``
            when M = 1 (e.g. size bounds from :class:`wss_monai.transforms.SizeBoundsd`). Units: voxels for
            the size, voxels (or mm with ``spacing``) for the centroid, the map's unit for ``"fractional"``.
        function: one of :data:`CONSTRAINT_FUNCTIONS`.
        mode: one of :data:`wss_monai.losses.CONSTRAINT_MODES`.
        classes: indices of the constrained classes; ``None`` means every class but the background (0).
        per: ``"image"`` or ``"volume"`` (slices sharing ``batch[group_key]`` are one volume: numerators
            and denominators are summed over its slices before dividing).
        group_key: batch key of the volume index of each image, ``(B,)``.
        index_key: batch key (or keys) identifying each item, for the multipliers and the constraint ids.
        map_key: batch key of the maps ``(B, M, *spatial)`` for ``function="fractional"`` (e.g. ``"image"``).
        weight_map: a fixed map ``(M, *spatial)`` for ``function="fractional"``, instead of ``map_key``.
        order: moment order for ``function="moment"``.
        spacing: voxel spacing per spatial axis for ``"centroid"`` and ``"moment"`` (``None``: voxel units).
        t: initial log-barrier parameter.
        multiplier_init: multiplier of a constraint not updated yet (Lagrangian modes).
        eps: lower clamp of the ratio denominators ``Σ_p S``.
        normalize: divide each image's (or volume's) summed cost by its number of voxels |Ω| (the
            original size-penalty code divides by 256²).
        reduction: ``"mean"``/``"sum"`` over images (or volumes), or ``"none"`` (``(G,)``).

    Half precision: the softmax, values and costs are computed in float32 (float64 for float64
    logits), so the loss stays finite at t = 1e9 with fp16 logits. Its gradient on a violated size
    constraint is about ``weight · t`` per voxel; past fp16's range (65504) under autocast, the
    ``GradScaler`` sees the overflow and skips that step, as it does for any overflow.

    Shapes:
        logits ``(B, C, H, W[, D])``; bounds ``(B, C or C', M, 2)``; output a scalar or ``(G,)``.

    Example:
        >>> import torch
        >>> logits = torch.zeros(1, 2, 4, 4)                      # class 1: centroid (1.5, 1.5)
        >>> bounds = torch.tensor([[[[2.0, 3.0], [0.0, 3.0]]]])   # (B, C', M, 2): rows need ≥ 2
        >>> loss = InequalityConstraintLoss(function="centroid", mode="penalty")
        >>> loss(logits, {"bounds": bounds}).item()               # (2 - 1.5)^2
        0.25
        >>> sizes = torch.tensor([[[0.0, 16.0], [10.0, 12.0]]])  # (B, C, 2): soft sizes 8 and 8
        >>> InequalityConstraintLoss(mode="penalty")(logits, {"bounds": sizes}).item()   # (10 - 8)^2
        4.0
    """

    def __init__(
        self,
        key: str = "bounds",
        function: str = "size",
        mode: str = "log_barrier",
        classes: Sequence[int] | None = None,
        per: str = "image",
        group_key: str = "volume_index",
        index_key: str | Sequence[str] = ("volume_index", "slice_index"),
        map_key: str | None = None,
        weight_map: torch.Tensor | None = None,
        order: int = 2,
        spacing: Sequence[float] | None = None,
        t: float = 5.0,
        multiplier_init: float = 0.0,
        eps: float = 1e-6,
        normalize: bool = False,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction=reduction)
        if function not in CONSTRAINT_FUNCTIONS:
            raise ValueError(f"function must be one of {CONSTRAINT_FUNCTIONS}, got {function!r}")
        if mode not in CONSTRAINT_MODES:
            raise ValueError(f"mode must be one of {CONSTRAINT_MODES}, got {mode!r}")
        if per not in ("image", "volume"):
            raise ValueError(f"per must be 'image' or 'volume', got {per!r}")
        if not t > 0 or not math.isfinite(t):
            raise ValueError(f"t must be a finite positive number, got {t}")
        if int(order) != order or order < 1:
            raise ValueError(f"order must be a positive integer, got {order}")
        if not multiplier_init >= 0:
            raise ValueError(f"multiplier_init must be non-negative, got {multiplier_init}")
        if not eps > 0:
            raise ValueError(f"eps must be positive, got {eps}")
        if function == "fractional" and (map_key is None) == (weight_map is None):
            raise ValueError("function 'fractional' needs exactly one of map_key and weight_map")
        if function != "fractional" and (map_key is not None or weight_map is not None):
            raise ValueError(f"map_key and weight_map only apply to function 'fractional', not {function!r}")
        self.key, self.function, self.mode, self.per, self.group_key = key, function, mode, per, group_key
        self.index_key = [index_key] if isinstance(index_key, str) else list(index_key)
        if not self.index_key:
            raise ValueError("index_key must name at least one batch key")
        self.map_key, self.order = map_key, int(order)
        self.spacing = None if spacing is None else [float(s) for s in spacing]
        self.classes = None if classes is None else [int(c) for c in classes]
        self.t, self.multiplier_init, self.eps = float(t), float(multiplier_init), float(eps)
        self.normalize = bool(normalize)
        if weight_map is not None:
            self.register_buffer("weight_map", torch.as_tensor(weight_map, dtype=torch.float32).unsqueeze(0))
        else:
            self.weight_map = None
        self.dual_variables = None  # set by a DualAscentHandler: the multiplier table this term reads
        self._value_hooks: OrderedDict[int, object] = OrderedDict()  # weak-referenced by the handles

    # -- constraint values -------------------------------------------------------------------------

    def _class_index(self, num_classes: int) -> list[int]:
        classes = list(range(1, num_classes)) if self.classes is None else self.classes
        bad = [c for c in classes if not 0 <= c < num_classes]
        if bad:
            raise ValueError(f"classes {bad} out of range for a {num_classes}-class output")
        return classes

    def _bounds(self, batch: Mapping, num_images: int, num_classes: int, classes: list[int], num_moments: int, device):
        bounds = self.read(batch, self.key).to(device=device, dtype=torch.float32)
        if bounds.ndim == 3 and num_moments == 1:
            bounds = bounds.unsqueeze(2)
        allowed = {(num_images, c, num_moments, 2) for c in (num_classes, len(classes))}
        if tuple(bounds.shape) not in allowed:
            raise ValueError(
                f"{self.key!r} must have shape (B, C or C', M, 2) with B = {num_images}, C = {num_classes}, "
                f"C' = {len(classes)}, M = {num_moments} for function {self.function!r}"
                + (" (or (B, C or C', 2))" if num_moments == 1 else "")
                + f", got {tuple(self.read(batch, self.key).shape)}"
            )
        if bounds.shape[1] == num_classes and len(classes) != num_classes:
            bounds = bounds[:, classes]
        if not torch.isfinite(bounds).all():
            raise ValueError(f"{self.key!r} contains NaN or inf values")
        if (bounds[..., 0] > bounds[..., 1]).any():
            raise ValueError(f"{self.key!r} has lower bounds above upper bounds")
        return bounds

    def _item_keys(self, batch: Mapping, num_images: int, device) -> torch.Tensor:
        keys = None
        for position, name in enumerate(self.index_key):
            value = self.read(batch, name).to(device).reshape(-1)
            if value.numel() != num_images or value.is_floating_point() or value.dtype == torch.bool:
                raise ValueError(
                    f"{name!r} must hold one integer per image ({num_images}), got {value.numel()} of {value.dtype}"
                )
            value = value.long()
            if (value < 0).any() or (position > 0 and (value >= KEY_RADIX).any()):
                raise ValueError(f"{name!r} must hold non-negative integers (below {KEY_RADIX} after the first key)")
            keys = value if keys is None else keys * KEY_RADIX + value
        return keys

    def _evaluate(self, logits: torch.Tensor, batch: Mapping, with_ids: bool):
        self.check_logits(logits)
        num_images, num_classes = logits.shape[:2]
        classes = self._class_index(num_classes)
        probs = _softmax(logits)
        if classes and classes == list(range(classes[0], classes[-1] + 1)):
            probs = probs[:, classes[0] : classes[-1] + 1]  # a view: no copy, no scatter in the backward
        else:
            probs = probs[:, classes]
        weight_map = None
        if self.function == "fractional":
            weight_map = self.read(batch, self.map_key) if self.map_key is not None else self.weight_map
        sums = _raw_sums(self.function, probs, spacing=self.spacing, weight_map=weight_map, order=self.order)
        num_moments = _finish(self.function, sums[:1], order=self.order, eps=self.eps).shape[-1]
        bounds = self._bounds(batch, num_images, num_classes, classes, num_moments, logits.device)
        keys = None
        voxels = torch.full((num_images,), float(math.prod(logits.shape[2:])), device=logits.device)
        if self.per == "volume":
            inverse, keys = _group_inverse(self, batch, self.group_key, num_images, logits.device)
            num_groups = keys.numel()
            sums = sums.new_zeros(num_groups, *sums.shape[1:]).index_add(0, inverse, sums)
            voxels = voxels.new_zeros(num_groups).index_add(0, inverse, voxels)
            group_bounds = bounds[_group_first(inverse, num_groups)]
            if not torch.equal(group_bounds[inverse], bounds):
                raise ValueError(f"slices of one volume ({self.group_key!r}) carry different {self.key!r}")
            bounds = group_bounds
            keys = keys.long()
            if (keys < 0).any():
                raise ValueError(f"{self.group_key!r} must hold non-negative integers for the constraint ids")
        elif with_ids:
            keys = self._item_keys(batch, num_images, logits.device)
        values = _finish(self.function, sums, order=self.order, eps=self.eps)  # (G, C', M)
        bounds = bounds.to(values.dtype)
        z = torch.stack([bounds[..., 0] - values, values - bounds[..., 1]], dim=-1)  # (G, C', M, 2)
        ids = _constraint_ids(keys, z) if with_ids or keys is not None else None  # per volume: keys known
        return z, ids, voxels

    def constraint_values(self, logits: torch.Tensor, batch: Mapping) -> tuple[torch.Tensor, torch.Tensor]:
        """The constraints ``z`` ``(G, C', M, 2)`` of the batch and their ids (int64, same shape).

        A constraint holds where ``z ≤ 0``. ``ids = item_key · K + local`` with ``K = C'·M·2`` and
        ``local`` the position in ``(C', M, 2)``; they identify a constraint across epochs (needs the
        ``index_key`` keys, or ``group_key`` with ``per="volume"``).
        """
        z, ids, _ = self._evaluate(logits, batch, with_ids=True)
        return z, ids

    def register_value_hook(self, callback) -> RemovableHandle:
        """Calls ``callback(z, ids)`` after each forward on logits that require a gradient; returns the handle.

        ``z`` and ``ids`` are those of :meth:`constraint_values`, detached, taken from the forward's own
        computation. ``handle.remove()`` detaches the callback.
        """
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {type(callback).__name__}")
        handle = RemovableHandle(self._value_hooks)
        self._value_hooks[handle.id] = callback
        return handle

    def lookup_multipliers(self, ids: torch.Tensor) -> torch.Tensor:
        """The multipliers of the constraints ``ids`` ``(G, C', M, 2)`` in ``dual_variables``; ``multiplier_init``
        without a table or for a constraint it has not seen. Read-only."""
        if self.dual_variables is None:
            return torch.full(ids.shape, self.multiplier_init, device=ids.device)
        return self.dual_variables.lookup(ids)

    # -- loss --------------------------------------------------------------------------------------

    def forward(self, logits: torch.Tensor, batch: Mapping) -> torch.Tensor:
        watched = bool(self._value_hooks) and logits.requires_grad and torch.is_grad_enabled()
        z, ids, voxels = self._evaluate(logits, batch, with_ids=watched or self.mode in LAGRANGIAN_MODES)
        if self.mode == "penalty":
            cost = quadratic_penalty(z)
        elif self.mode == "log_barrier":
            cost = log_barrier_extension(z, self.t)
        else:
            lam = self.lookup_multipliers(ids).to(z.dtype)
            cost = lam * (z if self.mode == "lagrangian" else torch.relu(z))
        per_group = cost.flatten(1).sum(1)
        if self.normalize:
            per_group = per_group / voxels
        if watched:
            for callback in list(self._value_hooks.values()):
                callback(z.detach(), ids)
        return reduce_per_image(per_group, self.reduction)


# ---------------------------------------------------------------------------------------------
# Lagrangian proposals (Pathak et al. 2015)
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def lagrangian_proposal(
    logits: torch.Tensor,
    bounds: torch.Tensor,
    lr: float = 5e-5,
    max_iter: int = 500,
    tol: float = 1.0,
    inverse: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The latent ``P = argmin KL(P‖S)`` under size bounds ``a_k ≤ Σ_p P_k(p) ≤ b_k`` (Pathak et al. 2015).

    The constraints are linear in ``P``, so the minimiser is ``P_k(p) ∝ S_k(p) exp(λ⁻_k - λ⁺_k)`` with
    duals ``λ ≥ 0`` (one per image or volume, class and side), found by projected gradient ascent on
    the dual: ``λ ← max(0, λ + lr · z(P(λ)))`` with ``z = [a - V, V - b]`` in voxels. ``lr = 5e-5`` on
    raw voxel counts is Pathak's setting; for violations normalised by the image size |Ω| the same
    step is ``lr · |Ω|``. An image (or volume) stops once all its constraints hold within ``tol``
    voxels (``z ≤ tol``), and the loop stops when all have, or after ``max_iter`` steps.
    Vectorised over images, classes and sides; the only loop is over iterations.

    Args:
        logits: ``(B, C, *spatial)``, detached internally.
        bounds: ``(G, C, 2)`` ``[lower, upper]`` in voxels; ``-inf`` / ``inf`` leave a side free.
        lr: dual step size, per voxel of violation.
        max_iter: largest number of dual steps.
        tol: tolerance on the violation, in voxels.
        inverse: group of each image ``(B,)`` (sizes summed over the slices of a volume); ``None``: G = B.

    Returns:
        ``(P (B, C, *spatial), λ (G, C, 2), number of dual steps taken)``.
    """
    logits = logits.detach()
    logits = logits if logits.dtype == torch.float64 else logits.float()
    num_images, num_classes = logits.shape[:2]
    if inverse is None:
        inverse = torch.arange(num_images, device=logits.device)
    num_groups = int(inverse.max()) + 1 if inverse.numel() else 0
    if bounds.shape != (num_groups, num_classes, 2):
        raise ValueError(
            f"bounds must have shape (G, C, 2) = {(num_groups, num_classes, 2)}, got {tuple(bounds.shape)}"
        )
    bounds = bounds.to(logits)
    extra = (1,) * (logits.ndim - 2)
    lam = logits.new_zeros(num_groups, num_classes, 2)
    steps = 0
    for step in range(max_iter + 1):
        shift = (lam[..., 0] - lam[..., 1])[inverse]  # (B, C)
        latent = torch.softmax(logits + shift.reshape(num_images, num_classes, *extra), dim=1)
        sizes = latent.flatten(2).sum(-1)
        sizes = sizes.new_zeros(num_groups, num_classes).index_add(0, inverse, sizes)
        z = torch.stack([bounds[..., 0] - sizes, sizes - bounds[..., 1]], dim=-1)
        done = (z <= tol).flatten(1).all(1)
        if bool(done.all()) or step == max_iter:
            break
        lam = torch.where(done.reshape(-1, 1, 1), lam, (lam + lr * z).clamp_min(0))
        steps += 1
    return latent, lam, steps


class LagrangianProposalLoss(WeakLoss):
    """Cross-entropy of the softmax against the constrained latent of :func:`lagrangian_proposal`.

    ``L = -Σ_p Σ_k P_k(p) log S_k(p) / |Ω|`` with ``P`` detached: the constrained CNN of Pathak et al.
    (ICCV 2015), here with size bounds ``(B, C, 2)`` (the ``bounds`` of :class:`InequalityConstraintLoss`,
    or ``(B, C', 2)`` for the selected classes). Other classes are left free.

    Args:
        key: batch key of the size bounds in voxels.
        classes: constrained classes; ``None`` means every class but the background.
        per: ``"image"`` or ``"volume"`` (sizes summed over the slices sharing ``batch[group_key]``).
        group_key: batch key of the volume index of each image.
        lr, max_iter, tol: the dual solver's settings (Pathak: 5e-5 on voxel counts, 500 iterations).
        reduction: ``"mean"``/``"sum"`` over images, or ``"none"`` (``(B,)``).

    Example:
        >>> import torch
        >>> loss = LagrangianProposalLoss(lr=0.05)
        >>> round(loss(torch.zeros(1, 2, 4, 4), {"bounds": torch.tensor([[[0.0, 16.0], [4.0, 6.0]]])}).item(), 4)
        0.6931
    """

    def __init__(
        self,
        key: str = "bounds",
        classes: Sequence[int] | None = None,
        per: str = "image",
        group_key: str = "volume_index",
        lr: float = 5e-5,
        max_iter: int = 500,
        tol: float = 1.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction=reduction)
        if per not in ("image", "volume"):
            raise ValueError(f"per must be 'image' or 'volume', got {per!r}")
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if int(max_iter) != max_iter or max_iter < 0:
            raise ValueError(f"max_iter must be a non-negative integer, got {max_iter}")
        if not tol >= 0:
            raise ValueError(f"tol must be non-negative, got {tol}")
        self.key, self.per, self.group_key = key, per, group_key
        self.classes = None if classes is None else [int(c) for c in classes]
        self.lr, self.max_iter, self.tol = float(lr), int(max_iter), float(tol)

    def proposal(self, logits: torch.Tensor, batch: Mapping) -> tuple[torch.Tensor, torch.Tensor, int]:
        """The latent ``P`` ``(B, C, *spatial)``, the duals ``(G, C, 2)`` and the number of dual steps."""
        self.check_logits(logits)
        num_images, num_classes = logits.shape[:2]
        classes = list(range(1, num_classes)) if self.classes is None else self.classes
        bad = [c for c in classes if not 0 <= c < num_classes]
        if bad:
            raise ValueError(f"classes {bad} out of range for a {num_classes}-class output")
        raw = self.read(batch, self.key)
        bounds = raw.to(device=logits.device, dtype=torch.float32)
        if bounds.shape not in {(num_images, num_classes, 2), (num_images, len(classes), 2)}:
            raise ValueError(
                f"{self.key!r} must have shape (B, C or C', 2) with B = {num_images}, C = {num_classes}, "
                f"C' = {len(classes)}, got {tuple(raw.shape)}"
            )
        if not torch.isfinite(bounds).all():
            raise ValueError(f"{self.key!r} contains NaN or inf values")
        if (bounds[..., 0] > bounds[..., 1]).any():
            raise ValueError(f"{self.key!r} has lower bounds above upper bounds")
        if bounds.shape[1] == num_classes:
            bounds = bounds[:, classes]
        full = torch.tensor([-math.inf, math.inf], device=logits.device).expand(num_images, num_classes, 2).clone()
        full[:, classes] = bounds
        inverse = None
        if self.per == "volume":
            inverse, values = _group_inverse(self, batch, self.group_key, num_images, logits.device)
            group_bounds = full[_group_first(inverse, values.numel())]
            if not torch.equal(group_bounds[inverse], full):
                raise ValueError(f"slices of one volume ({self.group_key!r}) carry different {self.key!r}")
            full = group_bounds
        return lagrangian_proposal(logits, full, lr=self.lr, max_iter=self.max_iter, tol=self.tol, inverse=inverse)

    def forward(self, logits: torch.Tensor, batch: Mapping) -> torch.Tensor:
        latent, _, _ = self.proposal(logits, batch)
        log_probs = torch.log_softmax(logits if logits.dtype == torch.float64 else logits.float(), dim=1)
        cross_entropy = -(latent.to(log_probs.dtype) * log_probs).sum(1).flatten(1).mean(1)
        return reduce_per_image(cross_entropy, self.reduction)
