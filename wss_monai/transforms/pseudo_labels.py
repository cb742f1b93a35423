"""Pseudo-labels: a trained segmentation network's prediction used as the label of unlabelled images.

The "proposals" baseline of Kervadec et al., "Curriculum semi-supervised segmentation", MICCAI 2019
(self-training, e.g. Bai et al., MICCAI 2017): a network trained with full supervision on the n
labelled patients segments the unlabelled ones, and a second network is trained on the true labels
of the labelled patients plus these pseudo-labels. They are computed once per volume, in the cached
part of the pipeline, with the network in eval mode and without gradients.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from monai.config import KeysCollection
from monai.inferers import SliceInferer
from monai.transforms import MapTransform, Transform
from monai.utils import convert_to_dst_type
from torch import nn

from wss_monai.transforms._slices import check_int
from wss_monai.transforms.input_checks import check_one_image_key

__all__ = ["PseudoLabels", "PseudoLabelsd"]


class PseudoLabels(Transform):
    """Argmax class map ``(1, H, W[, D])`` of a segmentation network on an image ``(C, H, W[, D])``.

    A 3D input is segmented slice by slice along its last axis (MONAI ``SliceInferer``, as the
    validation of the 2D networks); a 2D input as one image. The network's training flag is restored.

    Args:
        network: module ``(B, C, H, W)`` → logits ``(B, K, H, W)``.
        batch_size: slices per forward pass.

    Output: float32 class indices, of the input's type (a ``MetaTensor`` keeps its metadata).

    Example:
        >>> import torch
        >>> net = torch.nn.Conv2d(1, 2, 1)
        >>> with torch.no_grad():
        ...     _ = net.weight.fill_(0.0); _ = net.bias.copy_(torch.tensor([0.0, 1.0]))
        >>> PseudoLabels(net)(torch.zeros(1, 4, 4, 3)).unique().tolist()
        [1.0]
    """

    backend = ["torch"]

    def __init__(self, network: nn.Module, batch_size: int = 32) -> None:
        if not isinstance(network, nn.Module):
            raise ValueError(f"network must be a torch module mapping (B, C, H, W) to logits, got {network!r:.80}")
        self.network = network
        self.batch_size = check_int("batch_size", batch_size, 1)

    @torch.no_grad()
    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """Args: image ``(C, H, W[, D])``. Returns: ``(1, H, W[, D])`` float32 class indices."""
        if not isinstance(image, torch.Tensor) or image.ndim not in (3, 4):
            shape = tuple(getattr(image, "shape", ()))
            raise ValueError(f"image must be a tensor of shape (C, H, W[, D]), got {shape or type(image).__name__}")
        try:
            device = next(self.network.parameters()).device
        except StopIteration:
            device = torch.device("cpu")
        x = (image.as_tensor() if hasattr(image, "as_tensor") else image).float()[None].to(device)
        was_training = self.network.training
        self.network.eval()
        try:
            if x.ndim == 5:
                inferer = SliceInferer(roi_size=tuple(x.shape[2:4]), sw_batch_size=self.batch_size, spatial_dim=2)
                logits = inferer(x, self.network)
            else:
                logits = self.network(x)
        finally:
            self.network.train(was_training)
        labels = logits.argmax(1, keepdim=True)[0].float().cpu()
        return convert_to_dst_type(labels, dst=image, dtype=torch.float32)[0]


class PseudoLabelsd(MapTransform):
    """``d[output_key] = PseudoLabels(network)(d[key])`` for the unlabelled cases only.

    A case whose ``d[supervision_key]`` equals ``full_value`` keeps its ``output_key`` (its true label);
    the others (``"weak"``, or any case without the key when ``only_unlabelled=False``) get the
    pseudo-label.

    Args:
        keys: the image key (one).
        network, batch_size: see :class:`PseudoLabels`.
        output_key: where the pseudo-label goes (``"label"`` replaces the label of unlabelled cases).
        supervision_key: case key of the ``"full"`` / ``"weak"`` mark.
        full_value: the mark of labelled cases.
        only_unlabelled: ``True``: a case without ``supervision_key`` raises; ``False``: every case
            not marked full is pseudo-labelled.
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        network: nn.Module | None = None,
        output_key: str = "label",
        supervision_key: str = "supervision",
        full_value: str = "full",
        only_unlabelled: bool = True,
        batch_size: int = 32,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        check_one_image_key(self.keys)
        self.transform = PseudoLabels(network, batch_size)
        self.output_key, self.supervision_key, self.full_value = output_key, supervision_key, full_value
        self.only_unlabelled = bool(only_unlabelled)

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        if self.supervision_key not in d and self.only_unlabelled:
            raise KeyError(
                f"PseudoLabelsd needs the case key {self.supervision_key!r} ('full' / 'weak'); has {sorted(d)}. "
                "Build the datalist with make_hybrid_datalist"
            )
        if d.get(self.supervision_key) == self.full_value:
            return d
        for key in self.key_iterator(d):
            d[self.output_key] = self.transform(d[key])
        return d
