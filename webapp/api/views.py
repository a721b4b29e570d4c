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


def _api_key_ok() -> bool:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return False
    given = header[7:].strip().encode()
    return any(hmac.compare_digest(given, key.encode()) for key in current_app.config["API_KEYS"])


@bp.get("/csrf")
def csrf_token():
    """A CSRF token for scripts; send it back with the session cookie this response sets."""
    return jsonify(csrf_token=generate_csrf())


@bp.post("/analyze")
@csrf.exempt
def analyze():
    if not _api_key_ok():
        csrf.protect()
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
