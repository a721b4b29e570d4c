"""The JSON API: ``POST /api/v1/analyze`` (file or URL) and ``GET /api/v1/jobs/<id>``.

Browsers and scripts share one rule for state-changing requests: a CSRF token
(``X-CSRFToken`` header or ``csrf_token`` field, from ``GET /api/v1/csrf`` with its session
cookie), unless the server is configured with API keys and the request brings one as
``Authorization: Bearer <key>`` (no cookie, so nothing a foreign page could ride on).
"""

from __future__ import annotations

import hmac

from flask import Blueprint, abort, current_app, jsonify, request, url_for
from flask_wtf.csrf import generate_csrf

from detector.errors import UnmaskError

from ..errors import error_response
from ..extensions import csrf
from ..status import job_status
from ..submit import QueueUnavailable, store, submit_upload, submit_url
from .forms import AnalyzeRequest

bp = Blueprint("api", __name__, url_prefix="/api/v1")


HOW_TO_AUTHENTICATE = (
    "send 'Authorization: Bearer <key>' (on a server with API keys), or the session cookie and "
    "an 'X-CSRFToken' header from GET /api/v1/csrf"
)


def _refuse_unauthorized():
    """An API answer for a request that proves nothing, or the wrong thing (None: go on).

    A script needs to know which header to send: 401 when it sent neither an API key nor a CSRF
    token, 403 when it sent a key this server does not accept. A token that is sent but does
    not match its session is left to ``csrf.protect()`` (a 400 ``csrf``, worded for the API).
    """
    header = request.headers.get("Authorization")
    if header is not None:
        keys = current_app.config["API_KEYS"]
        if not keys:
            return error_response(
                403,
                "api_keys_disabled",
                "this server accepts no API keys (UNMASK_API_KEYS is not set): send the session "
                "cookie and an 'X-CSRFToken' header from GET /api/v1/csrf instead",
            )
        given = header[7:].strip().encode() if header.startswith("Bearer ") else b""
        if not given:
            return error_response(
                401, "unauthorized", f"malformed Authorization header: {HOW_TO_AUTHENTICATE}"
            )
        if not any(hmac.compare_digest(given, key.encode()) for key in keys):
            return error_response(403, "bad_api_key", "this API key is not accepted by this server")
        return None
    token = request.headers.get("X-CSRFToken") or request.headers.get("X-CSRF-Token")
    if not token and not request.form.get("csrf_token"):
        response, status = error_response(
            401, "unauthorized", f"authentication required: {HOW_TO_AUTHENTICATE}"
        )
        return response, status, {"WWW-Authenticate": 'Bearer realm="unmask"'}
    csrf.protect()
    return None


@bp.get("/csrf")
def csrf_token():
    """A CSRF token for scripts; send it back with the session cookie this response sets."""
    return jsonify(csrf_token=generate_csrf())


@bp.post("/analyze")
@csrf.exempt
def analyze():
    refused = _refuse_unauthorized()
    if refused is not None:
        return refused
    req = AnalyzeRequest.from_request(request)
    if (req.file is None) == (req.url is None):
        return error_response(
            400, "invalid", "send exactly one of: a file (field 'file') or a link (field 'url')"
        )
    try:
        job = submit_upload(req.file) if req.file is not None else submit_url(req.url or "")
    except UnmaskError as exc:
        return error_response(400, exc.code, str(exc))
    except QueueUnavailable as exc:
        return error_response(503, "queue_unavailable", str(exc))
    status_url = url_for("api.job", job_id=job.id)
    body = {
        "id": job.id,
        "state": "queued",
        "status_url": status_url,
        "page_url": url_for("analyze.job_page", job_id=job.id),
    }
    return jsonify(body), 202, {"Location": status_url}


@bp.get("/jobs/<job_id>")
def job(job_id: str):
    jobs = store()
    found = jobs.load(job_id)
    if found is None:
        return error_response(404, "not_found", "no such job (it may have expired)")
    return jsonify(job_status(jobs, found))


@bp.get("/jobs/<job_id>/result.json")
def job_json(job_id: str):
    """The whole status with its result, as a file to download."""
    jobs = store()
    found = jobs.load(job_id)
    if found is None:
        abort(404)
    response = jsonify(job_status(jobs, found))
    response.headers["Content-Disposition"] = f'attachment; filename="unmask-{job_id}.json"'
    return response
