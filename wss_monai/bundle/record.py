"""What a training run writes about itself, so that it can be rerun, segmented with and exported alone.

A run folder (the ``output_dir`` of ``run training``) is laid out like a MONAI bundle::

    <run_dir>/configs/train.json     the merged config it ran with (every file + command-line overrides)
    <run_dir>/configs/metadata.json  the bundle's metadata (class names in its channel_def)
    <run_dir>/models/model.pt        the network weights with the best validation metric
    <run_dir>/models/model_final.pt  everything needed to resume (model, optimizer, schedules, trainer)

``configs/train.json`` is written by :func:`record_run_config`, the first step of ``initialize`` in
the engine's ``configs/engine/train.yaml``, before any data is read; ``configs/engine/inference.yaml``
reads it back through :class:`wss_monai.bundle.TrainedRun`.

Example:
    >>> import json, tempfile
    >>> from monai.bundle import ConfigParser
    >>> parser = ConfigParser({"num_classes": 2, "network_def": {"_target_": "torch.nn.Identity"}})
    >>> parser.update({"num_classes": 3})  # a command-line override
    >>> run_dir = tempfile.mkdtemp()
    >>> path = record_run_config(run_dir, parser)
    >>> json.loads(open(path).read())["num_classes"]
    3
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from monai.bundle import ConfigParser

from wss_monai.utils.atomic import write_text_atomic
from wss_monai.utils.distributed import is_main_process

__all__ = [
    "BEST_CHECKPOINT",
    "FINAL_CHECKPOINT",
    "RUN_CONFIG",
    "RUN_METADATA",
    "find_running_parser",
    "record_run_config",
    "write_json_atomic",
]

logger = logging.getLogger(__name__)

RUN_CONFIG = Path("configs") / "train.json"
"""The merged config of a run, relative to its folder."""
RUN_METADATA = Path("configs") / "metadata.json"
"""The bundle metadata of a run, relative to its folder."""
BEST_CHECKPOINT = Path("models") / "model.pt"
"""The best-validation weights of a run (the network's state dict alone), relative to its folder."""
FINAL_CHECKPOINT = Path("models") / "model_final.pt"
"""The last state of a run (a dict of model, optimizer, trainer, schedules), relative to its folder."""


def find_running_parser() -> ConfigParser:
    """The :class:`~monai.bundle.ConfigParser` evaluating the current config expression.

    A config expression sees the items it references, never the parser, and the whole config is not an
    item it can reference: ``@`` with an empty id would resolve, i.e. instantiate and run, every item;
    a ``%#`` macro copies the raw config into an item, but referencing that item instantiates the copy.
    Reading ``sys.argv`` again misses ``--args_file``, runs started from Python (``monai.bundle.run``,
    ``ConfigWorkflow``) and MONAI's parsing of the values. What always holds is that an expression is
    evaluated inside ``ConfigParser.get_parsed_content``: the innermost frame of the call stack whose
    ``self`` is a ``ConfigParser`` is the parser running it, holding the files as merged and the
    overrides as applied.

    Raises:
        RuntimeError: not called (directly or indirectly) from a config expression.
    """
    frame = inspect.currentframe()
    try:
        while frame is not None:
            owner = frame.f_locals.get("self")
            if isinstance(owner, ConfigParser):
                return owner
            frame = frame.f_back
    finally:
        del frame
    raise RuntimeError("no ConfigParser on the call stack: call this from a bundle config expression or pass parser=")


def write_json_atomic(data: Any, path: str | Path) -> Path:
    """Writes ``data`` as indented JSON to ``path`` through a temporary file in the same folder and a rename.

    A reader sees the old file or the new one, never a half-written one.

    Raises:
        TypeError: ``data`` holds a value JSON cannot represent; the message names its type and the file.
    """
    path = Path(path)
    try:
        text = json.dumps(data, indent=2)
    except TypeError as error:
        raise TypeError(f"cannot write {str(path)!r}: {error}") from error
    write_text_atomic(text + "\n", path)
    return path


def record_run_config(run_dir: str | Path, parser: ConfigParser | None = None) -> str:
    """Writes the merged, unresolved config of a run to ``<run_dir>/configs/train.json`` (and its metadata).

    Called as the first ``initialize`` step of a training config::

        initialize:
          - $wss_monai.bundle.record_run_config(@run_dir)

    the config is every file of ``--config_file`` merged in order, then the command-line overrides,
    with ``$`` expressions and ``@`` references left as written: reading it back with a ``ConfigParser``
    rebuilds the same objects. ``_meta_`` (the bundle's ``metadata.json``, read by MONAI's workflow)
    is also written alone to ``configs/metadata.json``. Both are written atomically; a resumed run
    writes them again. In a distributed run only rank 0 writes; the others return the same path.

    Args:
        run_dir: the run's folder (created when missing).
        parser: the parser holding the config; by default the one evaluating the calling expression
            (:func:`find_running_parser`).

    Returns:
        The path of the config written.
    """
    if run_dir is None or str(run_dir) == "":
        raise ValueError("run_dir is not set: the training run needs an output folder (--output_dir)")
    parser = find_running_parser() if parser is None else parser
    config = parser.get()
    if not isinstance(config, Mapping):
        raise TypeError(f"a bundle config is a mapping, got {type(config).__name__}")
    run_dir = Path(run_dir)
    if not is_main_process():
        return str(run_dir / RUN_CONFIG)
    path = write_json_atomic(dict(config), run_dir / RUN_CONFIG)
    meta = config.get("_meta_")
    if isinstance(meta, Mapping) and meta:
        write_json_atomic(dict(meta), run_dir / RUN_METADATA)
    logger.info("recorded the run's config in %s", path)
    return str(path)
