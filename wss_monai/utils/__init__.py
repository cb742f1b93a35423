"""Small helpers called from the bundle configs."""

from wss_monai.utils.config import list_images, require_dir, resume
from wss_monai.utils.distributed import (
    NullSummaryWriter,
    all_gather_object,
    all_reduce_mean,
    all_reduce_sum,
    barrier,
    default_backend,
    get_rank,
    get_world_size,
    init_distributed,
    is_distributed,
    is_main_process,
    local_device,
    main_process_summary_writer,
)
from wss_monai.utils.logging import setup_logging

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
    "list_images",
    "local_device",
    "main_process_summary_writer",
    "require_dir",
    "resume",
    "setup_logging",
]
