"""Localisation cues for SEC: seeds from class activation maps, or cue maps read from files, checked against tags.

Kolesnikov and Lampert, "Seed, Expand and Constrain", ECCV 2016: the seeding loss is a partial
cross-entropy on sparse, reliable cues. Here (:func:`cam_cues`), per image (a 2D slice or a 3D
volume), with ``M_c`` the class activation map of class c (Zhou et al., CVPR 2016) and
``A_c = (M_c - min_p M_c) / (max_p M_c - min_p M_c)`` the map rescaled to [0, 1] in that image (the
CAM's bias and a positive floor over the whole image do not count):

* foreground cue of a present foreground class c where ``A_c ≥ foreground_fraction`` (SEC and CAM:
  20 % of the map's maximum);
* background cue where every present foreground class has ``A_c < background_fraction`` (the
  low-activation region); an image whose tags hold no foreground class is background everywhere;
* conflicts between foreground classes (a voxel above the threshold of two present classes): the
  class with the smaller cue in that image wins (``conflict="smallest"``, SEC's rule, so that small
  structures are not swallowed by large ones), or the class with the larger ``A_c``
  (``conflict="score"``). Foreground and background cues never overlap since
  ``background_fraction < foreground_fraction``;
* absent classes never get a cue; a present foreground class whose map is constant gets none
  either, and then the image gets no background cue (its object is not located, so no
  voxel is certainly background).

Cues are a label map with :data:`wss_monai.UNLABELLED` where there is none, like scribbles.
Cue maps can also come from files (the scribble-file conventions:
:class:`wss_monai.transforms.RemapUnlabelledd`); :class:`CheckCueTagsd` then stops a run whose cues
name a class that the tags say is absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_data_type
from torch import nn

from wss_monai.constants import UNLABELLED
from wss_monai.networks.cam import class_activation_maps
from wss_monai.transforms._slices import check_int, check_number, check_spatial_dims, source_name, to_input_type
from wss_monai.transforms.input_checks import check_one_image_key

__all__ = ["CAMCues", "CAMCuesd", "CheckCueTagsd", "cam_cues", "check_cues_against_tags"]

_CONFLICTS = ("smallest", "score")


def _as_tensor(data: Any, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    out = convert_data_type(data, torch.Tensor)[0]
    out = out.as_tensor() if hasattr(out, "as_tensor") else out
    return out.to(dtype)


def _named(source: str | None) -> str:
    return "" if source is None else f" of {source!r}"


def _check_tags(tags: torch.Tensor, num_classes: int, images: int, source: str | None) -> torch.Tensor:
    """Tags ``(K,)`` or ``(K, S)`` as bool ``(S, K)``; a wrong shape, a non 0/1 value or an image with no tag raise."""
    if tags.ndim == 1:
        tags = tags[:, None]
    if tags.ndim != 2 or tags.shape != (num_classes, images):
        raise ValueError(
            f"tags{_named(source)} of shape {tuple(tags.shape)} do not fit {num_classes} classes and {images} "
            f"image(s): expected ({num_classes},) or ({num_classes}, {images})"
        )
    if not ((tags == 0) | (tags == 1)).all():
        raise ValueError(f"tags{_named(source)} must be 0 or 1, got values {torch.unique(tags).tolist()}")
    untagged = torch.nonzero(tags.sum(0) == 0).flatten().tolist()
    if untagged:
        raise ValueError(
            f"tags{_named(source)}: slice(s) {untagged} have no tag at all (not even the background); "
            "every image must list the classes it holds"
        )
    return tags.T.bool()


def cam_cues(
    cams: Any,
    tags: Any,
    foreground_fraction: float = 0.2,
    background_fraction: float = 0.1,
    background_index: int = 0,
    conflict: str = "smallest",
    source: str | None = None,
) -> torch.Tensor:
    """Localisation cues from class activation maps and tags (rules in the module docstring).

    Args:
        cams: ``(K, *spatial)`` maps of one image, or ``(K, H, W, S)`` with ``tags`` ``(K, S)``:
            S images (2D slices along the last axis), handled at once.
        tags: ``(K,)`` or ``(K, S)`` 0/1 class presence.
        foreground_fraction: foreground threshold, a fraction of each map's maximum, in (0, 1].
        background_fraction: background threshold, in [0, foreground_fraction).
        background_index: the background class.
        conflict: ``"smallest"`` or ``"score"``.
        source: name of the case, used in error messages.

    Returns:
        ``(1, *spatial)`` float32 torch tensor: a class index or :data:`UNLABELLED`.

    Raises:
        ValueError: bad thresholds or conflict rule, tags that do not fit the maps, are not 0/1,
            or leave an image with no tag at all.

    Example:
        >>> import torch
        >>> cams = torch.zeros(2, 1, 5)
        >>> cams[1, 0] = torch.tensor([0.0, 0.05, 0.5, 1.0, 0.3])
        >>> cam_cues(cams, torch.tensor([1, 1])).tolist()   # bg below 0.1 of the max, fg from 0.2
        [[[0.0, 0.0, 1.0, 1.0, 1.0]]]
        >>> cam_cues(cams, torch.tensor([1, 1]), foreground_fraction=0.4, background_fraction=0.1).tolist()
        [[[0.0, 0.0, 1.0, 1.0, -1.0]]]
    """
    fg_fraction = check_number("foreground_fraction", foreground_fraction, 0.0, 1.0, low_open=True)
    bg_fraction = check_number("background_fraction", background_fraction, 0.0, 1.0)
    if bg_fraction >= fg_fraction:
        raise ValueError(
            f"background_fraction ({background_fraction}) must be below foreground_fraction ({foreground_fraction})"
        )
    if conflict not in _CONFLICTS:
        raise ValueError(f"conflict must be one of {_CONFLICTS}, got {conflict!r}")
    cams = _as_tensor(cams)
    tags = _as_tensor(tags)
    if cams.ndim < 2:
        raise ValueError(f"cams must have shape (K, *spatial), got {tuple(cams.shape)}")
    num_classes = cams.shape[0]
    background_index = check_int("background_index", background_index, 0)
    if background_index >= num_classes:
        raise ValueError(f"background_index {background_index} is out of range for {num_classes} classes")
    if not torch.isfinite(cams).all():
        raise ValueError(f"cams{_named(source)} contain NaN or inf values")
    per_slice = tags.ndim == 2
    if per_slice:
        if cams.ndim != 4:
            raise ValueError(f"per-slice tags (K, S) need cams (K, H, W, S), got {tuple(cams.shape)}")
        maps = cams.permute(3, 0, 1, 2).flatten(2)  # (S, K, N)
    else:
        maps = cams.flatten(1)[None]  # (1, K, N)
    present = _check_tags(tags, num_classes, maps.shape[0], source)  # (S, K)
    foreground = torch.ones(num_classes, dtype=torch.bool)
    foreground[background_index] = False
    present_fg = present & foreground

    low_value = maps.amin(2, keepdim=True)
    spread = maps.amax(2, keepdim=True) - low_value  # (S, K, 1)
    located = spread[..., 0] > 0
    activation = (maps - low_value) / spread.clamp_min(torch.finfo(maps.dtype).tiny)  # A_c in [0, 1]
    claims = (activation >= fg_fraction) & (present_fg & located)[..., None]  # (S, K, N)
    if conflict == "smallest":
        area = claims.sum(2, keepdim=True).float().expand_as(activation)
        preference = torch.where(claims, -area, -torch.inf)  # the smallest claimed area wins
    else:
        preference = torch.where(claims, activation, -torch.inf)
    winner = preference.argmax(1)  # (S, N)
    cues = torch.where(claims.any(1), winner, torch.full_like(winner, int(UNLABELLED)))
    low = ((activation < bg_fraction) | ~present_fg[..., None]).all(1)  # (S, N)
    background_ok = (located | ~present_fg).all(1, keepdim=True)  # every present object located
    cues = torch.where(low & background_ok & ~claims.any(1), torch.full_like(cues, background_index), cues)
    if per_slice:
        return cues.T.reshape(1, *cams.shape[1:]).float()
    return cues.reshape(1, *cams.shape[1:]).float()


class CAMCues(Transform):
    """SEC localisation cues of an image from a tag classifier's CAMs and the image's tags.

    ``spatial_dims=2`` on a volume ``(C, H, W, D)``: the slices go through the classifier as one
    batch ``(D, C, H, W)`` and each slice gets its cues from its own tags ``(K, D)``;
    ``spatial_dims=3`` (or a 2D image ``(C, H, W)``): one image, tags ``(K,)``.

    Args:
        classifier: module ``(B, C, *spatial)`` → CAMs ``(B, K, *spatial)``
            (:class:`wss_monai.networks.CAMClassifier`), run without gradient in eval mode.
        spatial_dims: 2 (per slice) or 3 (per volume).
        foreground_fraction, background_fraction, background_index, conflict: see :func:`cam_cues`.
        batch_size: slices per classifier call.

    Example:
        >>> import torch
        >>> from wss_monai.networks import CAMClassifier
        >>> net = CAMClassifier(num_classes=3, channels=(4,), strides=1)
        >>> CAMCues(net)(torch.rand(1, 8, 8, 2), torch.tensor([[1, 1], [0, 1], [1, 0]])).shape
        torch.Size([1, 8, 8, 2])
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self,
        classifier: nn.Module,
        spatial_dims: int = 2,
        foreground_fraction: float = 0.2,
        background_fraction: float = 0.1,
        background_index: int = 0,
        conflict: str = "smallest",
        batch_size: int = 32,
    ) -> None:
        if not callable(classifier):
            raise ValueError(f"classifier must be a callable module, got {type(classifier).__name__}")
        self.classifier = classifier
        self.spatial_dims = check_spatial_dims(spatial_dims)
        self.options = dict(
            foreground_fraction=foreground_fraction,
            background_fraction=background_fraction,
            background_index=background_index,
            conflict=conflict,
        )
        cam_cues(torch.zeros(2, 1), torch.ones(2), **self.options)  # checks the options now
        self.batch_size = check_int("batch_size", batch_size, 1)

    def __call__(self, image: Any, tags: Any) -> Any:
        """Args: image ``(C, H, W[, D])``; tags ``(K,)`` or ``(K, D)``. Returns: cues ``(1, H, W[, D])``."""
        source = source_name(image)
        if not isinstance(image, (np.ndarray, torch.Tensor)) or image.ndim not in (3, 4):
            raise ValueError(
                f"image{_named(source)} must have shape (C, H, W[, D]), got {getattr(image, 'shape', None)}"
            )
        data = _as_tensor(image)
        if data.ndim == 4 and self.spatial_dims == 2:
            cams = class_activation_maps(self.classifier, data.permute(3, 0, 1, 2), self.batch_size)  # (D, K, H, W)
            cams = cams.permute(1, 2, 3, 0)
        else:
            cams = class_activation_maps(self.classifier, data[None], self.batch_size)[0]
        cues = cam_cues(cams, tags, source=source, **self.options)
        return to_input_type(cues.numpy(), image)


