"""Starting the label app's server from any environment: MONAI Label's launcher in ``.venv-label``.

The server runs in the label environment (``scripts/setup_label_env.sh``), on loopback, with this
project's FastAPI app (:mod:`wss_monai.label.app.server`); MONAI Label's launcher calls ``python``
from ``PATH``, so the environment's ``bin`` goes first, and mlflow tracking is off.

Example:
    >>> command = server_command("/env", "apps/wss_label", "studies", {"run_dir": "r"}, port=8123)
    >>> command[:2], command[-5:-1]
    (['/env/bin/monailabel', 'start_server'], ['--conf', 'run_dir', 'r', '--uvicorn_app'])
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

from wss_monai.label.client import LabelClient
from wss_monai.paths import repository_root

__all__ = ["LABEL_ENV", "free_port", "running_server", "server_command"]

logger = logging.getLogger(__name__)

LABEL_ENV = repository_root() / ".venv-label"
"""The label environment that ``scripts/setup_label_env.sh`` creates."""
SERVER_APP = "wss_monai.label.app.server:app"


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_command(env: str | Path, app_dir: str | Path, studies: str | Path, conf: Mapping, port: int) -> list[str]:
    """``monailabel start_server`` of the app folder on ``studies`` with ``--conf`` pairs, on 127.0.0.1:``port``."""
    command = [str(Path(env) / "bin" / "monailabel"), "start_server", "--app", str(app_dir), "--studies", str(studies)]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    for key, value in conf.items():
        command += ["--conf", str(key), str(value)]
    return [*command, "--uvicorn_app", SERVER_APP]


@contextlib.contextmanager
def running_server(app_dir: str | Path, studies: str | Path, conf: Mapping, log_file: str | Path,
                   env: str | Path = LABEL_ENV, wait: float = 300.0) -> Iterator[LabelClient]:  # fmt: skip
    """A started server (its output in ``log_file``), stopped on exit; yields its :class:`LabelClient`.

    Raises:
        FileNotFoundError: the label environment is missing (run ``scripts/setup_label_env.sh``).
        RuntimeError: the server exited before answering; the message quotes its log.
    """
    if not (Path(env) / "bin" / "monailabel").is_file():
        raise FileNotFoundError(f"no MONAI Label in {env}: run scripts/setup_label_env.sh")
    port = free_port()
    variables = {
        **os.environ,
        "PATH": f"{Path(env) / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(repository_root()),
        "MONAI_LABEL_TRACKING_ENABLED": "false",
        "PYTHONWARNINGS": "ignore",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
    }
    command = server_command(env, app_dir, studies, conf, port)
    logger.info("$ %s", " ".join(command))
    with open(log_file, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=variables)
    client = LabelClient(f"http://127.0.0.1:{port}")
    try:
        try:
            client.wait(wait)
        except TimeoutError as error:
            tail = Path(log_file).read_text()[-3000:]
            raise RuntimeError(f"the label server did not start (exit code {process.poll()}):\n{tail}") from error
        yield client
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
