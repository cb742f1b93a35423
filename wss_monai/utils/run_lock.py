"""One run at a time per output folder: a lock file holding the owner's process id and host.

Two training runs started with the same ``--output_dir`` would overwrite each other's checkpoints,
datalist and logs. :func:`lock_run_dir` (the first step of a training workflow that writes, right after
the argument checks) creates ``<run_dir>/.run.lock`` exclusively; a second run finds it and stops with an
error naming the folder and the process holding it. A lock left by a process that no longer exists on
this host (a run that was killed) is taken over with a warning. The lock is removed when the process
exits.

Example:
    >>> import os, tempfile
    >>> run_dir = tempfile.mkdtemp()
    >>> lock = lock_run_dir(run_dir)
    >>> lock.read_text().split()[0] == str(os.getpid())
    True
    >>> release_run_dir(run_dir)
    True
"""

from __future__ import annotations

import atexit
import errno
import logging
import os
import socket
from pathlib import Path

from wss_monai.utils.distributed import is_main_process

__all__ = ["LOCK_FILE", "RunDirBusyError", "lock_run_dir", "release_run_dir"]

logger = logging.getLogger(__name__)

LOCK_FILE = ".run.lock"
"""The lock's name inside the run folder."""


class RunDirBusyError(RuntimeError):
    """Another live process holds the run folder."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError as error:
        return error.errno != errno.ESRCH
    return True


def _read_owner(lock: Path) -> tuple[int | None, str]:
    try:
        fields = lock.read_text().split()
    except OSError:
        return None, ""
    try:
        return int(fields[0]), fields[1] if len(fields) > 1 else ""
    except (IndexError, ValueError):
        return None, ""


def _create(lock: Path) -> bool:
    try:
        fd = os.open(str(lock), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(f"{os.getpid()} {socket.gethostname()}\n")
    return True


def lock_run_dir(run_dir: str | Path) -> Path:
    """Takes the lock of ``run_dir`` for this process (created with the folder when missing).

    In a distributed run only rank 0 takes it (the other ranks share its folder). Taking a lock this
    process already holds does nothing.

    Returns:
        The lock file's path.

    Raises:
        RunDirBusyError: a live process (on this host, or any process on another host) holds the lock.
    """
    run_dir = Path(run_dir)
    lock = run_dir / LOCK_FILE
    if not is_main_process():
        return lock
    run_dir.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        if _create(lock):
            atexit.register(release_run_dir, run_dir)
            logger.info("locked %s for process %d", run_dir, os.getpid())
            return lock
        pid, host = _read_owner(lock)
        if pid == os.getpid() and host == socket.gethostname():
            return lock
        if pid is not None and (host != socket.gethostname() or _pid_alive(pid)):
            raise RunDirBusyError(
                f"output_dir {str(run_dir)!r} is in use by process {pid} on {host or '?'} (lock file {str(lock)!r}); "
                "choose another --output_dir, or wait for that run to end"
            )
        logger.warning("taking over the lock %s of process %s, which no longer runs (a run that was killed)", lock, pid)
        lock.unlink(missing_ok=True)
    raise RunDirBusyError(f"could not take the lock {str(lock)!r}: other processes keep taking it")


def release_run_dir(run_dir: str | Path) -> bool:
    """Removes the lock of ``run_dir`` if this process holds it; whether it did."""
    lock = Path(run_dir) / LOCK_FILE
    pid, host = _read_owner(lock)
    if pid != os.getpid() or host != socket.gethostname():
        return False
    lock.unlink(missing_ok=True)
    return True
