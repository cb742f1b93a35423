"""The random state of a training run, saved in its checkpoints so that a resumed run repeats a straight one.

A run draws random numbers in three places besides the network's initialisation:

- the data loader's ``torch.Generator`` (the shuffled order of every epoch, and the base seed of its workers);
- the augmentation transforms, each a MONAI ``Randomizable`` with its own ``numpy.random.RandomState``
  (seeded once from ``seed`` by ``dataset.set_random_state``);
- the global generators of ``random``, ``numpy`` and ``torch`` (CUDA included), which
  ``monai.utils.set_determinism`` seeds and which a recipe may draw from.

:class:`RunRandomState` gathers all of them behind ``state_dict`` / ``load_state_dict``, the interface
ignite's ``Checkpoint`` saves and loads.

Example:
    >>> import torch
    >>> from monai.transforms import Compose, RandFlipd
    >>> generator = torch.Generator().manual_seed(0)
    >>> flips = Compose([RandFlipd("x", prob=0.5)]).set_random_state(seed=1)
    >>> state = RunRandomState(generator, flips).state_dict()
    >>> first = torch.randint(10, (3,), generator=generator).tolist(), flips.transforms[0].R.rand()
    >>> RunRandomState(generator, flips).load_state_dict(state)
    >>> (torch.randint(10, (3,), generator=generator).tolist(), flips.transforms[0].R.rand()) == first
    True
"""

from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import torch
from monai.transforms import Randomizable

__all__ = ["RunRandomState", "randomizables"]

logger = logging.getLogger(__name__)


def randomizables(root: Any) -> list[Randomizable]:
    """Every MONAI ``Randomizable`` reachable from ``root`` through ``.transform`` / ``.transforms``, in a fixed order.

    ``root`` is usually the training dataset (a ``Randomizable`` itself, whose ``transform`` is a
    ``Compose`` of augmentations, possibly nested).
    """
    found: list[Randomizable] = []
    seen: set[int] = set()

    def visit(obj: Any) -> None:
        if obj is None or id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, Randomizable):
            found.append(obj)
        children = getattr(obj, "transforms", None)
        if isinstance(children, (list, tuple)):
            for child in children:
                visit(child)
        visit(getattr(obj, "transform", None))

    visit(root)
    return found


def _portable(numpy_state: tuple) -> list:
    """A ``numpy.random.RandomState.get_state()`` tuple as types ``torch.load(weights_only=True)`` reads.

    Its key array becomes a tensor: a checkpoint holding numpy arrays is refused by MONAI's
    ``CheckpointLoader`` (and any ``torch.load`` with ``weights_only=True``, torch's default).
    """
    name, keys, position, has_gauss, cached_gaussian = numpy_state
    keys = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    return [name, keys, int(position), int(has_gauss), float(cached_gaussian)]


def _numpy_state(state) -> tuple:
    """Back to the tuple ``set_state`` takes, from :func:`_portable`'s list or a tuple saved as is."""
    name, keys, position, has_gauss, cached_gaussian = state
    keys = keys.numpy() if isinstance(keys, torch.Tensor) else keys
    return name, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached_gaussian


class RunRandomState:
    """The loader's generator, the augmentations' random states and the global generators, as one state.

    Args:
        generator: the training data loader's ``torch.Generator`` (``None``: none).
        augmentation: the object holding the random transforms, usually the training dataset (see
            :func:`randomizables`; ``None``: none).
        global_state: also save the global ``random`` / ``numpy`` / ``torch`` (and CUDA) generators.
    """

    def __init__(self, generator: torch.Generator | None = None, augmentation: Any = None, global_state: bool = True):
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        self.generator, self.augmentation, self.global_state = generator, augmentation, global_state

    def state_dict(self) -> dict:
        """Every generator's state, in types that ``torch.load(weights_only=True)`` reads back."""
        state: dict[str, Any] = {
            "augmentation": [_portable(t.R.get_state()) for t in randomizables(self.augmentation)],
        }
        if self.generator is not None:
            state["generator"] = self.generator.get_state()
        if self.global_state:
            state["python"] = random.getstate()
            state["numpy"] = _portable(np.random.get_state())
            state["torch"] = torch.get_rng_state()
            if torch.cuda.is_available():
                state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restores what ``state`` holds.

        Raises:
            ValueError: ``state`` has a different number of augmentation states than the transforms found
                (the augmentation pipeline changed since the checkpoint was written).
        """
        transforms = randomizables(self.augmentation)
        saved = state.get("augmentation", [])
        if len(saved) != len(transforms):
            raise ValueError(
                f"the checkpoint holds the random state of {len(saved)} augmentation transforms but this run has "
                f"{len(transforms)} ({[type(t).__name__ for t in transforms]}): resume with the training config "
                "the checkpoint was written with"
            )
        for transform, transform_state in zip(transforms, saved):
            transform.R.set_state(_numpy_state(transform_state))
        if self.generator is not None and "generator" in state:
            self.generator.set_state(state["generator"])
        if self.global_state and "python" in state:
            random.setstate(state["python"])
            np.random.set_state(_numpy_state(state["numpy"]))
            torch.set_rng_state(state["torch"])
            if "cuda" in state and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(state["cuda"])
        logger.debug("restored the random state of %d augmentation transforms", len(transforms))
