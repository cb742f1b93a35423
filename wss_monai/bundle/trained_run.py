"""A finished training run read back from its folder: the objects of its recorded config, its checkpoints.

Inference (``bundles/<b>/configs/inference.yaml`` then ``configs/engine/inference.yaml``) runs alone on
a run folder: the network, the image normalisation and the inferer come from the config the run
recorded (``configs/train.json``, see :mod:`wss_monai.bundle.record`), so a 2D slice U-Net is applied
slice by slice and the 3D U-Net of the whole-volume profile with sliding windows, at the
``spatial_size`` it was trained at.

Example:
    >>> import tempfile, torch
    >>> from monai.bundle import ConfigParser
    >>> from wss_monai.bundle import record_run_config
    >>> run_dir = tempfile.mkdtemp()
    >>> network_def = {"_target_": "torch.nn.Linear", "in_features": "@width", "out_features": 2}
    >>> config = {"width": 3, "network_def": network_def}
    >>> _ = record_run_config(run_dir, ConfigParser(config))
    >>> run = TrainedRun(run_dir)
    >>> run.get("network_def")
    Linear(in_features=3, out_features=2, bias=True)
    >>> run.checkpoint()
    Traceback (most recent call last):
    ...
    FileNotFoundError: checkpoint ... not found: ...
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from monai.bundle import ConfigParser

from wss_monai.bundle.record import BEST_CHECKPOINT, RUN_CONFIG
from wss_monai.utils.config import check_checkpoint_file

__all__ = ["TrainedRun"]

logger = logging.getLogger(__name__)


class TrainedRun:
    """The recorded config and the checkpoints of the training run in ``run_dir``.

    Args:
        run_dir: the ``output_dir`` of a ``run training`` of a bundle.

    Raises:
        ValueError: ``run_dir`` is not set.
        FileNotFoundError: ``run_dir`` is not a folder, or holds no ``configs/train.json``.
    """

    def __init__(self, run_dir: str | Path | None) -> None:
        if run_dir is None or str(run_dir) == "":
            raise ValueError("run_dir is not set: pass --run_dir <the output_dir of a training run>")
        self.run_dir = Path(run_dir).resolve()
        if not self.run_dir.is_dir():
            raise FileNotFoundError(f"run_dir {str(run_dir)!r} is not an existing folder")
        self.config_file = self.run_dir / RUN_CONFIG
        if not self.config_file.is_file():
            raise FileNotFoundError(
                f"no recorded config {str(self.config_file)!r}: run_dir must be the output_dir of a training run, "
                f"which writes {RUN_CONFIG.as_posix()} when it starts"
            )
        self.parser = ConfigParser()
        self.parser.read_config(str(self.config_file))
        logger.info("rebuilding from the config recorded in %s", self.config_file)

    def get(self, id: str) -> Any:
        """The object ``id`` (``"network_def"``, ``"validate#inferer"``) of the run's config, built as in training.

        Raises:
            KeyError: the recorded config has no ``id``.
        """
        if id not in self.parser:
            raise KeyError(f"the recorded config {str(self.config_file)!r} has no {id!r}")
        return self.parser.get_parsed_content(id)

    def checkpoint(self, path: str | Path | None = None) -> str:
        """``path``, or the run's best-validation weights ``models/model.pt``, checked to exist.

        Raises:
            FileNotFoundError: the file is missing; the message names it and what was expected.
            ValueError: the file is empty (a save that was killed) or not a torch checkpoint.
        """
        expected = self.run_dir / BEST_CHECKPOINT if path is None else Path(path)
        if not expected.is_file():
            what = (
                f"the run's best-validation weights are {BEST_CHECKPOINT.as_posix()} (written at its first validation)"
                if path is None
                else "ckpt_path must name a checkpoint file"
            )
            raise FileNotFoundError(f"checkpoint {str(expected)!r} not found: {what}; pass --ckpt_path to choose one")
        check_checkpoint_file(expected, "checkpoint")
        return str(expected.resolve())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.run_dir)!r})"
