"""Request errors of the app: raised as FastAPI ``HTTPException`` so that the server answers 4xx, not 500."""

from __future__ import annotations

from fastapi import HTTPException

__all__ = ["bad_request", "not_found", "unprocessable"]


def bad_request(message: str) -> HTTPException:
    """400: the request lacks something (an image, a scribble)."""
    return HTTPException(status_code=400, detail=message)


def not_found(message: str) -> HTTPException:
    """404: an unknown model, image or label."""
    return HTTPException(status_code=404, detail=message)


def unprocessable(message: str) -> HTTPException:
    """422: an upload that cannot be used (unreadable, another grid, unknown values)."""
    return HTTPException(status_code=422, detail=message)
