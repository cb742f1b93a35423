"""Command-line overrides checked before a run writes anything: unknown ids and wrong types stop it at once.

``python -m monai.bundle run training ... --max_epochs abc`` used to fail only once the data were loaded
(the trainer is built late), after ``datalist.json`` had been overwritten; ``--no_such_key 3`` was accepted
silently (MONAI adds any id it is given). :func:`check_overrides`, the first step of the training
workflow's ``initialize``, compares every override with the config files alone:

- an id that no file defines is an error naming it, with the closest ids as suggestions;
- where the files give a number, the override must be a number of that kind (an integer for an integer
  default), and the counts in :data:`AT_LEAST` must reach their minimum;
- :data:`OPTIONAL_INTS` (``null`` in the files) take an integer or null.

Example:
    >>> files = {"max_epochs": 50, "learning_rate": 0.0005, "train": {"batch_size": 4}}
    >>> check_overrides({"max_epochs": 3, "train#batch_size": 2}, files)
    >>> check_overrides({"max_epochs": "abc"}, files)
    Traceback (most recent call last):
        ...
    ValueError: --max_epochs must be an integer (the config gives 50), got 'abc'
    >>> check_overrides({"max_epoch": 3}, files)
    Traceback (most recent call last):
        ...
    KeyError: "--max_epoch: no config file defines the id 'max_epoch'; did you mean 'max_epochs'?"
"""

from __future__ import annotations

import difflib
import inspect
import logging
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from monai.bundle import ConfigParser, ConfigWorkflow

__all__ = ["AT_LEAST", "OPTIONAL_INTS", "OPTIONAL_POSITIVE", "check_overrides", "find_command_line"]

logger = logging.getLogger(__name__)

AT_LEAST = {
    "max_epochs": 1,
    "batch_size": 1,
    "val_interval": 1,
    "spatial_size": 1,
    "checkpoint_interval": 0,
    "num_workers": 0,
    "cache_rate": 0,
    "learning_rate": 0,
    "foreground_oversample": 0,
}
"""The smallest value each of these ids may take."""
OPTIONAL_INTS = ("max_train_volumes", "crf_stop_epochs")
"""Ids that are ``null`` in the files and take an integer or null."""
OPTIONAL_POSITIVE = ("time_budget_minutes",)
"""Ids that are ``null`` in the files and take a positive number or null."""
PER_CLASS = ("box_epsilon", "box_upper", "box_ellipse_epsilon")
"""Number ids that also take a list of numbers, one per class."""

_WORKFLOW_ARGUMENTS = frozenset(inspect.signature(ConfigWorkflow.__init__).parameters) - {"self", "override"}


def find_command_line() -> tuple[Any, dict] | None:
    """The ``config_file`` and the overrides of the ``monai.bundle`` command running this process, or None.

    ``monai.bundle run`` builds its workflow (and runs ``initialize``) inside
    ``monai.bundle.scripts.create_workflow``, whose frame holds the config files and every override
    (``--args_file`` ones included) before they are merged.
    """
    frame = inspect.currentframe()
    try:
        while frame is not None:
            if frame.f_code.co_name == "create_workflow" and frame.f_globals.get("__name__") == "monai.bundle.scripts":
                args = frame.f_locals.get("_args", {})
                overrides = {k: v for k, v in args.items() if k not in _WORKFLOW_ARGUMENTS}
                return frame.f_locals.get("config_file"), overrides
            frame = frame.f_back
    finally:
        del frame
    return None


def _suggest(key: str, config: ConfigParser) -> str:
    parent, _, leaf = key.rpartition("#")
    container = config.get(parent) if parent else config.get()
    if isinstance(container, Mapping):
        candidates = [str(k) for k in container]
    elif isinstance(container, Sequence) and not isinstance(container, str):
        candidates = [str(i) for i in range(len(container))]
    else:
        candidates = []
    close = difflib.get_close_matches(leaf, candidates, n=3, cutoff=0.6)
    if not close:
        return ""
    names = [f"{parent}#{c}" if parent else c for c in close]
    return "; did you mean " + " or ".join(repr(n) for n in names) + "?"


def _check_type(key: str, value: Any, default: Any) -> None:
    leaf = key.rpartition("#")[2]
    if isinstance(value, str) and value.startswith(("$", "@", "%")):
        return  # an expression or a reference: checked when it is evaluated
    if leaf in OPTIONAL_INTS and default is None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
            raise ValueError(f"--{key} must be an integer or null, got {value!r}")
        return
    if leaf in OPTIONAL_POSITIVE and default is None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real) or value <= 0):
            raise ValueError(f"--{key} must be a positive number or null, got {value!r}")
        return
    if isinstance(default, bool) or not isinstance(default, numbers.Number):
        return
    if leaf in PER_CLASS and isinstance(value, (list, tuple)):
        if not value or any(isinstance(v, bool) or not isinstance(v, numbers.Real) for v in value):
            raise ValueError(f"--{key} must be a number or a list of numbers, one per class, got {value!r}")
        return
    if isinstance(default, numbers.Integral):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(f"--{key} must be an integer (the config gives {default!r}), got {value!r}")
    elif isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"--{key} must be a number (the config gives {default!r}), got {value!r}")
    if leaf in AT_LEAST and value < AT_LEAST[leaf]:
        raise ValueError(f"--{key} must be >= {AT_LEAST[leaf]}, got {value!r}")


def check_overrides(overrides: Mapping[str, Any] | None = None, config: Any = None) -> None:
    """Checks command-line overrides against the config files before anything runs.

    Called without arguments from a bundle config (``$wss_monai.bundle.check_overrides()``), it reads
    the command line of the running ``monai.bundle`` process (:func:`find_command_line`); started any
    other way (``ConfigWorkflow`` from Python) there is nothing to check and it returns.

    Args:
        overrides: ``{id: value}`` as MONAI parsed them (``"train#batch_size"`` for nested ids).
        config: the config files alone, without the overrides: a list of files, a file, or a dict.

    Raises:
        KeyError: an override's id is defined by no config file (the message suggests close ids).
        ValueError: an override has the wrong type or is below its minimum (the message names it), or
            several overrides are bad (the message lists them all, one a line).
    """
    if overrides is None:
        found = find_command_line()
        if found is None:
            logger.debug("not started by monai.bundle: no command-line overrides to check")
            return
        config, overrides = found
    if not overrides:
        return
    parser = ConfigParser(dict(config)) if isinstance(config, Mapping) else ConfigParser()
    if not isinstance(config, Mapping):
        parser.read_config(config)
    problems: list[Exception] = []
    for key, value in overrides.items():
        key = str(key).replace("::", "#")
        if key not in parser:
            problems.append(KeyError(f"--{key}: no config file defines the id {key!r}{_suggest(key, parser)}"))
            continue
        try:
            _check_type(key, value, parser.get(key))
        except ValueError as error:
            problems.append(error)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        lines = "\n".join(f"  {p.args[0]}" for p in problems)
        raise ValueError(f"{len(problems)} bad command-line overrides:\n{lines}")
    logger.debug("checked %d command-line overrides", len(overrides))
