"""Errors as users see them: plain words, the right status code, never a traceback.

Requests from scripts and ``fetch()`` (the API, or ``Accept: application/json``) get
``{"error": {"code": ..., "message": ...}}``; browsers get a page.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, make_response, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def wants_json() -> bool:
    if request.path.startswith("/api/"):
        return True
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return (
        best == "application/json" and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]
    )


def error_response(status: int, code: str, message: str) -> tuple[Response | str, int]:
    if wants_json():
        return jsonify(error={"code": code, "message": message}), status
    return render_template("error.html", status=status, message=message), status


def refuse(status: int, code: str, message: str, retry_after: int) -> Response:
    """An error answer that tells the client when to try again (a full disk, a busy queue)."""
    response = make_response(*error_response(status, code, message))
    response.headers["Retry-After"] = str(retry_after)
    return response


def init_app(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError):
        if request.path.startswith("/api/"):  # a script: say what to send, not "reload the page"
            return error_response(
                400,
                "csrf",
                "the CSRF token does not match the session cookie (or has expired): get both from "
                "GET /api/v1/csrf and send the token as 'X-CSRFToken', or use 'Authorization: Bearer <key>'",
            )
        return error_response(
            400, "csrf", "the form's security token is missing or expired: reload the page and try again"
        )

    @app.errorhandler(413)
    def too_large(exc: HTTPException):
        mb = app.config["MAX_UPLOAD_MB"]
        return error_response(413, "too_large", f"the file is larger than the {mb} MB limit")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        names = {404: "not found", 405: "this address does not accept that method"}
        message = names.get(exc.code or 500, (exc.description or exc.name or "error").rstrip("."))
        return error_response(exc.code or 500, (exc.name or "error").lower().replace(" ", "_"), message)

    @app.errorhandler(Exception)
    def internal_error(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal", "internal error; the problem has been logged")

    @app.after_request
    def security_headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response
