"""Parameters of the supervision recipes (configs/supervision/), checked once with the allowed values named.

A recipe that covers several variants (e.g. ``size.yaml``: bound kind × constraint handling × 2D/3D)
takes its choices as plain parameters and asks :func:`size_recipe` what they imply; the components of
the variants not chosen are ``_disabled_`` and never built.

Example:
    >>> recipe = size_recipe("common", "penalty", 3)
    >>> recipe.bounds_mode, recipe.per, recipe.log_barrier, recipe.lagrangian
    ('common', 'volume', False, False)
    >>> size_recipe("tags", "penalty", 4)
    Traceback (most recent call last):
        ...
    ValueError: constraint_dims must be one of (2, 3), got 4
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from wss_monai.losses.constraints import CONSTRAINT_MODES, LAGRANGIAN_MODES

__all__ = [
    "CONSTRAINT_DIMS",
    "SIZE_BOUNDS",
    "SizeRecipe",
    "choose",
    "foreground_labels",
    "foreground_sampler",
    "size_recipe",
]

SIZE_BOUNDS = ("individual", "common", "centroid", "tags")
"""Kinds of size bounds: the true size ± margin, one reference patient's range, individual + a centroid box,
or image tags (present: [1, |Ω|], absent: 0)."""
CONSTRAINT_DIMS = (2, 3)
"""Constraints per 2D slice or per 3D volume (batches of whole volumes)."""


def choose(name: str, value: Any, allowed: Sequence) -> Any:
    """``value`` if it is one of ``allowed``, else a ValueError naming the parameter ``name`` and the allowed values.

    A string that spells an allowed integer (``"3"`` from a command line) is taken as that integer.

    Example:
        >>> choose("constraint_dims", "3", (2, 3))
        3
    """
    allowed = tuple(allowed)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit() and int(value) in allowed:
        value = int(value)
    if isinstance(value, bool) or value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def foreground_labels(name: str, value: Any, num_classes: int) -> tuple[int, ...]:
    """``value`` as a tuple of distinct class indices in ``1 .. num_classes - 1``, else a ValueError naming ``name``.

    ``value`` is a sequence of integers (a string that spells one, from a command line, is taken as it);
    an empty sequence or None gives ``()``.

    Example:
        >>> foreground_labels("keep_largest_component", [1, "3"], 4)
        (1, 3)
        >>> foreground_labels("keep_largest_component", [0, 1], 4)
        Traceback (most recent call last):
            ...
        ValueError: keep_largest_component must list distinct foreground classes in 1..3, got [0, 1]
    """
    items = [] if value is None else [value] if isinstance(value, (int, str)) else list(value)
    labels = []
    for item in items:
        if isinstance(item, str) and item.strip().isdigit():
            item = int(item)
        labels.append(item)
    valid = all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v < num_classes for v in labels)
    if not valid or len(set(labels)) != len(labels):
        raise ValueError(f"{name} must list distinct foreground classes in 1..{num_classes - 1}, got {value!r}")
    return tuple(labels)


@dataclass(frozen=True)
class SizeRecipe:
    """What the parameters of ``configs/supervision/size.yaml`` imply; built by :func:`size_recipe`.

    Attributes:
        size_bounds: one of :data:`SIZE_BOUNDS`.
        constraint_handling: one of :data:`wss_monai.losses.CONSTRAINT_MODES`.
        constraint_dims: 2 or 3.
        bounds_mode: the ``mode`` of :class:`wss_monai.transforms.SizeBoundsd` (``"individual"`` for ``"centroid"``).
        per: the ``per`` of :class:`wss_monai.losses.InequalityConstraintLoss` (``"image"`` or ``"volume"``).
        centroid: whether a centroid term and its bounds are added.
        log_barrier: whether the log-barrier schedule runs.
        lagrangian: whether dual ascent runs (standard or ReLU Lagrangian).
    """

    size_bounds: str
    constraint_handling: str
    constraint_dims: int

    @property
    def bounds_mode(self) -> str:
        return "individual" if self.size_bounds == "centroid" else self.size_bounds

    @property
    def per(self) -> str:
        return "volume" if self.constraint_dims == 3 else "image"

    @property
    def centroid(self) -> bool:
        return self.size_bounds == "centroid"

    @property
    def log_barrier(self) -> bool:
        return self.constraint_handling == "log_barrier"

    @property
    def lagrangian(self) -> bool:
        return self.constraint_handling in LAGRANGIAN_MODES

    @property
    def default_weight(self) -> float:
        """The size term's weight that the recipes were measured with (the penalty's before the division by |Ω|).

        Penalty: 1e-2, divided by the slice's voxel count in the term weight; log-barrier: 1e-4 on raw
        voxel counts; Lagrangian: 1e-4. In 3D, times 2 volumes / 16 slices (1.25e-5 for the log-barrier),
        so that a violated constraint pushes each voxel as hard as in 2D.
        """
        if self.constraint_handling == "penalty":
            return 0.01 if self.constraint_dims == 2 else 0.00125
        return 1.25e-05 if self.constraint_dims == 3 else 0.0001


def size_recipe(
    size_bounds: str, constraint_handling: str, constraint_dims: int | str, hybrid: bool = False
) -> SizeRecipe:
    """Checks the three parameters of ``configs/supervision/size.yaml`` and returns a :class:`SizeRecipe`.

    Args:
        size_bounds: one of :data:`SIZE_BOUNDS`.
        constraint_handling: one of :data:`wss_monai.losses.CONSTRAINT_MODES`.
        constraint_dims: 2 or 3 (``"2"`` / ``"3"`` accepted).
        hybrid: the recipe is merged with ``hybrid_size.yaml``, whose labelled slices need the label in the
            batch (which the centroid variant drops).

    Raises:
        ValueError: a value outside the allowed ones (the message names the parameter and lists them),
            ``size_bounds: centroid`` with ``constraint_dims: 3`` (centroid bounds are per slice) or with
            ``hybrid``.
    """
    recipe = SizeRecipe(
        choose("size_bounds", size_bounds, SIZE_BOUNDS),
        choose("constraint_handling", constraint_handling, CONSTRAINT_MODES),
        choose("constraint_dims", constraint_dims, CONSTRAINT_DIMS),
    )
    if recipe.centroid and recipe.constraint_dims == 3:
        raise ValueError("size_bounds 'centroid' needs constraint_dims 2 (centroid bounds are per slice), got 3")
    if recipe.centroid and hybrid:
        allowed = tuple(b for b in SIZE_BOUNDS if b != "centroid")
        raise ValueError(f"size_bounds must be one of {allowed} with hybrid_size.yaml, got 'centroid'")
    return recipe


def foreground_sampler(dataset: Any, key: str | None, fraction: float, seed: int, batch_sampler: Any = None) -> Any:
    """The training sampler of ``foreground_oversample``: None at 0 (plain shuffling), else a seeded
    :class:`wss_monai.data.ForegroundOversampler` drawing that share among the items with foreground in ``key``.

    Raises:
        ValueError: ``fraction`` is not a number in [0, 1]; or it is > 0 and the recipe names no
            ``foreground_key``, or a recipe's ``batch_sampler`` (whole volumes per batch) is set too.

    Example:
        >>> foreground_sampler(None, None, 0.0, seed=0) is None
        True
        >>> foreground_sampler(None, None, 1.5, seed=0)
        Traceback (most recent call last):
            ...
        ValueError: foreground_oversample must be a number in [0, 1], got 1.5
    """
    from wss_monai.data.samplers import ForegroundOversampler, checked_fraction

    if checked_fraction(fraction) == 0:
        return None
    if key is None:
        raise ValueError(
            f"foreground_oversample {fraction} needs foreground_key, the annotation that tells foreground; "
            "this recipe names none (with full labels: --foreground_key label)"
        )
    if batch_sampler is not None:
        raise ValueError(
            f"foreground_oversample {fraction} cannot be combined with the recipe's batch_sampler "
            f"({type(batch_sampler).__name__}), which batches whole volumes"
        )
    return ForegroundOversampler(dataset, key, fraction, seed=seed)
