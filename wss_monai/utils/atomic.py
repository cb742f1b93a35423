"""Atomic file writes: a reader (or a run killed mid-write) sees the old file or the new one, never half of one.

Every file a run writes that another step reads back (checkpoints, datalists, CSV tables, predictions)
goes through :func:`atomic_path`: the content is written to a temporary file in the same folder, flushed
to disk, then renamed over the target with :func:`os.replace`, which is atomic on POSIX and Windows
when both paths are on one file system.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> target = Path(tempfile.mkdtemp()) / "table.csv"
    >>> _ = write_text_atomic("a,b\\n1,2\\n", target)
    >>> target.read_text()
    'a,b\\n1,2\\n'
    >>> sorted(p.name for p in target.parent.iterdir())  # no temporary file left behind
    ['table.csv']
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "fsync_file", "write_text_atomic"]

_UMASK = os.umask(0)
os.umask(_UMASK)


def fsync_file(path: str | Path) -> None:
    """Flushes a written file to disk (a no-op where the platform cannot open a file for that)."""
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yields a temporary path next to ``path``; once the block ends without error it replaces ``path``.

    On an error the temporary file is removed and ``path`` is left as it was.

    Args:
        path: the file to write; its folder is created when missing.
        suffix: the end of the temporary name (default: ``path``'s own suffixes, e.g. ``.nii.gz``, so
            that writers choosing a format by extension still do).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) if suffix is None else suffix
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{suffix}")
    os.close(handle)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp's 0600 would hide the file from the group
    try:
        yield Path(tmp)
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(text: str, path: str | Path, newline: str | None = None) -> Path:
    """Writes ``text`` to ``path`` through :func:`atomic_path`; returns ``path``."""
    with atomic_path(path) as tmp, open(tmp, "w", newline=newline) as f:
        f.write(text)
    return Path(path)
