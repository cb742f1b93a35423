"""Real scribble files: map the file's "unlabelled" value to :data:`UNLABELLED` and check the map.

The ACDC scribbles of Valvano et al. ("Learning to segment from scribbles using multi-scale
adversarial attention gates", IEEE TMI 2021) store 0 background, 1 RV, 2 MYO, 3 LV and
4 unlabelled, as ``patientNNN_frameYY_scribble.nii.gz``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import Transform
from monai.utils import TransformBackends, convert_data_type

from wss_monai.constants import UNLABELLED
from wss_monai.transforms._slices import KeyLoopd, check_int, check_number, check_unlabelled, source_name, to_input_type

__all__ = ["RemapUnlabelled", "RemapUnlabelledd"]


class RemapUnlabelled(Transform):
    """Turn a scribble file's map into a weak label map: ``unlabelled_value`` → ``unlabelled``.

    Checks that every other value is a class index in ``[0, num_classes − 1]`` and, unless
    ``allow_empty``, that at least one voxel is annotated. Error messages name the source file
    when the input is a ``MetaTensor`` with ``meta["filename_or_obj"]`` (or when ``source`` is given).

    Args:
        unlabelled_value: value marking unannotated voxels in the file (4 for ACDC).
        num_classes: number of classes K.
        unlabelled: value of unannotated voxels in the output.
        allow_empty: accept a map without any annotated voxel.

    Input ``(1, H, W[, D])`` map (numpy, torch or MetaTensor); output float32 of the same shape
    and type.

    Example:
        >>> import numpy as np
        >>> scribble = np.array([[[4, 0, 4], [1, 4, 3]]], dtype=np.uint8)
        >>> RemapUnlabelled(unlabelled_value=4, num_classes=4)(scribble).tolist()
        [[[-1.0, 0.0, -1.0], [1.0, -1.0, 3.0]]]
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        unlabelled_value: float = 4,
        num_classes: int = 4,
        unlabelled: float = UNLABELLED,
        allow_empty: bool = False,
    ) -> None:
        self.num_classes = check_int("num_classes", num_classes, 2)
        self.unlabelled_value = check_number("unlabelled_value", unlabelled_value)
        if self.unlabelled_value == int(self.unlabelled_value) and 0 <= self.unlabelled_value < self.num_classes:
            raise ValueError(
                f"unlabelled_value must not be a class index in [0, {self.num_classes - 1}], got {unlabelled_value!r}"
            )
        self.unlabelled = check_unlabelled(unlabelled, self.num_classes)
        self.allow_empty = bool(allow_empty)

    def __call__(self, scribble: Any, source: str | None = None) -> Any:
        """Args:
            scribble: ``(1, H, W[, D])`` map read from a file.
            source: name used in error messages (default: the MetaTensor's ``filename_or_obj``).

        Returns:
            ``(1, H, W[, D])`` float32 weak label map.
        """
        source = source or source_name(scribble)
        what = "scribble" if source is None else f"scribble {source!r}"
        if not isinstance(scribble, (np.ndarray, torch.Tensor)):
            raise ValueError(f"{what} must be a numpy array or a torch tensor, got {type(scribble).__name__}")
        shape = tuple(scribble.shape)
        if len(shape) not in (3, 4) or shape[0] != 1 or min(shape[1:]) < 1:
            raise ValueError(f"{what} must have shape (1, H, W[, D]), got {shape}")
        array = np.asarray(convert_data_type(scribble, np.ndarray)[0])
        values = np.unique(array)
        bad = values[~np.isin(values, np.arange(self.num_classes)) & (values != self.unlabelled_value)]
        if bad.size:
            shown = [v.item() for v in bad[:10]] + (["..."] if bad.size > 10 else [])
            raise ValueError(
                f"{what} values must be {self.unlabelled_value:g} (unlabelled) or lie in "
                f"[0, {self.num_classes - 1}], got {shown}"
            )
        annotated = array != self.unlabelled_value
        if not self.allow_empty and not annotated.any():
            raise ValueError(f"{what} contains no annotated voxel (all values are {self.unlabelled_value:g})")
        return to_input_type(np.where(annotated, array.astype(np.float32), np.float32(self.unlabelled)), scribble)


class RemapUnlabelledd(KeyLoopd):
    """Dictionary wrapper of :class:`RemapUnlabelled`, replacing each key in place by default.

    Error messages name the source file: the MetaTensor's ``filename_or_obj``, or that of a
    ``{key}_meta_dict`` entry when the data were loaded without MetaTensors.

    Args:
        keys: keys of the scribble maps.
        output_key: key of the result; ``None`` (default) replaces each input.
        Other arguments: see :class:`RemapUnlabelled`.

    Example:
        >>> import numpy as np
        >>> d = {"scribble": np.array([[[4, 2], [4, 4]]])}
        >>> RemapUnlabelledd(keys="scribble")(d)["scribble"].tolist()
        [[[-1.0, 2.0], [-1.0, -1.0]]]
    """

    def __init__(
        self,
        keys: KeysCollection = "scribble",
        *,
        unlabelled_value: float = 4,
        num_classes: int = 4,
        unlabelled: float = UNLABELLED,
        allow_empty: bool = False,
        output_key: str | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        transform = RemapUnlabelled(unlabelled_value, num_classes, unlabelled, allow_empty)
        super().__init__(keys, output_key, transform, allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            meta = d.get(f"{key}_meta_dict")
            source = source_name(d[key]) or (meta.get("filename_or_obj") if isinstance(meta, Mapping) else None)
            d[key if self.output_key is None else self.output_key] = self.transform(
                d[key], source=None if source is None else str(source)
            )
        return d
