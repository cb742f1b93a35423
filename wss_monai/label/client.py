"""A small MONAI Label client on the standard library: what the tests and the recorded session send.

Every call returns ``(status, body)`` and never raises on a 4xx / 5xx answer, so that malformed
requests can be checked for their status and message.

Example:
    >>> body, content_type = multipart({"params": "{}"}, {"label": ("s.nii.gz", b"\\x00")})
    >>> content_type.startswith("multipart/form-data; boundary="), b'name="label"; filename="s.nii.gz"' in body
    (True, True)
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping
from pathlib import Path

__all__ = ["LabelClient", "multipart"]

logger = logging.getLogger(__name__)


def multipart(fields: Mapping[str, str], files: Mapping[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    """``(body, content type)`` of a ``multipart/form-data`` request with text ``fields`` and ``files``."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, content) in files.items():
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        parts.append(head.encode() + content + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class LabelClient:
    """Requests to a MONAI Label server at ``url`` (e.g. ``http://127.0.0.1:8000``)."""

    def __init__(self, url: str, timeout: float = 600.0):
        self.url, self.timeout = url.rstrip("/"), timeout

    def send(self, method: str, path: str, query: Mapping | None = None, body: bytes | None = None,
             content_type: str | None = None) -> tuple[int, bytes]:  # fmt: skip
        """``(status, body)`` of one request."""
        url = f"{self.url}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        request = urllib.request.Request(url, data=body, method=method)
        if content_type:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def wait(self, seconds: float = 180.0) -> dict:
        """Polls ``/info/`` until the server answers; returns the info.

        Raises:
            TimeoutError: no answer within ``seconds``.
        """
        deadline = time.monotonic() + seconds
        while True:
            try:
                status, body = self.send("GET", "/info/")
                if status == 200:
                    return json.loads(body)
            except (urllib.error.URLError, ConnectionError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answer from {self.url}/info/ within {seconds} s")
            time.sleep(1.0)

    def infer(self, model: str, image: str | None = None, params: Mapping | None = None,
              label: str | Path | None = None, upload: str | Path | None = None) -> tuple[int, bytes]:  # fmt: skip
        """``POST /infer/<model>?image=<id>&output=image``; ``label``: scribbles, ``upload``: an image file."""
        query = {"output": "image", **({"image": image} if image is not None else {})}
        files = {} if label is None else {"label": (Path(label).name, Path(label).read_bytes())}
        files.update({} if upload is None else {"file": (Path(upload).name, Path(upload).read_bytes())})
        body, content_type = multipart({"params": json.dumps(dict(params or {}))}, files)
        return self.send("POST", f"/infer/{model}", query, body, content_type)

    def save_label(self, image: str, label: str | Path | bytes, tag: str, params: Mapping | None = None,
                   filename: str = "label.nii.gz") -> tuple[int, bytes]:  # fmt: skip
        """``PUT /datastore/label?image=<id>&tag=<tag>`` with a label file (a path, or its bytes)."""
        content = label if isinstance(label, bytes) else Path(label).read_bytes()
        body, content_type = multipart({"params": json.dumps(dict(params or {}))}, {"label": (filename, content)})
        return self.send("PUT", "/datastore/label", {"image": image, "tag": tag}, body, content_type)

    def train(self, model: str, params: Mapping | None = None, run_sync: bool = True) -> tuple[int, bytes]:
        """``POST /train/<model>`` with ``params`` (run synchronously by default)."""
        body = json.dumps(dict(params or {})).encode()
        query = {"run_sync": str(run_sync).lower()}
        return self.send("POST", f"/train/{model}", query, body, "application/json")
