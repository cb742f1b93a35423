"""Parameters of ``configs/supervision/boxes.yaml``, checked once with the allowed values named.

Example:
    >>> recipe = box_recipe("prior", "label", 2, "log_barrier", network_dims=2)
    >>> recipe.prior, recipe.from_files, recipe.log_barrier, recipe.box_target
    (True, False, True, False)
    >>> box_recipe("prior", "label", 2, "log_barrier", warmup_epochs=5).box_target  # masked CE first
    True
    >>> box_recipe("prior", "label", 3, "log_barrier", network_dims=2)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    ValueError: box_dims 3 (boxes per volume) needs whole-volume training with a 3D network: ...
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from wss_monai.bundle.recipes import choose
from wss_monai.losses.boxes import BOX_MODES

__all__ = ["BOX_LOSSES", "BOX_MASKED_LOSSES", "BOX_SOURCES", "BoxRecipe", "box_recipe"]

BOX_LOSSES = ("prior", "masked_ce", "deepcut")
"""Box supervision: the constraints of Kervadec et al. 2020, cross-entropy (inside = class, outside = background),
or DeepCut (cross-entropy on dense-CRF proposals refreshed every few epochs)."""
BOX_MASKED_LOSSES = ("ce", "gdl")
"""The loss on the per-voxel box target (masked CE, the prior's warm-up, DeepCut's proposals): cross-entropy, or
MONAI's generalised Dice (class-balanced, for lesions of a few voxels: docs/boxes.md)."""
BOX_SOURCES = ("label", "files")
"""Where the boxes come from: the full label (tight boxes, margin, jitter), or box files (JSON or box masks)."""


@dataclass(frozen=True)
class BoxRecipe:
    """What the parameters of ``configs/supervision/boxes.yaml`` imply; built by :func:`box_recipe`."""

    box_loss: str
    box_source: str
    box_dims: int
    constraint_handling: str
    warmup_epochs: int = 0
    masked_loss: str = "ce"

    @property
    def prior(self) -> bool:
        return self.box_loss == "prior"

    @property
    def deepcut(self) -> bool:
        return self.box_loss == "deepcut"

    @property
    def from_files(self) -> bool:
        return self.box_source == "files"

    @property
    def log_barrier(self) -> bool:
        return self.prior and self.constraint_handling == "log_barrier"

    @property
    def warmup(self) -> bool:
        """The box prior starts after ``warmup_epochs`` epochs of masked cross-entropy."""
        return self.prior and self.warmup_epochs > 0

    @property
    def box_target(self) -> bool:
        """Whether the per-voxel box target of masked cross-entropy is built (and trained on at some point)."""
        return not self.prior or self.warmup


def box_recipe(
    box_loss: str,
    box_source: str,
    box_dims: int | str,
    constraint_handling: str,
    network_dims: int | str = 2,
    warmup_epochs: int = 0,
    size_less_margin: bool = False,
    masked_ce_after_warmup: float = 0.0,
    masked_loss: str = "ce",
) -> BoxRecipe:
    """Checks the choices of ``boxes.yaml``.

    Raises:
        ValueError: a value outside the allowed ones (named with them), 3D boxes with a 2D network (the
            slices of a 3D box are not tight boxes of the slices), or a warm-up that is not a whole number
            of epochs >= 0 or is given to another loss than the prior, or ``box_size_less_margin`` without
            the prior or with boxes from files (their margin is not known), or a weight of the masked
            cross-entropy after the warm-up that is negative, not finite, or given without a warm-up, or
            the generalised Dice on the box target of a 3D network (its depth padding is unlabelled).
    """
    if isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, int) or warmup_epochs < 0:
        raise ValueError(f"box_warmup_epochs must be an integer >= 0, got {warmup_epochs!r}")
    recipe = BoxRecipe(
        choose("box_loss", box_loss, BOX_LOSSES),
        choose("box_source", box_source, BOX_SOURCES),
        choose("box_dims", box_dims, (2, 3)),
        choose("box_constraint_handling", constraint_handling, BOX_MODES),
        warmup_epochs,
        choose("box_masked_loss", masked_loss, BOX_MASKED_LOSSES),
    )
    if recipe.masked_loss == "gdl" and int(network_dims) != 2:
        raise ValueError(
            "box_masked_loss 'gdl' is for 2D networks: whole volumes are padded in depth with unlabelled voxels, "
            "which the generalised Dice cannot leave out; use 'ce'"
        )
    if warmup_epochs and not recipe.prior:
        raise ValueError(
            f"box_warmup_epochs ({warmup_epochs}) is the masked cross-entropy warm-up of box_loss 'prior'; "
            f"box_loss is {recipe.box_loss!r}"
        )
    weight_ok = isinstance(masked_ce_after_warmup, (int, float)) and not isinstance(masked_ce_after_warmup, bool)
    if not weight_ok or not math.isfinite(masked_ce_after_warmup) or masked_ce_after_warmup < 0:
        raise ValueError(f"box_masked_ce_after_warmup must be a finite number >= 0, got {masked_ce_after_warmup!r}")
    if masked_ce_after_warmup and not recipe.warmup:
        raise ValueError(
            f"box_masked_ce_after_warmup ({masked_ce_after_warmup}) weighs the masked cross-entropy beside the "
            "constraints after the warm-up: it needs box_loss 'prior' and box_warmup_epochs > 0"
        )
    if not isinstance(size_less_margin, bool):
        raise ValueError(f"box_size_less_margin must be true or false, got {size_less_margin!r}")
    if size_less_margin and (not recipe.prior or recipe.from_files):
        raise ValueError(
            "box_size_less_margin takes box_margin off the boxes of the prior's size bound: it needs box_loss "
            f"'prior' and box_source 'label' (boxes drawn with that margin), got {recipe.box_loss!r} and "
            f"{recipe.box_source!r}"
        )
    if recipe.box_dims == 3 and int(network_dims) != 3:
        raise ValueError(
            "box_dims 3 (boxes per volume) needs whole-volume training with a 3D network: "
            "merge configs/profiles/whole_volumes_3d.yaml after the recipe"
        )
    return recipe
