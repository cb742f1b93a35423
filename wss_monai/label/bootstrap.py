"""An untrained run of a bundle: what a MONAI Label project serves before anyone has annotated.

The run folder holds what inference and the label app read from a trained run: the recorded config
(``configs/train.json``, the bundle with ``scribble_files.yaml`` and any overlays and overrides) and
``models/model_final.pt`` with the network's seeded initial weights. Its predictions mean nothing
until the first training on the annotators' scribbles replaces it.

Example:
    >>> import tempfile
    >>> from wss_monai.bundle import TrainedRun
    >>> run_dir = untrained_run("acdc", tempfile.mkdtemp(), overrides={"spatial_size": 32})
    >>> TrainedRun(run_dir).get("spatial_size"), (run_dir / "models" / "model_final.pt").is_file()
    (32, True)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from monai.bundle import ConfigParser

from wss_monai.bundle import FINAL_CHECKPOINT, bundle_configs, record_run_config

__all__ = ["untrained_run"]

logger = logging.getLogger(__name__)


def untrained_run(bundle: str, run_dir: str | Path, *overlays: str | Path, overrides: Mapping | None = None,
                  seed: int = 0) -> Path:  # fmt: skip
    """Writes an untrained run of ``bundle`` to ``run_dir`` (see the module) and returns ``Path(run_dir)``.

    Args:
        bundle: a folder of ``bundles/``.
        run_dir: the run folder (created).
        overlays: config files merged after ``scribble_files.yaml`` (e.g. a profile).
        overrides: ``{id: value}`` set after the files (e.g. ``spatial_size``).
        seed: seed of the initial weights.
    """
    run_dir = Path(run_dir)
    parser = ConfigParser()
    parser.read_config([str(f) for f in bundle_configs(bundle, "configs/supervision/scribble_files.yaml", *overlays)])
    parser.update({**dict(overrides or {}), "output_dir": str(run_dir)})
    record_run_config(run_dir, parser)
    torch.manual_seed(seed)
    network = parser.get_parsed_content("network_def")
    (run_dir / FINAL_CHECKPOINT).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": network.state_dict()}, run_dir / FINAL_CHECKPOINT)
    logger.info("wrote an untrained %s run to %s", bundle, run_dir)
    return run_dir
