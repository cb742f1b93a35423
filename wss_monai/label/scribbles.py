"""Annotators' scribbles to the project's seed maps: which stored value means which class, or nothing.

A scribble volume saved from MONAI Label (3D Slicer, OHIF) holds integer values whose meaning depends
on how it was painted. :class:`ScribbleConvention` maps every allowed value to a class index or to
:data:`wss_monai.constants.UNLABELLED`; an unknown value is an error, never a silent class. Presets:

- ``"dataset"``: the bundle's own scribble files: class indices ``0 … K-1``, ``unlabelled`` (ACDC's
  shared data: 4) where not annotated.
- ``"painted"``: a label map painted in Slicer's Segment Editor: 0 not annotated, ``1 … K-1`` the
  classes, ``K`` the background (a "background" segment numbered after the classes).
- ``"monailabel"``: MONAI Label's scribbles convention (its scribbles apps): 0 not annotated,
  ``n + 1`` background, ``n + 2`` foreground, ``n = K - 1`` foreground classes; the foreground is one
  ``target`` class. With ``K = 2`` the target defaults to 1.

Any value can be moved with ``background``, ``unlabelled`` and ``foreground`` (a ``{value: class}``
mapping) over a preset.

Example:
    >>> import numpy as np
    >>> convention = ScribbleConvention.preset("monailabel", num_classes=4, target=3)
    >>> convention.mapping
    {0: -1, 4: 0, 5: 3}
    >>> convention.to_seeds(np.array([0, 4, 5, 5])).tolist()
    [-1, 0, 3, 3]
    >>> convention.to_seeds(np.array([0, 7]))
    Traceback (most recent call last):
    ...
    ValueError: scribble values [7] are not in the monailabel convention (allowed: {0: -1, 4: 0, 5: 3})
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from wss_monai.constants import UNLABELLED

__all__ = ["PRESETS", "ScribbleConvention"]

PRESETS = ("dataset", "painted", "monailabel")
"""The named scribble conventions (see the module)."""


def _integer(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral | str):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


@dataclass(frozen=True)
class ScribbleConvention:
    """The meaning of every value of a stored scribble volume.

    Args:
        name: a name for the messages (the preset's).
        num_classes: ``K``, the network's classes (background included).
        mapping: ``{stored value: class index in [0, K) or UNLABELLED}``.
    """

    name: str
    num_classes: int
    mapping: dict[int, int]

    def __post_init__(self) -> None:
        if not self.mapping:
            raise ValueError(f"the {self.name} scribble convention maps no value")
        bad = {v: c for v, c in self.mapping.items() if c != UNLABELLED and not 0 <= c < self.num_classes}
        if bad:
            raise ValueError(f"scribble classes {bad} are outside range({self.num_classes}) (or {UNLABELLED})")

    @classmethod
    def preset(
        cls,
        name: str = "painted",
        num_classes: int = 2,
        unlabelled: int | None = None,
        background: int | None = None,
        foreground: Mapping | None = None,
        target: int | None = None,
    ) -> ScribbleConvention:
        """A preset of :data:`PRESETS`, with any value moved by ``unlabelled``, ``background``, ``foreground``.

        Args:
            name: one of :data:`PRESETS`.
            num_classes: ``K`` (>= 2).
            unlabelled: the value meaning "not annotated" (``"dataset"``: required, e.g. the bundle's
                ``scribble_unlabelled``; the others: 0).
            background: the value meaning background (class 0).
            foreground: ``{value: class}`` for the foreground values, replacing the preset's.
            target: ``"monailabel"`` only: the class of its foreground value.

        Raises:
            ValueError: an unknown preset, a value or class out of range, one value with two meanings.
        """
        if name not in PRESETS:
            raise ValueError(f"scribble convention must be one of {PRESETS}, got {name!r}")
        num_classes = _integer("num_classes", num_classes)
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if name == "dataset":
            if unlabelled is None:
                raise ValueError("the dataset scribble convention needs its unlabelled value (scribble_unlabelled)")
            default_background, default_unlabelled = 0, unlabelled
            default_foreground = {c: c for c in range(1, num_classes)}
        elif name == "painted":
            default_background, default_unlabelled = num_classes, 0
            default_foreground = {c: c for c in range(1, num_classes)}
        else:
            if target is None and num_classes == 2:
                target = 1
            if target is None:
                raise ValueError(
                    f"the monailabel scribble convention has one foreground value: name its class (target) "
                    f"among 1..{num_classes - 1}"
                )
            target = _integer("target", target)
            if not 0 < target < num_classes:
                raise ValueError(f"target must be a foreground class in 1..{num_classes - 1}, got {target}")
            default_background, default_unlabelled = num_classes, 0
            default_foreground = {num_classes + 1: target}
        unlabelled = _integer("unlabelled", default_unlabelled if unlabelled is None else unlabelled)
        background = _integer("background", default_background if background is None else background)
        foreground = default_foreground if foreground is None else dict(foreground)
        entries = [(unlabelled, UNLABELLED, "unlabelled"), (background, 0, "background")]
        entries += [(_integer("foreground value", v), _integer("foreground class", c), "foreground") for v, c in
                    foreground.items()]  # fmt: skip
        mapping: dict[int, int] = {}
        for value, klass, role in entries:
            if value < 0:
                raise ValueError(f"scribble value {value} ({role}) must be >= 0")
            if value in mapping and mapping[value] != klass:
                raise ValueError(f"scribble value {value} has two meanings: {mapping[value]} and {klass} ({role})")
            mapping[value] = klass
        return cls(name, num_classes, dict(sorted(mapping.items())))

    def to_seeds(self, scribble: np.ndarray) -> np.ndarray:
        """Seed map (class index, ``UNLABELLED`` elsewhere) of a stored scribble array, same shape, int64.

        Raises:
            ValueError: the array holds values that are not in the convention (listed in the message).
        """
        scribble = np.asarray(scribble)
        if scribble.dtype.kind == "f":
            if not np.isfinite(scribble).all() or (scribble != np.round(scribble)).any():
                raise ValueError(f"scribble values must be integers ({self.name} convention)")
        values = np.unique(scribble).astype(np.int64)
        unknown = sorted(set(values.tolist()) - set(self.mapping))
        if unknown:
            raise ValueError(
                f"scribble values {unknown[:10]} are not in the {self.name} convention (allowed: {self.mapping})"
            )
        table = np.full(max(self.mapping) + 1, UNLABELLED, dtype=np.int64)
        table[list(self.mapping)] = list(self.mapping.values())
        return table[scribble.astype(np.int64)]

    def to_dataset(self, scribble: np.ndarray, unlabelled: int) -> np.ndarray:
        """The scribble in the bundle's file form: class indices, ``unlabelled`` where not annotated (uint8)."""
        seeds = self.to_seeds(scribble)
        return np.where(seeds == UNLABELLED, unlabelled, seeds).astype(np.uint8)
