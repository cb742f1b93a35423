"""MONAI Label's FastAPI app with answers of 4xx, never 500, for malformed requests.

Start it through MONAI Label's launcher (its settings, app folder and studies), naming this app:

    monailabel start_server --app apps/wss_label --studies DIR --conf run_dir RUN \\
        --uvicorn_app wss_monai.label.app.server:app

Added to MONAI Label's own app before it starts: a check of ``POST /infer/<model>`` and
``POST /train/<model>`` (404 for an unknown model, 400 for an inference without an image, before
MONAI Label answers 500 or starts a background task that fails later), and handlers that turn a
``params`` form that is not JSON, MONAI Label's input errors and its own 500 answers to requests
without an input (:data:`INPUT_ERRORS`) into 400.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import parse_qs

from fastapi import Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse
from monailabel.app import app
from monailabel.interfaces.exception import MONAILabelError, MONAILabelException
from monailabel.interfaces.utils.app import app_instance
from starlette.exceptions import HTTPException

__all__ = ["INPUT_ERRORS", "app"]

logger = logging.getLogger(__name__)

INPUT_ERRORS = ("Neither Image nor File",)
"""How MONAI Label's own 500 answers to a request that lacks its input begin."""


def _answer(status: int, message: str) -> JSONResponse:
    logger.warning("answered %d: %s", status, message)
    return JSONResponse(status_code=status, content={"detail": message})


@app.middleware("http")
async def check_model_requests(request: Request, call_next):
    """404 for an unknown model of ``/infer`` or ``/train``; 400 for an inference with no image at all."""
    parts = [p for p in request.url.path.split("/") if p]
    if request.method == "POST" and len(parts) == 2 and parts[0] in ("infer", "train"):
        info = app_instance().info()
        known = info.get("models" if parts[0] == "infer" else "trainers", {})
        if parts[1] not in known:
            kind = "model" if parts[0] == "infer" else "trainer"
            return _answer(404, f"no {kind} {parts[1]!r}; known: {sorted(known)}")
        query = parse_qs(request.url.query)
        multipart = request.headers.get("content-type", "").startswith("multipart/form-data")
        if parts[0] == "infer" and not query.get("image") and not query.get("session_id") and not multipart:
            return _answer(400, "no image: pass ?image=<datastore id> or upload a file")
    return await call_next(request)


@app.exception_handler(json.JSONDecodeError)
async def bad_json(request: Request, error: json.JSONDecodeError):
    return _answer(400, f"params is not valid JSON: {error}")


@app.exception_handler(MONAILabelException)
async def monailabel_error(request: Request, error: MONAILabelException):
    status = 400 if error.error in (MONAILabelError.INVALID_INPUT,) else 500
    return _answer(status, error.msg)


@app.exception_handler(HTTPException)
async def input_error(request: Request, error: HTTPException):
    """MONAI Label's 500 for a missing input becomes 400; every other HTTP error is answered as FastAPI does."""
    if error.status_code == 500 and str(error.detail).startswith(INPUT_ERRORS):
        return _answer(400, f"no image: pass ?image=<datastore id> or upload a file ({error.detail})")
    return await http_exception_handler(request, error)
