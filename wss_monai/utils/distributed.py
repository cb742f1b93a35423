"""Helpers for training on several processes (``torchrun``); each is a no-op in a single process.

A bundle run becomes distributed by merging ``configs/engine/multi_gpu_train.yaml`` after its
training configs and starting it with ``torchrun``. That config calls :func:`init_distributed` first;
the handlers use the other helpers so that state updated from data (dual variables, the share of
satisfied constraints, loss means, validation rows) is the same on every rank and files are written
by rank 0 alone.

Example:
    >>> import torch
    >>> is_main_process(), get_rank(), get_world_size()
    (True, 0, 1)
    >>> all_reduce_sum(torch.tensor([1.0, 2.0]))
    tensor([1., 2.])
    >>> all_gather_object({"rows": 3})
    [{'rows': 3}]
"""

from __future__ import annotations

import datetime
import logging
import os
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "NullSummaryWriter",
    "all_gather_object",
    "all_reduce_mean",
    "all_reduce_sum",
    "barrier",
    "default_backend",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_distributed",
    "is_main_process",
    "local_device",
    "main_process_summary_writer",
]

logger = logging.getLogger(__name__)

BACKENDS = ("nccl", "gloo")


def is_distributed() -> bool:
    """Whether a ``torch.distributed`` process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """This process's rank; 0 when not distributed."""
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    """The number of processes; 1 when not distributed."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """Whether this process writes files, TensorBoard and the log (rank 0, or the only process)."""
    return get_rank() == 0


def default_backend() -> str:
    """``"nccl"`` when CUDA is available, else ``"gloo"`` (CPU processes, e.g. in CI)."""
    return "nccl" if torch.cuda.is_available() else "gloo"


def local_device(backend: str | None = None) -> torch.device:
    """The device of this process: ``cuda:<LOCAL_RANK>`` with NCCL, the CPU with gloo.

    ``LOCAL_RANK`` is set by ``torchrun`` (0 when absent). ``backend=None`` means :func:`default_backend`.
    """
    backend = _check_backend(backend)
    if backend == "nccl":
        return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
    return torch.device("cpu")


def _check_backend(backend: str | None) -> str:
    backend = default_backend() if backend is None else str(backend)
    if backend not in BACKENDS:
        raise ValueError(f"dist_backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "nccl" and not torch.cuda.is_available():
        raise ValueError("dist_backend 'nccl' needs CUDA, which is not available here: use 'gloo'")
    return backend


def init_distributed(backend: str | None = None, timeout_minutes: float = 60.0, quiet_other_ranks: bool = True) -> bool:
    """Joins the process group that ``torchrun`` describes in the environment, once.

    With NCCL the process's CUDA device becomes ``cuda:<LOCAL_RANK>``. With ``quiet_other_ranks`` the
    root logger of every rank but 0 is set to WARNING, so that each epoch is logged once.

    Args:
        backend: ``"nccl"``, ``"gloo"`` or ``None`` (:func:`default_backend`).
        timeout_minutes: how long a collective waits for the slowest rank (e.g. one solving more
            proposals) before the run stops with an error.
        quiet_other_ranks: lower the log level of ranks other than 0.

    Returns:
        True when this call initialised the group, False when it was already initialised.

    Raises:
        ValueError: an unknown backend, NCCL without CUDA, or a process not started by ``torchrun``
            (no ``RANK`` / ``WORLD_SIZE`` / ``MASTER_ADDR`` in the environment).
    """
    backend = _check_backend(backend)
    if is_distributed():
        return False
    missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ValueError(
            f"multi_gpu_train.yaml needs a process started by torchrun; the environment lacks {missing} "
            "(torchrun --nproc_per_node N -m monai.bundle run ...)"
        )
    if not timeout_minutes > 0:
        raise ValueError(f"dist_timeout_minutes must be positive, got {timeout_minutes!r}")
    if backend == "nccl":
        torch.cuda.set_device(local_device(backend))
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=float(timeout_minutes)))
    if quiet_other_ranks and not is_main_process():
        logging.getLogger().setLevel(logging.WARNING)
    logger.info("process group of %d processes (%s) initialised", get_world_size(), backend)
    return True


def _collective_device(tensor: torch.Tensor) -> torch.device:
    """Where a collective on ``tensor`` must run: the current CUDA device with NCCL, else the tensor's own."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return tensor.device


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The elementwise sum of ``tensor`` over all processes, as a new tensor on ``tensor``'s device.

    ``tensor`` itself is not changed; without a process group a copy is returned.
    """
    out = tensor.detach().clone()
    if not is_distributed():
        return out
    work = out.to(_collective_device(out))
    dist.all_reduce(work, op=dist.ReduceOp.SUM)
    return work.to(tensor.device)


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """The elementwise mean of ``tensor`` (floating point) over all processes; see :func:`all_reduce_sum`."""
    if not tensor.is_floating_point():
        raise TypeError(f"all_reduce_mean needs a floating-point tensor, got {tensor.dtype}")
    return all_reduce_sum(tensor) / get_world_size()


def all_gather_object(obj: Any) -> list[Any]:
    """The picklable ``obj`` of every process, in rank order (``[obj]`` without a process group).

    Tensors inside ``obj`` should be on the CPU: they are unpickled on the receiving rank's devices.
    """
    if not is_distributed():
        return [obj]
    gathered: list[Any] = [None] * get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier() -> None:
    """Waits for every process (nothing without a process group)."""
    if is_distributed():
        dist.barrier()


class NullSummaryWriter:
    """Stands in for a TensorBoard ``SummaryWriter`` on ranks other than 0: every method does nothing.

    Example:
        >>> writer = NullSummaryWriter()
        >>> writer.add_scalar("loss", 1.0, 0), writer.close()
        (None, None)
    """

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _ignore


def _ignore(*args: Any, **kwargs: Any) -> None:
    return None


def main_process_summary_writer(log_dir: str):
    """A TensorBoard ``SummaryWriter`` on ``log_dir`` on rank 0, a :class:`NullSummaryWriter` elsewhere."""
    if not is_main_process():
        return NullSummaryWriter()
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=log_dir)
