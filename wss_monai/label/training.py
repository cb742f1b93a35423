"""A training run of a bundle on the datastore's annotations, through the project's recipes and engine.

The run is ``python -m monai.bundle run training`` on the bundle's ``train.yaml``, the shared engine,
the recipe of the datalist's supervision (:data:`LABEL_RECIPES`: ``configs/supervision/scribble_files.yaml``,
partial CE on the scribble files; or ``configs/supervision/boxes.yaml``, the box prior, masked CE or
DeepCut on the box files), a CRF regulariser (``configs/regularisers/<name>.yaml``), a profile if given,
and ``configs/label/datastore.yaml`` (the datalist from :func:`wss_monai.label.datalist.make_label_datalist`,
fine-tuning from the served weights), followed for boxes by ``configs/label/datastore_boxes.yaml`` (each
case's ``box_file``). It runs in a subprocess, so a failing run never takes the server down.

Example:
    >>> command = label_training_command("acdc", "d.json", "out", regulariser="grid_crf", overrides={"max_epochs": 1})
    >>> [c.split("/")[-1] for c in eval(command[command.index("--config_file") + 1])]
    ['train.yaml', 'train.yaml', 'scribble_files.yaml', 'grid_crf.yaml', 'datastore.yaml']
    >>> command[-4:]
    ['--output_dir', 'out', '--max_epochs', '1']
    >>> command = label_training_command("acdc", "d.json", "out", regulariser="none", supervision="boxes")
    >>> [c.split("/")[-1] for c in eval(command[command.index("--config_file") + 1])]
    ['train.yaml', 'train.yaml', 'boxes.yaml', 'datastore.yaml', 'datastore_boxes.yaml']
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch

from wss_monai.bundle import bundle_configs
from wss_monai.label.boxes import BOX_RECIPE
from wss_monai.utils.bundle_runs import bundle_command

__all__ = ["BOX_OVERLAY", "LABEL_OVERLAY", "LABEL_RECIPES", "REGULARISERS", "label_training_command", "load_weights"]

logger = logging.getLogger(__name__)

LABEL_OVERLAY = "configs/label/datastore.yaml"
"""The overlay that trains on a datastore's datalist (merged last)."""
BOX_OVERLAY = "configs/label/datastore_boxes.yaml"
"""Merged after :data:`LABEL_OVERLAY` in a box run: the box recipe reads each case's ``box_file``."""
LABEL_RECIPES = {"scribbles": "configs/supervision/scribble_files.yaml", "boxes": BOX_RECIPE}
"""The recipe of each supervision of a label datalist (its ``"supervision"``)."""
REGULARISERS = ("dense_crf", "grid_crf", "none")
"""CRF losses added to the recipe's loss (partial CE, or a box loss): ``configs/regularisers/<name>.yaml``, or none."""


def label_training_command(
    bundle: str,
    datalist_file: str | Path,
    output_dir: str | Path,
    regulariser: str = "dense_crf",
    profile: str | Path | None = None,
    initial_weights: str | Path | None = None,
    overrides: Mapping | None = None,
    supervision: str = "scribbles",
) -> list[str]:
    """The command line of the training run (see the module).

    Args:
        bundle: the served bundle.
        datalist_file: the datalist of :func:`~wss_monai.label.datalist.make_label_datalist`.
        output_dir: the new run's folder.
        regulariser: one of :data:`REGULARISERS` (added to either recipe's loss).
        profile: a profile merged after the regulariser (e.g. ``configs/profiles/whole_volumes_3d.yaml``).
        initial_weights: the checkpoint the network starts from.
        overrides: more ``--key value`` bundle overrides (e.g. ``max_epochs``; ``box_loss`` for boxes).
        supervision: the datalist's ``"supervision"``, a key of :data:`LABEL_RECIPES`.

    Raises:
        ValueError: ``regulariser`` not in :data:`REGULARISERS`, ``supervision`` not in :data:`LABEL_RECIPES`.
        FileNotFoundError: a config file of the list is missing.
    """
    if regulariser not in REGULARISERS:
        raise ValueError(f"regulariser must be one of {REGULARISERS}, got {regulariser!r}")
    if supervision not in LABEL_RECIPES:
        raise ValueError(f"supervision must be one of {tuple(LABEL_RECIPES)}, got {supervision!r}")
    overlays = [LABEL_RECIPES[supervision]]
    overlays += [] if regulariser == "none" else [f"configs/regularisers/{regulariser}.yaml"]
    overlays += [] if profile is None else [profile]
    overlays += [LABEL_OVERLAY] + ([BOX_OVERLAY] if supervision == "boxes" else [])
    configs = bundle_configs(bundle, *overlays)
    arguments = {"label_datalist_file": str(datalist_file), "output_dir": str(output_dir)}
    if initial_weights is not None:
        arguments["initial_weights"] = str(initial_weights)
    return bundle_command("training", configs, {**arguments, **dict(overrides or {})})


def load_weights(network: torch.nn.Module, path: str | Path | None) -> torch.nn.Module:
    """Loads the network weights of a checkpoint (``{"model": state_dict}`` or a state dict) unless ``path`` is None.

    Raises:
        FileNotFoundError: ``path`` is not a file.
    """
    if path is None:
        return network
    if not Path(path).is_file():
        raise FileNotFoundError(f"initial_weights {str(path)!r} is not a file")
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, Mapping) and "model" in state:
        state = state["model"]
    network.load_state_dict(state)
    logger.info("fine-tuning from %s", path)
    return network
