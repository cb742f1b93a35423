"""A tag classifier whose output is its class activation maps, the first stage of SEC.

Zhou, Khosla, Lapedriza, Oliva and Torralba, "Learning deep features for discriminative
localization", CVPR 2016 (CAM); Kolesnikov and Lampert, "Seed, Expand and Constrain", ECCV 2016
(CAM-based localisation cues). A convolutional encoder ``f`` (MONAI ``Convolution`` blocks) is
followed by global average pooling and a linear layer: the class score is
``s_c = Σ_k w_ck GAP(f_k) + b_c``. Since the layer is linear, ``s_c = GAP(M_c)`` with the class
activation map ``M_c(p) = Σ_k w_ck f_k(p) + b_c``; this network applies the linear layer as a
1 × 1 convolution and returns ``M`` upsampled to the input size, so that

* the bundle's segmentation machinery (slice inferer, argmax, Dice) runs on it unchanged,
* :class:`wss_monai.losses.TagClassificationLoss` trains it on the tags from the spatial mean of
  its output (multi-label binary cross-entropy),
* :func:`class_activation_maps` gives the CAMs that :func:`wss_monai.transforms.cam_cues` turns
  into localisation cues.

Example:
    >>> import torch
    >>> net = CAMClassifier(in_channels=1, num_classes=3, channels=(4, 8), strides=(1, 2))
    >>> net(torch.zeros(2, 1, 32, 32)).shape   # (B, K, H, W) class activation maps
    torch.Size([2, 3, 32, 32])
    >>> net.scores(torch.zeros(2, 1, 32, 32)).shape   # (B, K) logits of the tags
    torch.Size([2, 3])
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from torch import nn

__all__ = ["CAMClassifier", "class_activation_maps"]


class CAMClassifier(nn.Module):
    """Encoder + global average pooling + linear tag classifier that outputs its CAMs ``(B, K, *spatial)``.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels C.
        num_classes: number of classes K (background included; one tag each).
        channels: output channels of the encoder blocks (3 × 3[× 3] convolutions, norm, activation).
        strides: stride of each block (an int for all); the CAM's resolution is the input's divided
            by their product, before upsampling.
        act, norm: MONAI activation and normalisation of the blocks.
        dropout: dropout before the 1 × 1 classification layer.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        num_classes: int = 2,
        channels: Sequence[int] = (16, 32, 64, 128),
        strides: int | Sequence[int] = (1, 2, 2, 2),
        act: str | tuple = "RELU",
        norm: str | tuple | None = "BATCH",
        dropout: float | None = None,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3) or isinstance(spatial_dims, bool):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
        for name, value, minimum in (("in_channels", in_channels, 1), ("num_classes", num_classes, 2)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
        channels = [int(c) for c in channels]
        if not channels or min(channels) < 1:
            raise ValueError(f"channels must be a non-empty list of integers >= 1, got {channels}")
        strides = [strides] * len(channels) if isinstance(strides, numbers.Integral) else [int(s) for s in strides]
        if len(strides) != len(channels) or min(strides) < 1:
            raise ValueError(f"strides must hold one integer >= 1 per block ({len(channels)}), got {strides}")
        if dropout is not None and not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        blocks, previous = [], int(in_channels)
        for c, s in zip(channels, strides):
            blocks.append(Convolution(spatial_dims, previous, c, strides=s, kernel_size=3, act=act, norm=norm))
            previous = c
        self.features = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        self.classifier = conv(previous, int(num_classes), kernel_size=1)  # the linear layer, at every position
        self.spatial_dims, self.in_channels, self.num_classes = int(spatial_dims), int(in_channels), int(num_classes)

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"input must have shape (B, {self.in_channels}, *spatial) with {self.spatial_dims} spatial dims, "
                f"got {tuple(x.shape)}"
            )

    def coarse_maps(self, x: torch.Tensor) -> torch.Tensor:
        """The CAMs at the encoder's resolution, ``(B, K, *spatial / Π strides)``."""
        self._check(x)
        return self.classifier(self.dropout(self.features(x)))

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Tag logits ``(B, K)``: global average pooling of the coarse CAMs (= GAP + linear)."""
        return self.coarse_maps(x).flatten(2).mean(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: ``(B, C, *spatial)``. Returns: the CAMs upsampled to the input size, ``(B, K, *spatial)``."""
        maps = self.coarse_maps(x)
        mode = "bilinear" if self.spatial_dims == 2 else "trilinear"
        return F.interpolate(maps, size=x.shape[2:], mode=mode, align_corners=False)


@torch.no_grad()
def class_activation_maps(classifier: nn.Module, images: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """CAMs ``(N, K, *spatial)`` of images ``(N, C, *spatial)``, in eval mode and without gradient.

    ``classifier`` maps ``(B, C, *spatial)`` to ``(B, K, *spatial)`` (a :class:`CAMClassifier`); its
    training flag is restored afterwards. Runs on the classifier's device, returns float32 on the CPU.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    try:
        parameter = next(classifier.parameters())
        device, dtype = parameter.device, parameter.dtype
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32
    was_training = classifier.training
    classifier.eval()
    try:
        maps = [
            classifier(images[i : i + batch_size].to(device=device, dtype=dtype)).float().cpu()
            for i in range(0, images.shape[0], batch_size)
        ]
    finally:
        classifier.train(was_training)
    out = torch.cat(maps)
    if out.ndim != images.ndim or out.shape[0] != images.shape[0] or out.shape[2:] != images.shape[2:]:
        raise ValueError(
            f"the classifier must return maps (N, K, *spatial) of the input's size {tuple(images.shape[2:])}, "
            f"got {tuple(out.shape)}"
        )
    return out
