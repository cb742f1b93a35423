"""Inputs that cannot be read or fail their checks are skipped and reported, not fatal to the rest.

Segmenting a folder used to stop at the first bad file (a truncated ``.nii.gz``, a 4D series where a
3D image was expected), leaving the files after it unsegmented. :class:`SkipFailuresDataset` runs the
preprocessing of each input in turn and, when one fails, logs an error naming its files and the
reason, remembers it and goes on with the next. After the run, :meth:`SkipFailuresDataset.raise_failures`
raises one error listing every bad input, so the command exits non-zero.

Example:
    >>> dataset = SkipFailuresDataset([{"image": "a.nii.gz", "x": 1}, {"image": "b.nii.gz", "x": "?"}],
    ...                               transform=lambda d: {**d, "y": 2 * int(d["x"])})
    >>> [item["y"] for item in dataset]
    [2]
    >>> dataset.raise_failures()
    Traceback (most recent call last):
        ...
    wss_monai.data.tolerant.InputFailures: 1 of 2 inputs failed and were not processed:
      b.nii.gz: ValueError: invalid literal for int() with base 10: '?'
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from monai.transforms import apply_transform
from torch.utils.data import IterableDataset, get_worker_info

__all__ = ["InputFailures", "SkipFailuresDataset", "describe_error", "input_files"]

logger = logging.getLogger(__name__)


class InputFailures(RuntimeError):
    """Some inputs failed; the message lists each one's files and error."""


def input_files(item: Mapping, keys: Sequence[str] = ("image",)) -> str:
    """The file (or files, comma-separated) an input dictionary names under ``keys``."""
    names = []
    for key in keys:
        value = item.get(key)
        values = value if isinstance(value, (list, tuple)) else [value]
        names += [str(v) for v in values if v is not None]
    return ", ".join(names) or repr(dict(item))


def describe_error(error: BaseException) -> str:
    """``Type: message`` of the innermost error MONAI wrapped (``apply_transform`` hides the cause)."""
    while error.__cause__ is not None:
        error = error.__cause__
    return f"{type(error).__name__}: {error}"


class SkipFailuresDataset(IterableDataset):
    """``transform(item)`` for each item of ``data``, in order, leaving out (and recording) those that fail.

    An iterable dataset: its loader has no length and the evaluator runs until the good inputs are done.
    It runs in the main process (``num_workers`` 0), which keeps the list of failures.

    Args:
        data: input dictionaries (``{"image": file or files, ...}``).
        transform: the preprocessing (loading, checks, normalisation).
        keys: the keys naming an input's files in the report.
    """

    def __init__(self, data: Sequence[Mapping], transform: Callable | None = None, keys: Sequence[str] = ("image",)):
        self.data, self.transform, self.keys = list(data), transform, tuple(keys)
        self.failures: list[tuple[str, str]] = []

    def __iter__(self) -> Iterator[Any]:
        if get_worker_info() is not None:
            raise ValueError("SkipFailuresDataset reports its failures from the main process: use num_workers 0")
        self.failures = []
        for item in self.data:
            try:
                yield apply_transform(self.transform, dict(item)) if self.transform is not None else dict(item)
            except Exception as error:
                files = input_files(item, self.keys)
                reason = describe_error(error)
                logger.error("skipping %s: %s", files, reason)
                self.failures.append((files, reason))

    def raise_failures(self) -> None:
        """Raises :class:`InputFailures` listing every input that failed in the last pass; nothing if none did."""
        if not self.failures:
            logger.info("all %d inputs processed", len(self.data))
            return
        lines = "\n".join(f"  {files}: {reason}" for files, reason in self.failures)
        raise InputFailures(f"{len(self.failures)} of {len(self.data)} inputs failed and were not processed:\n{lines}")
