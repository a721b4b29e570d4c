"""The API's input: a file or a URL, as multipart form fields or (for a URL) JSON.

Not a FlaskForm: CSRF is checked in the view, where a valid API key may stand in for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Request
from werkzeug.datastructures import FileStorage


@dataclass
class AnalyzeRequest:
    file: FileStorage | None
    url: str | None

    @classmethod
    def from_request(cls, request: Request) -> AnalyzeRequest:
        upload = request.files.get("file")
        if upload is not None and not upload.filename and upload.content_length == 0:
            upload = None
        url = request.form.get("url")
        if url is None and request.is_json:
            body = request.get_json(silent=True) or {}
            url = body.get("url") if isinstance(body, dict) else None
        return cls(upload, url.strip() if isinstance(url, str) and url.strip() else None)
