"""A SimpleITK reader for MetaImage (``.mhd`` / ``.mha``) files, registered with MONAI's ``LoadImage``.

MONAI's own ``ITKReader`` reads MetaImage too, but importing ``itk`` takes minutes on a small
machine; SimpleITK loads in a fraction of a second. Importing :mod:`wss_monai.data` adds this reader
to ``monai.transforms.io.array.SUPPORTED_READERS`` (MONAI's documented place for custom readers),
last, so ``LoadImage`` tries it first and falls back to the other readers for other suffixes.

Arrays come in ``(x, y, z)`` order like NIfTI through nibabel, and the affine is in RAS (ITK's LPS
with the first two axes negated), so predictions saved as NIfTI overlay the MetaImage input.

Example:
    >>> import tempfile, numpy as np, SimpleITK as sitk
    >>> from monai.transforms import LoadImage
    >>> path = tempfile.mkdtemp() + "/case.mhd"
    >>> image = sitk.GetImageFromArray(np.zeros((3, 5, 4), np.float32))   # (z, y, x)
    >>> image.SetSpacing((0.5, 0.5, 3.0))
    >>> sitk.WriteImage(image, path)
    >>> loaded = LoadImage(image_only=True)(path)
    >>> tuple(loaded.shape), loaded.affine.diagonal().tolist()
    ((4, 5, 3), [-0.5, -0.5, 3.0, 1.0])
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from monai.data import ImageReader
from monai.data.image_reader import _copy_compatible_dict, _stack_images
from monai.transforms.io import array as monai_io
from monai.utils import MetaKeys, SpaceKeys, ensure_tuple

__all__ = ["SUFFIXES", "SimpleITKReader", "register_readers"]

SUFFIXES = (".mhd", ".mha")


class SimpleITKReader(ImageReader):
    """MONAI ``ImageReader`` for MetaImage files through SimpleITK; a list of files is stacked as channels."""

    def verify_suffix(self, filename: Sequence[str] | str) -> bool:
        return all(str(f).lower().endswith(SUFFIXES) for f in ensure_tuple(filename))

    def read(self, data: Sequence[str] | str, **kwargs):
        import SimpleITK as sitk

        images = []
        for name in ensure_tuple(data):
            try:
                images.append(sitk.ReadImage(str(Path(name).expanduser())))
            except RuntimeError as error:
                raise ValueError(f"cannot read MetaImage file {name}: {str(error).strip().splitlines()[-1]}") from error
        return images if len(images) > 1 else images[0]

    def get_data(self, img) -> tuple[np.ndarray, dict]:
        import SimpleITK as sitk

        arrays, meta = [], {}
        for image in img if isinstance(img, (list, tuple)) else [img]:  # an Image iterates over its pixels
            array = sitk.GetArrayFromImage(image)
            dims = image.GetDimension()
            array = np.transpose(array, tuple(range(dims - 1, -1, -1)) + tuple(range(dims, array.ndim)))
            direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(dims, dims)
            affine = np.eye(dims + 1)
            affine[:dims, :dims] = direction @ np.diag(image.GetSpacing())
            affine[:dims, dims] = image.GetOrigin()
            flip = np.diag([-1.0, -1.0] + [1.0] * (dims - 1))  # LPS -> RAS
            affine = flip @ affine
            header = {
                MetaKeys.AFFINE: affine,
                MetaKeys.ORIGINAL_AFFINE: affine.copy(),
                MetaKeys.SPATIAL_SHAPE: np.asarray(array.shape[:dims]),
                MetaKeys.SPACE: SpaceKeys.RAS,
                MetaKeys.ORIGINAL_CHANNEL_DIM: float("nan") if array.ndim == dims else -1,
                "spacing": np.asarray(image.GetSpacing()),
            }
            arrays.append(array)
            _copy_compatible_dict(header, meta)
        return _stack_images(arrays, meta), meta


def register_readers() -> None:
    """Add :class:`SimpleITKReader` to MONAI's default readers (once; tried first)."""
    monai_io.SUPPORTED_READERS.setdefault("simpleitkreader", SimpleITKReader)