class CAMCuesd(MapTransform):
    """Dictionary wrapper of :class:`CAMCues`: ``d[output_key] = CAMCues(...)(d[key], d[tags_key])``.

    Args:
        keys: key of the image (one key).
        tags_key: key of the tags (:class:`wss_monai.transforms.ImageTagsd`'s output).
        output_key: key of the cues.
        Other arguments: see :class:`CAMCues`.
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        *,
        classifier: nn.Module,
        tags_key: str = "tags",
        output_key: str = "cues",
        spatial_dims: int = 2,
        foreground_fraction: float = 0.2,
        background_fraction: float = 0.1,
        background_index: int = 0,
        conflict: str = "smallest",
        batch_size: int = 32,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        check_one_image_key(self.keys, output_key)
        self.tags_key, self.output_key = tags_key, output_key
        self.transform = CAMCues(
            classifier, spatial_dims, foreground_fraction, background_fraction, background_index, conflict, batch_size
        )

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            if self.tags_key not in d:
                raise KeyError(f"CAMCuesd needs the tags key {self.tags_key!r}; has {sorted(d)}")
            d[self.output_key] = self.transform(d[key], d[self.tags_key])
        return d


def check_cues_against_tags(cues: Any, tags: Any, spatial_dims: int = 2, source: str | None = None) -> None:
    """Raise if a cue map names a class that the tags say is absent from its slice (2D) or volume (3D).

    Args:
        cues: ``(1, H, W[, D])`` class indices or :data:`UNLABELLED`.
        tags: ``(K,)`` (one image) or ``(K, D)`` (per slice, with ``spatial_dims=2``).
        spatial_dims: 2 or 3.
        source: the case, named in the error.

    Raises:
        ValueError: naming the case, the slice and the class; also a cue value outside the classes.

    Example:
        >>> import torch
        >>> check_cues_against_tags(torch.tensor([[[0.0, 1.0]]]), torch.tensor([1.0, 0.0]), source="case7")
        Traceback (most recent call last):
        ...
        ValueError: cues of 'case7' mark class 1 in the image, whose tags say the class is absent
    """
    check_spatial_dims(spatial_dims)
    cues = _as_tensor(cues, torch.long)
    tags = _as_tensor(tags)
    num_classes = tags.shape[0]
    labelled = cues[cues != int(UNLABELLED)]
    if labelled.numel() and (labelled.min() < 0 or labelled.max() >= num_classes):
        raise ValueError(
            f"cues{_named(source)} hold values {torch.unique(labelled).tolist()} outside the {num_classes} classes "
            f"and the unlabelled value {int(UNLABELLED)}"
        )
    per_slice = tags.ndim == 2
    if per_slice and (cues.ndim != 4 or cues.shape[-1] != tags.shape[1]):
        raise ValueError(
            f"per-slice tags{_named(source)} of shape {tuple(tags.shape)} do not fit cues {tuple(cues.shape)}"
        )
    maps = cues[0].flatten(0, -2).T if per_slice else cues.flatten()[None]  # (S, N)
    onehot = torch.nn.functional.one_hot(maps.clamp_min(0), num_classes).bool()  # (S, N, K)
    marked = (onehot & (maps != int(UNLABELLED))[..., None]).any(1)  # (S, K): classes with a cue
    present = _check_tags(tags, num_classes, maps.shape[0], source)
    bad = torch.nonzero(marked & ~present)
    if bad.numel():
        where, klass = bad[0].tolist()
        image = f"slice {where}" if per_slice else "the image"
        raise ValueError(
            f"cues{_named(source)} mark class {klass} in {image}, whose tags say the class is absent"
            + (f" ({bad.shape[0]} such slice/class pairs)" if bad.shape[0] > 1 else "")
        )


class CheckCueTagsd(Transform):
    """Check ``d[keys]`` cue maps against ``d[tags_key]`` (:func:`check_cues_against_tags`); data unchanged.

    Errors name the case from the cue map's (or the image's) ``filename_or_obj``.
    """

    def __init__(self, keys: str = "cues", tags_key: str = "tags", spatial_dims: int = 2, image_key: str = "image"):
        self.key, self.tags_key, self.image_key = keys, tags_key, image_key
        self.spatial_dims = check_spatial_dims(spatial_dims)

    def __call__(self, data: Mapping) -> Mapping:
        for key in (self.key, self.tags_key):
            if key not in data:
                raise KeyError(f"CheckCueTagsd needs the key {key!r}; has {sorted(data)}")
        source = source_name(data[self.key]) or source_name(data.get(self.image_key))
        check_cues_against_tags(data[self.key], data[self.tags_key], self.spatial_dims, source)
        return data
