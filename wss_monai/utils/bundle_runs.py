"""Running MONAI bundle commands as logged subprocesses (demo and benchmarks).

Example:
    >>> from pathlib import Path
    >>> bundle_command("training", [Path("train.yaml"), Path("recipe.yaml")], {"max_epochs": 2})[3:]
    ['run', 'training', '--config_file', "['train.yaml','recipe.yaml']", '--max_epochs', '2']
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["bundle_command", "run_logged"]

logger = logging.getLogger(__name__)


def bundle_command(run_id: str | None, configs: Sequence[str | Path], overrides: Mapping) -> list[str]:
    """``python -m monai.bundle run <run_id>`` on a list of config files, each override as ``--key value``.

    ``run_id=None`` leaves the run id out (MONAI then runs the id ``run``).
    """
    files = "[" + ",".join(f"'{c}'" for c in configs) + "]"
    run = [] if run_id is None else [run_id]
    command = [sys.executable, "-m", "monai.bundle", "run", *run, "--config_file", files]
    for key, value in overrides.items():
        command += [f"--{key}", str(value)]
    return command


def run_logged(
    command: Sequence[str], log_file: str | Path, cwd: str | Path | None = None, tail_lines: int = 25
) -> None:
    """Runs ``command`` with stdout and stderr appended to ``log_file``.

    Raises:
        RuntimeError: the command failed; the message names the exit code and quotes the end of the log.
    """
    log_file = Path(log_file)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    logger.info("$ %s", " ".join(str(c) for c in command))
    with open(log_file, "a") as log:
        result = subprocess.run(list(command), stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
    if result.returncode:
        tail = "".join(log_file.read_text().splitlines(keepends=True)[-tail_lines:])
        raise RuntimeError(f"{command[3:5]} failed with exit code {result.returncode}; end of {log_file}:\n{tail}")
