"""Size bounds predicted by a size regressor, for curriculum semi-supervised segmentation.

Reference: H. Kervadec et al., "Curriculum semi-supervised segmentation", MICCAI 2019: a regressor
``R`` trained on the labelled patients (:func:`wss_monai.experiments.train_size_regressor`)
predicts the target size of each unlabelled slice, which then gets the bounds
``[(1 - γ) R(x), (1 + γ) R(x)]`` (γ = 0.1) for the size penalty. The paper's oracle baseline uses
the true size τ instead of ``R(x)``: ``[(1 - γ) τ, (1 + γ) τ]``, exactly the ``"individual"`` mode
of :class:`wss_monai.transforms.SizeBounds` with ``margin = γ``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_data_type
from torch import nn

from wss_monai.networks.size_regressor import predict_sizes
from wss_monai.transforms._slices import check_int, check_number, check_spatial_dims, class_map, to_input_type
from wss_monai.transforms.input_checks import check_one_image_key
from wss_monai.transforms.tags import class_sizes

__all__ = ["PredictedSizeBounds", "PredictedSizeBoundsd"]

_MODES = ("predicted", "oracle")


class PredictedSizeBounds(Transform):
    """Size bounds ``[(1 - γ) R, (1 + γ) R]`` per class, with ``R`` predicted from the image or read from a label.

    ``mode="predicted"``: the input is an image ``(C, H, W)``, or a volume ``(C, H, W, D)`` whose
    slices along the last axis are fed to the regressor as one batch ``(D, C, H, W)`` (under
    ``torch.no_grad`` and in eval mode). ``R`` is the regressor's output ``(K',)`` per slice: the
    sizes of the classes ``classes`` (default ``1, …, K'``). ``mode="oracle"``: the input is a full
    class map ``(1, H, W[, D])`` and ``R`` its true class sizes τ; with ``classes=None`` every class
    ``0, …, num_classes - 1`` is bounded, which is exactly ``SizeBounds(num_classes, "individual",
    margin=gamma)``.

    Output layout, as :class:`wss_monai.transforms.SizeBounds`:

    * ``num_classes=None`` (predicted mode only): one row per entry of ``classes``, ``(K', 2)`` (the
      ``C'`` layout of the size losses, to be used with ``classes=classes``);
    * ``num_classes`` given (always in oracle mode): ``(num_classes, 2)``, the rows of ``classes``
      bounded and the other rows ``[0, |Ω|]``, always satisfied (|Ω| = pixels of the slice / voxels
      of the volume). Give ``num_classes`` in both modes to swap them without changing the loss;
    * ``spatial_dims=2`` on a 3D input adds a slice axis: ``(·, 2, D)``; ``spatial_dims=3`` on a 3D
      input bounds the volume size (the sum of the slice predictions, or the volume's τ).

    Args:
        regressor: module ``(B, C, H, W)`` → ``(B, K')`` of non-negative sizes in pixels; required
            with ``mode="predicted"``, unused with ``"oracle"``.
        gamma: relative margin γ in [0, 1] (0.1 in the paper).
        mode: ``"predicted"`` or ``"oracle"``.
        classes: class index of each bounded size (predicted: one per regressor output).
        num_classes: number of classes K of the full layout; required with ``mode="oracle"``.
        spatial_dims: 2 (per slice) or 3 (per volume), as :class:`SizeBounds`.
        batch_size: slices per regressor call.

    Output float32 of the input's array type (a plain ``torch.Tensor`` for a MetaTensor).

    Example:
        >>> import numpy as np
        >>> label = np.zeros((1, 10, 10), dtype=np.int64)
        >>> label[0, :4, :5] = 1  # 20 pixels
        >>> PredictedSizeBounds(mode="oracle", num_classes=2, classes=[1])(label).round(3).tolist()
        [[0.0, 100.0], [18.0, 22.0]]
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        regressor: nn.Module | None = None,
        gamma: float = 0.1,
        mode: str = "predicted",
        classes: Sequence[int] | None = None,
        num_classes: int | None = None,
        spatial_dims: int = 2,
        batch_size: int = 64,
    ) -> None:
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        if mode == "predicted" and regressor is None:
            raise ValueError("regressor is required with mode='predicted', got None")
        if regressor is not None and not callable(regressor):
            raise ValueError(f"regressor must be a callable module, got {type(regressor).__name__}")
        if mode == "oracle" and num_classes is None:
            raise ValueError("num_classes is required with mode='oracle', got None")
        self.mode, self.regressor = mode, regressor
        self.gamma = check_number("gamma", gamma, 0.0, 1.0)
        self.num_classes = None if num_classes is None else check_int("num_classes", num_classes, 2)
        if classes is not None:
            classes = [int(c) for c in classes]
            if not classes or len(set(classes)) != len(classes):
                raise ValueError(f"classes must be distinct class indices, got {classes}")
            limit = self.num_classes
            bad = [c for c in classes if c < 0 or (limit is not None and c >= limit)]
            if bad:
                raise ValueError(f"classes {bad} out of range for num_classes={limit}")
        self.classes = classes
        self.spatial_dims = check_spatial_dims(spatial_dims)
        self.batch_size = check_int("batch_size", batch_size, 1)

    def _sizes(self, data: Any) -> tuple[np.ndarray, list[int], int]:
        """Sizes ``(K', S)`` (S slices, 1 for a 2D input or a volume), their classes, and |Ω|."""
        if self.mode == "oracle":
            lab = class_map(data, self.num_classes)
            slices = lab[..., None] if lab.ndim == 2 else lab
            per_slice = np.stack([class_sizes(slices[..., z], self.num_classes) for z in range(slices.shape[-1])], -1)
            classes = list(range(self.num_classes)) if self.classes is None else self.classes
            sizes = per_slice[classes].astype(np.float64)
            voxels = int(np.prod(slices.shape[:2]))
        else:
            if not isinstance(data, (np.ndarray, torch.Tensor)) or data.ndim not in (3, 4):
                shape = tuple(getattr(data, "shape", ()))
                raise ValueError(f"image must have shape (C, H, W[, D]), got {shape or type(data).__name__}")
            image = convert_data_type(data, torch.Tensor)[0]
            image = image.as_tensor() if hasattr(image, "as_tensor") else image
            batch = image[None] if image.ndim == 3 else image.permute(3, 0, 1, 2)  # (S, C, H, W)
            predicted = predict_sizes(self.regressor, batch.float(), self.batch_size)  # (S, K')
            classes = list(range(1, predicted.shape[1] + 1)) if self.classes is None else self.classes
            if predicted.shape[1] != len(classes):
                raise ValueError(
                    f"the regressor predicts {predicted.shape[1]} sizes but classes names {len(classes)}: {classes}"
                )
            if self.num_classes is not None and max(classes) >= self.num_classes:
                raise ValueError(f"classes {classes} out of range for num_classes={self.num_classes}")
            sizes = predicted.detach().cpu().double().numpy().T
            voxels = int(batch.shape[2] * batch.shape[3])
        if self.spatial_dims == 3:
            sizes, voxels = sizes.sum(-1, keepdims=True), voxels * sizes.shape[-1]
        return sizes, classes, voxels

    def __call__(self, data: Any) -> Any:
        """Args: data: image ``(C, H, W[, D])`` (predicted) or label ``(1, H, W[, D])`` (oracle).

        Returns: ``(K' or K, 2)`` or ``(K' or K, 2, D)`` float32 bounds.
        """
        sizes, classes, voxels = self._sizes(data)
        bounds = sizes[:, None, :] * np.array([1 - self.gamma, 1 + self.gamma])[:, None]  # (K', 2, S)
        if self.num_classes is not None:
            free = np.zeros((self.num_classes, 2, bounds.shape[-1]))
            free[:, 1] = voxels
            free[classes] = bounds
            bounds = free
        if data.ndim == 3 or self.spatial_dims == 3:
            bounds = bounds[..., 0]
        return to_input_type(bounds, data, spatial=False)


class PredictedSizeBoundsd(MapTransform):
    """Dictionary wrapper of :class:`PredictedSizeBounds`: ``d[output_key] = bounds(d[key])``.

    With ``mode="oracle"`` the bounds come from ``d[label_key]`` instead of ``d[key]``; with
    ``classes=None`` they then equal ``SizeBoundsd(label_key, num_classes=K, mode="individual",
    margin=gamma)``.

    Args:
        keys: key of the image (one key).
        regressor, gamma, mode, classes, num_classes, spatial_dims, batch_size: see :class:`PredictedSizeBounds`.
        output_key: key of the bounds.
        label_key: key of the full label read by the oracle mode.
        allow_missing_keys: skip a missing input key instead of raising ``KeyError``.

    Example:
        >>> import torch
        >>> from wss_monai.networks.size_regressor import SizeRegressor
        >>> net = SizeRegressor(channels=(4,), scale=50.0)
        >>> out = PredictedSizeBoundsd(keys="image", regressor=net)({"image": torch.rand(1, 16, 16, 3)})
        >>> out["bounds"].shape
        torch.Size([1, 2, 3])
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        regressor: nn.Module | None = None,
        gamma: float = 0.1,
        output_key: str = "bounds",
        classes: Sequence[int] | None = None,
        num_classes: int | None = None,
        mode: str = "predicted",
        label_key: str = "label",
        spatial_dims: int = 2,
        batch_size: int = 64,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        check_one_image_key(self.keys, output_key)
        self.output_key, self.label_key = output_key, label_key
        self.transform = PredictedSizeBounds(regressor, gamma, mode, classes, num_classes, spatial_dims, batch_size)

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        if self.transform.mode == "predicted":
            for key in self.key_iterator(d):
                d[self.output_key] = self.transform(d[key])
        elif self.label_key in d:
            d[self.output_key] = self.transform(d[self.label_key])
        elif not self.allow_missing_keys:
            raise KeyError(
                f"PredictedSizeBoundsd(mode='oracle') needs the label key {self.label_key!r}; has {sorted(d)}"
            )
        return d
