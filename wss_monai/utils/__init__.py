"""Small helpers called from the bundle configs."""

from wss_monai.utils.atomic import atomic_path, write_text_atomic
from wss_monai.utils.config import (
    check_checkpoint_file,
    extend_lr_schedule,
    list_images,
    read_checkpoint,
    require_dir,
    require_saved_state,
    resume,
)
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
from wss_monai.utils.random_state import RunRandomState
from wss_monai.utils.run_lock import RunDirBusyError, lock_run_dir, release_run_dir

__all__ = [
    "check_checkpoint_file",
    "RunDirBusyError",
    "RunRandomState",
    "atomic_path",
    "extend_lr_schedule",
    "lock_run_dir",
    "read_checkpoint",
    "release_run_dir",
    "write_text_atomic",
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
    "require_saved_state",
    "resume",
    "setup_logging",
]
