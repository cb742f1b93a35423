"""Running MONAI bundle commands as logged subprocesses (demo and benchmarks).

Example:
    >>> from pathlib import Path
    >>> bundle_command("training", [Path("train.yaml"), Path("recipe.yaml")], {"max_epochs": 2})[3:]
    ['run', 'training', '--config_file', "['train.yaml','recipe.yaml']", '--max_epochs', '2']
    >>> torchrun_command(2, "training", ["train.yaml", "multi_gpu_train.yaml"], {})[1:9]
    ['-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', '-m', 'monai.bundle', 'run']
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["bundle_command", "finished_run", "record_config_if_missing", "run_logged", "torchrun_command"]

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


def torchrun_command(nproc: int, run_id: str | None, configs: Sequence[str | Path], overrides: Mapping) -> list[str]:
    """:func:`bundle_command` started on ``nproc`` processes of this machine by ``torchrun`` (``--standalone``).

    ``configs`` should end with ``configs/engine/multi_gpu_train.yaml``
    (:func:`wss_monai.bundle.bundle_configs` with ``kind="multi_gpu_train"``).
    """
    if int(nproc) != nproc or nproc < 1:
        raise ValueError(f"nproc must be a positive integer, got {nproc!r}")
    command = bundle_command(run_id, configs, overrides)
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(int(nproc))]
    return [command[0], *launcher, *command[1:]]


def finished_run(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a training run that reached its last epoch.

    ``models/model_final.pt`` is written after every epoch (so that a killed run can resume), so its
    existence alone does not tell a finished run; its trainer state does: the iterations done reach
    ``max_epochs × epoch_length``. Benchmarks reuse finished runs and resume or redo the others.
    """
    checkpoint = Path(run_dir) / "models" / "model_final.pt"
    if not checkpoint.is_file():
        return False
    import torch  # noqa: PLC0415  (only where checked)

    state = torch.load(checkpoint, map_location="cpu", weights_only=False).get("trainer")
    if not state:
        raise ValueError(f"{checkpoint} holds no trainer state: cannot tell whether the run finished")
    return state["iteration"] >= state["max_epochs"] * state["epoch_length"]


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


def record_config_if_missing(run_dir: str | Path, configs: Sequence[str | Path], overrides: Mapping) -> bool:
    """Records ``<run_dir>/configs/train.json`` for a run trained before runs recorded their own config.

    The config is ``configs`` merged in order, then ``overrides`` (paths as strings), as the training
    command line merged them; inference reads it. Does nothing and returns False when the run
    already holds one.
    """
    from monai.bundle import ConfigParser

    from wss_monai.bundle import RUN_CONFIG, record_run_config

    if (Path(run_dir) / RUN_CONFIG).is_file():
        return False
    parser = ConfigParser()
    parser.read_config([str(c) for c in configs])
    parser.update({key: str(value) if isinstance(value, Path) else value for key, value in overrides.items()})
    record_run_config(run_dir, parser)
    return True
