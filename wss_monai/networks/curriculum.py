"""The data and checkpoints that link the two stages of curriculum semi-supervision.

Kervadec et al., "Curriculum semi-supervised segmentation", MICCAI 2019. Stage 1 trains a size
regressor ``R`` on the slices of the n labelled patients (squared error, training set augmented ×10,
with a MONAI engine: :func:`wss_monai.experiments.run_size_regressor_stage`); stage 2 bounds the
target size of every unlabelled slice by ``[(1 - γ) R(x), (1 + γ) R(x)]``. This module

* cuts preprocessed volumes into slices and their target sizes (:func:`slices_and_sizes`),
* saves and loads regressor checkpoints with the settings needed to rebuild the network and to check
  that stage 2 feeds it images of the size it was trained on (:func:`save_size_regressor`,
  :func:`load_size_regressor`),
* loads a trained segmentation network into a separate copy (:func:`load_network_copy`), e.g. the
  full-supervision model whose predictions become pseudo-labels.

Example:
    >>> import tempfile, os, torch
    >>> from wss_monai.networks.size_regressor import SizeRegressor
    >>> path = os.path.join(tempfile.mkdtemp(), "r.pt")
    >>> net = SizeRegressor(channels=(4,), scale=30.0)
    >>> _ = torch.nn.init.zeros_(net.head.weight)  # a constant regressor: softplus(b) = 1, times scale
    >>> _ = save_size_regressor(net, path, classes=[3], spatial_size=16, model_kwargs={"channels": (4,)})
    >>> loaded = load_size_regressor(path, spatial_size=16)
    >>> round(float(loaded(torch.rand(1, 1, 16, 16)).detach()[0, 0]), 3)
    30.0
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wss_monai.networks.size_regressor import SizeRegressor

__all__ = [
    "load_network_copy",
    "load_size_regressor",
    "save_size_regressor",
    "slices_and_sizes",
]

logger = logging.getLogger(__name__)


def _checkpoint_path(path: str | Path | None, name: str) -> Path:
    if path is None or str(path) in ("", "None"):
        raise ValueError(f"{name} is not set: pass --{name} /path/to/checkpoint.pt")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{name} {str(path)!r} does not exist")
    return path


def slices_and_sizes(
    volumes: Iterable[Mapping],
    classes: Sequence[int],
    image_key: str = "image",
    label_key: str = "label",
) -> tuple[torch.Tensor, torch.Tensor, list[tuple[str, int]]]:
    """All slices (last axis) of preprocessed volumes, with the pixel count of each class of ``classes``.

    Args:
        volumes: dicts with ``image_key`` ``(C, H, W, D)`` and ``label_key`` ``(1, H, W, D)`` class maps of
            the same in-plane size in every volume.
        classes: class indices whose sizes are the regression targets (ACDC LV: ``[3]``).

    Returns:
        ``images (N, C, H, W)`` float32, ``sizes (N, K')`` float32, and ``(case name, slice index)`` per slice.
    """
    images, sizes, names = [], [], []
    classes = [int(c) for c in classes]
    if not classes:
        raise ValueError("classes must name at least one class, got an empty list")
    for v, volume in enumerate(volumes):
        missing = [k for k in (image_key, label_key) if k not in volume]
        if missing:
            raise KeyError(f"volume {v} lacks keys {missing}; has {sorted(volume)}")
        image = torch.as_tensor(volume[image_key]).float()
        label = torch.as_tensor(volume[label_key])
        if image.ndim != 4 or label.ndim != 4 or image.shape[1:] != label.shape[1:]:
            raise ValueError(
                f"volume {v}: image (C, H, W, D) and label (1, H, W, D) must share H, W, D, "
                f"got {tuple(image.shape)} and {tuple(label.shape)}"
            )
        image = image.as_tensor() if hasattr(image, "as_tensor") else image
        label = (label.as_tensor() if hasattr(label, "as_tensor") else label).round().long()[0]  # (H, W, D)
        images.append(image.permute(3, 0, 1, 2))
        sizes.append(torch.stack([(label == c).sum((0, 1)) for c in classes], -1).float())
        case = "_".join(str(volume[k]) for k in ("patient", "frame") if k in volume) or f"volume{v}"
        names.extend((case, s) for s in range(image.shape[-1]))
    if not images:
        raise ValueError("no volume to take slices from")
    shapes = {tuple(x.shape[1:]) for x in images}
    if len(shapes) != 1:
        raise ValueError(f"all slices must share one (C, H, W) shape, got {sorted(shapes)}")
    return torch.cat(images), torch.cat(sizes), names


def save_size_regressor(
    model: SizeRegressor,
    path: str | Path,
    classes: Sequence[int],
    spatial_size: int | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    **extra: Any,
) -> Path:
    """Writes ``{"model": state_dict, "model_kwargs", "in_channels", "num_outputs", "classes", "spatial_size", ...}``.

    ``model_kwargs`` are the :class:`SizeRegressor` arguments besides ``in_channels`` / ``num_outputs``
    (``channels``, ``strides``, ``norm``, ...), needed to rebuild the network.
    """
    if not isinstance(model, SizeRegressor):
        raise ValueError(f"model must be a SizeRegressor, got {type(model).__name__}")
    classes = [int(c) for c in classes]
    if len(classes) != model.num_outputs:
        raise ValueError(f"classes must name one class per regressor output ({model.num_outputs}), got {classes}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "model_kwargs": {k: list(v) if isinstance(v, tuple) else v for k, v in dict(model_kwargs or {}).items()},
        "in_channels": model.in_channels,
        "num_outputs": model.num_outputs,
        "classes": classes,
        "spatial_size": None if spatial_size is None else int(spatial_size),
        **extra,
    }
    torch.save(state, path)
    logger.info("saved size regressor to %s", path)
    return path


def load_size_regressor(
    path: str | Path | None,
    name: str = "size_regressor_ckpt",
    spatial_size: int | None = None,
    classes: Sequence[int] | None = None,
    device: str | torch.device = "cpu",
) -> SizeRegressor:
    """The :class:`SizeRegressor` of a checkpoint written by :func:`save_size_regressor`, in eval mode.

    Args:
        path: the checkpoint; ``None`` raises an error telling to pass ``--{name}``.
        name: the config entry the path comes from, named in the errors.
        spatial_size: if given, must equal the in-plane size the regressor was trained at.
        classes: if given, must equal the classes it predicts.

    Raises:
        ValueError: path not set, not a size-regressor checkpoint, or a size / class mismatch.
        FileNotFoundError: the file does not exist.
    """
    path = _checkpoint_path(path, name)
    state = torch.load(path, map_location="cpu", weights_only=False)
    needed = {"model", "model_kwargs", "in_channels", "num_outputs", "classes"}
    if not isinstance(state, Mapping) or not needed <= set(state):
        held = sorted(state) if isinstance(state, Mapping) else type(state).__name__
        raise ValueError(f"{name} {str(path)!r} is not a size-regressor checkpoint: needs {sorted(needed)}, has {held}")
    trained_at = state.get("spatial_size")
    if spatial_size is not None and trained_at is not None and int(spatial_size) != int(trained_at):
        raise ValueError(
            f"{name} {str(path)!r} was trained on {trained_at}² images but spatial_size is {spatial_size}: "
            "predicted sizes would be in the wrong units; retrain stage 1 at this spatial_size"
        )
    if classes is not None and [int(c) for c in classes] != list(state["classes"]):
        raise ValueError(f"{name} {str(path)!r} predicts classes {state['classes']}, expected {list(classes)}")
    model = SizeRegressor(in_channels=state["in_channels"], num_outputs=state["num_outputs"], **state["model_kwargs"])
    model.load_state_dict(state["model"])
    return model.to(device).eval()


def load_network_copy(
    network: nn.Module, path: str | Path | None, name: str = "proposals_ckpt", key: str = "model"
) -> nn.Module:
    """A deep copy of ``network`` with the weights ``checkpoint[key]`` of ``path``, in eval mode.

    The copy leaves ``network`` (e.g. the one about to be trained) untouched; a ``DistributedDataParallel``
    network is copied without its wrapper.

    Raises:
        ValueError: path not set, or the checkpoint has no ``key`` / does not fit the network.
        FileNotFoundError: the file does not exist.
    """
    path = _checkpoint_path(path, name)
    state = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(state, Mapping) and key in state:
        state = state[key]
    elif not (isinstance(state, Mapping) and all(isinstance(v, torch.Tensor) for v in state.values())):
        raise ValueError(f"{name} {str(path)!r} holds no {key!r} weights")
    if isinstance(network, nn.parallel.DistributedDataParallel):
        network = network.module
    model = copy.deepcopy(network).cpu()
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"{name} {str(path)!r} does not fit the configured network: {error}") from error
    return model.eval()
