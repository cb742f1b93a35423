"""The ordered list of config files of a bundle run: the bundle's facts, the shared engine, then overlays.

Every bundle's training config is a list: ``bundles/<bundle>/configs/train.yaml`` (reader, channels,
classes, spatial size), ``configs/engine/train.yaml`` (the trainer, evaluator, checkpoints and
handlers every bundle shares), for a binary lesion dataset ``configs/engine/lesion.yaml``, then any
recipe, regulariser or profile. The bundle's file comes first because MONAI takes ``metadata.json``
and ``logging.conf`` from the folder of the first file; the engine defines none of the ids a bundle
defines, so the order does not let it replace a fact. Evaluation and multi-GPU training add one
shared file at the end; inference runs alone on a trained run, from the bundle's ``inference.yaml``
(how its inputs are laid out) and the shared ``configs/engine/inference.yaml``.

Example:
    >>> from wss_monai import repository_root
    >>> def names(files):
    ...     return [f.relative_to(repository_root()).as_posix() for f in files]
    >>> names(bundle_configs("acdc", "configs/supervision/scribble.yaml"))
    ['bundles/acdc/configs/train.yaml', 'configs/engine/train.yaml', 'configs/supervision/scribble.yaml']
    >>> names(bundle_configs("wmh", kind="evaluate"))[1:]
    ['configs/engine/train.yaml', 'configs/engine/lesion.yaml', 'configs/engine/evaluate.yaml']
    >>> names(bundle_configs("isles", kind="inference"))
    ['bundles/isles/configs/inference.yaml', 'configs/engine/inference.yaml']
"""

from __future__ import annotations

from pathlib import Path

from wss_monai.paths import bundle_dir, repository_root

__all__ = ["ENGINE_FRAGMENTS", "KINDS", "bundle_configs"]

ENGINE_FRAGMENTS: dict[str, tuple[str, ...]] = {"isles": ("lesion",), "wmh": ("lesion",), "atlas": ("lesion",)}
"""Per bundle, the engine fragments (``configs/engine/<name>.yaml``) merged after ``configs/engine/train.yaml``."""

KINDS = ("train", "evaluate", "multi_gpu_train", "inference")
"""What a list is for: ``run training``, ``run evaluating`` (after training), torchrun training, inference."""


def _existing(path: str | Path) -> Path:
    path = Path(path)
    path = path if path.is_absolute() else repository_root() / path
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} not found")
    return path


def bundle_configs(bundle: str, *overlays: str | Path, kind: str = "train") -> list[Path]:
    """The config files of a ``kind`` run of ``bundle``, in merge order, as absolute paths.

    Args:
        bundle: a folder of ``bundles/`` (``"acdc"``, ``"isles"``, ``"wmh"``).
        overlays: recipes, regularisers, profiles (or any file of overrides), merged in this order after
            the engine; a relative path is taken from the repository root.
        kind: one of :data:`KINDS`. ``"evaluate"`` and ``"multi_gpu_train"`` end the training list with
            ``configs/engine/evaluate.yaml`` or ``configs/engine/multi_gpu_train.yaml``; ``"inference"``
            lists the bundle's ``inference.yaml`` and ``configs/engine/inference.yaml``.

    Raises:
        ValueError: ``kind`` is not one of :data:`KINDS`.
        FileNotFoundError: no such bundle, or a file of the list is missing.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    configs = Path(bundle_dir(bundle)) / "configs"
    engine = repository_root() / "configs/engine"
    extra = [_existing(o) for o in overlays]
    if kind == "inference":
        return [_existing(configs / "inference.yaml"), _existing(engine / "inference.yaml"), *extra]
    fragments = [_existing(engine / f"{name}.yaml") for name in ("train", *ENGINE_FRAGMENTS.get(bundle, ()))]
    last = [] if kind == "train" else [_existing(engine / f"{kind}.yaml")]
    return [_existing(configs / "train.yaml"), *fragments, *extra, *last]
