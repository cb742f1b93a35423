"""An empty proposal map beside a weak label map: the place where cached discrete proposals are written.

The robust trust region (:class:`wss_monai.handlers.TrustRegionProposals`) writes its stage-A
proposals into each training volume under a key of its own, so that they are sliced, augmented and
batched with the image and the seeds. This transform creates that key, all :data:`UNLABELLED`
(no proposal yet), once per volume.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

from wss_monai.constants import UNLABELLED

__all__ = ["UnlabelledLike", "UnlabelledLiked"]


class UnlabelledLike(Transform):
    """A float32 tensor of :data:`UNLABELLED` with the shape of the input ``(1, H, W[, D])``.

    Example:
        >>> import torch
        >>> UnlabelledLike()(torch.zeros(1, 2, 1)).tolist()
        [[[-1.0], [-1.0]]]
    """

    def __call__(self, data) -> torch.Tensor:
        data = data.as_tensor() if isinstance(data, MetaTensor) else torch.as_tensor(data)
        return torch.full(tuple(data.shape), float(UNLABELLED), dtype=torch.float32)


class UnlabelledLiked(MapTransform):
    """Dictionary wrapper of :class:`UnlabelledLike`: ``data[output_key]`` shaped like ``data[keys]``.

    Args:
        keys: the one key whose shape is copied (e.g. the seeds, ``scribble``).
        output_key: the new key (e.g. ``proposal``).

    Example:
        >>> import torch
        >>> out = UnlabelledLiked("scribble", "proposal")({"scribble": torch.zeros(1, 2, 2)})
        >>> tuple(out["proposal"].shape), out["proposal"].unique().tolist()
        ((1, 2, 2), [-1.0])
    """

    def __init__(self, keys: KeysCollection, output_key: str = "proposal") -> None:
        super().__init__(keys)
        if len(self.keys) != 1:
            raise ValueError(f"keys must name one key, got {list(self.keys)}")
        self.output_key = output_key
        self.transform = UnlabelledLike()

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        d[self.output_key] = self.transform(d[self.keys[0]])
        return d
