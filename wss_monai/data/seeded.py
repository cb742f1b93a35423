"""Datasets whose item ``transform`` is seeded with the dataset, as MONAI seeds a ``Randomizable``."""

from __future__ import annotations

from typing import Any

import numpy as np
from monai.transforms import Randomizable
from torch.utils.data import Dataset

__all__ = ["SeededTransformDataset"]


class SeededTransformDataset(Dataset, Randomizable):
    """Base of the datasets that apply ``self.transform`` to each item: ``set_random_state`` seeds it too.

    The dataset draws nothing itself (``randomize`` is a no-op); subclasses set ``self.transform``.

    Example:
        >>> from monai.transforms import RandFlipd
        >>> class Items(SeededTransformDataset):
        ...     def __init__(self):
        ...         self.transform = RandFlipd(keys="x", prob=0.5)
        >>> items = Items().set_random_state(3)
        >>> items.transform.R.randint(100) == RandFlipd(keys="x").set_random_state(3).R.randint(100)
        True
    """

    transform: Any = None

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        if isinstance(self.transform, Randomizable):
            self.transform.set_random_state(seed, state)
        return self

    def randomize(self, data: Any = None) -> None:
        """No-op: the draws are made by the item transform."""
