"""Image writers for MONAI's ``SaveImage(d)`` that never leave a half-written prediction behind.

Example:
    >>> import tempfile, numpy as np, nibabel as nib
    >>> from pathlib import Path
    >>> writer = AtomicNibabelWriter()
    >>> writer.set_data_array(np.zeros((1, 4, 4, 2), np.uint8), channel_dim=0)
    >>> writer.set_metadata({"affine": np.eye(4)})
    >>> path = Path(tempfile.mkdtemp()) / "case_seg.nii.gz"
    >>> writer.write(path)
    >>> nib.load(path).shape, [p.name for p in path.parent.iterdir()]
    ((4, 4, 2), ['case_seg.nii.gz'])
"""

from __future__ import annotations

from typing import Any

from monai.data import NibabelWriter

from wss_monai.utils.atomic import atomic_path

__all__ = ["AtomicNibabelWriter"]


class AtomicNibabelWriter(NibabelWriter):
    """:class:`monai.data.NibabelWriter` writing to a temporary file in the target's folder, then renaming it.

    Pass the class as ``SaveImaged(writer=AtomicNibabelWriter)``; the temporary name keeps the target's
    suffixes (``.nii.gz``), so the file is compressed as the target would be.
    """

    def write(self, filename: Any, verbose: bool = False, **obj_kwargs: Any) -> None:
        with atomic_path(filename) as tmp:
            super().write(tmp, verbose=verbose, **obj_kwargs)
