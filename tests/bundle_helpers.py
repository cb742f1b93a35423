"""Shared pieces of the end-to-end bundle tests: the repository root, a small run size, bundle runs
as subprocesses and in-process config parsers."""

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from monai.bundle import ConfigParser

from wss_monai.utils.bundle_runs import bundle_command

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"spatial_size": 32, "batch_size": 8, "max_epochs": 2, "val_interval": 1, "num_validation": 2}
"""Overrides of every bundle run unless given otherwise: 32 x 32 slices, two epochs, two validation cases."""


def _env() -> dict:
    return {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}


def run_bundle(
    run_id: str | None,
    configs: Sequence[str | Path],
    cwd: str | Path,
    check: bool = True,
    base: Mapping = SMALL,
    **overrides,
) -> subprocess.CompletedProcess:
    """``python -m monai.bundle run <run_id>`` on ``configs`` with ``base`` then ``overrides`` as ``--key value``.

    One thread per run (``OMP_NUM_THREADS=1``), warnings off; ``run_id=None`` leaves the run id out.
    With ``check`` a failed run raises an AssertionError quoting the end of its output.
    """
    return run_command(bundle_command(run_id, configs, {**base, **overrides}), cwd, check)


def run_command(command: Sequence[str], cwd: str | Path, check: bool = True) -> subprocess.CompletedProcess:
    """A bundle command line as given (e.g. ``wss_monai.label.label_training_command``), as ``run_bundle`` runs it."""
    result = subprocess.run(list(command), cwd=cwd, capture_output=True, text=True, env=_env())
    if check and result.returncode:
        raise AssertionError(f"bundle run failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def start_bundle(
    run_id: str | None, configs: Sequence[str | Path], cwd: str | Path, log, **overrides
) -> subprocess.Popen:
    """``python -m monai.bundle run <run_id>`` started in the background, stdout and stderr to the open file ``log``."""
    command = bundle_command(run_id, configs, overrides)
    return subprocess.Popen(command, cwd=cwd, env=_env(), stdout=log, stderr=subprocess.STDOUT)


def run_bundles(runs: Sequence[tuple[str | None, Sequence[str | Path], str | Path, Mapping]]) -> None:
    """Several ``run_bundle`` at once, each ``(run_id, configs, cwd, overrides)`` with no ``base``.

    Raises an AssertionError quoting the end of the output of the first run that failed.
    """
    processes = [
        subprocess.Popen(
            bundle_command(run_id, configs, overrides),
            cwd=cwd,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for run_id, configs, cwd, overrides in runs
    ]
    outputs = [process.communicate()[0] for process in processes]
    for process, output in zip(processes, outputs):
        if process.returncode:
            raise AssertionError(f"bundle run {process.args[3:5]} failed:\n{output[-4000:]}")


def config_parser(configs: Sequence[str | Path], **overrides) -> ConfigParser:
    """A ConfigParser reading ``configs`` in order, each override set as ``parser[key] = value``."""
    parser = ConfigParser()
    parser.read_config([str(c) for c in configs])
    parser.update(overrides)
    return parser


def error_chain(error: BaseException | None) -> str:
    """The messages of an exception and of every exception it was raised from, one per line.

    MONAI wraps a failing config component in its own error; the cause holds the message to check.
    """
    messages = []
    while error is not None:
        messages.append(str(error))
        error = error.__cause__ or error.__context__
    return "\n".join(messages)
