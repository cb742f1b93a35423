"""Logging set-up for the command-line entry points."""

from __future__ import annotations

import logging

__all__ = ["setup_logging"]


def setup_logging(level: int | str = logging.INFO) -> None:
    """One line per record, ``time level logger: message``, on stderr (idempotent)."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
