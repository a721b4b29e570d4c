"""Pages for analysing media: home (upload), link, and the job page with its result files.

Views only validate, store, enqueue and redirect (or answer JSON to ``fetch()``); the job page
polls the API for progress and draws the result.
"""

from __future__ import annotations

import re

from flask import (
    Blueprint,
    abort,
    current_app,
    jsonify,
    redirect,
    render_template,
    send_file,
    send_from_directory,
    url_for,
)

from detector.errors import UnmaskError

from ..errors import error_response, wants_json
from ..status import stage_steps, stage_text
from ..submit import QueueUnavailable, store, submit_upload, submit_url
from .forms import LinkForm, UploadForm

bp = Blueprint("analyze", __name__)

# Only what the worker produced is served: never the input or the job's bookkeeping.
_RESULT_FILE = re.compile(r"^(face-\d+(-heat)?\.jpg|[A-Za-z0-9_-]+\.annotated\.(jpg|mp4))$")


def _accepted(job):
    page = url_for("analyze.job_page", job_id=job.id)
    if wants_json():
        return jsonify(id=job.id, page_url=page, status_url=url_for("api.job", job_id=job.id)), 202
    return redirect(page, code=303)


def _form_errors(form) -> str:
    return "; ".join(m for messages in form.errors.values() for m in messages)


@bp.route("/", methods=["GET", "POST"])
def index():
    form = UploadForm()
    return _submit_or_show(form, "index.html", lambda: submit_upload(form.file.data))


@bp.route("/link", methods=["GET", "POST"])
def link():
    form = LinkForm()
    return _submit_or_show(form, "link.html", lambda: submit_url(form.url.data))


def _submit_or_show(form, template: str, submit):
    """Both forms: enqueue a valid submission, refuse a bad one in plain words, else show the page."""
    if form.validate_on_submit():
        try:
            return _accepted(submit())
        except UnmaskError as exc:
            return _refuse(form, template, 400, exc.code, str(exc))
        except QueueUnavailable as exc:
            return _refuse(form, template, 503, "queue_unavailable", str(exc))
    if form.is_submitted():
        return _refuse(form, template, 400, "invalid", _form_errors(form))
    return render_template(
        template,
        form=form,
        max_mb=current_app.config["MAX_UPLOAD_MB"],
        hosts=current_app.config["ALLOWED_URL_HOSTS"],
    )


def _refuse(form, template: str, status: int, code: str, message: str):
    if wants_json():
        return error_response(status, code, message)
    return (
        render_template(
            template,
            form=form,
            error=message,
            max_mb=current_app.config["MAX_UPLOAD_MB"],
            hosts=current_app.config["ALLOWED_URL_HOSTS"],
        ),
        status,
    )


@bp.get("/favicon.ico")
def favicon():
    """Browsers ask for /favicon.ico on every site, whatever the page links to."""
    return send_from_directory(current_app.static_folder or "static", "favicon.ico", max_age=86400)


@bp.get("/jobs/<job_id>")
def job_page(job_id: str):
    job = store().load(job_id)
    if job is None:
        abort(404)
    return render_template(
        "job.html",
        job=job,
        status_url=url_for("api.job", job_id=job.id),
        stages=stage_steps(job),
        stage_text=stage_text(job),
    )


@bp.get("/jobs/<job_id>/files/<name>")
def job_file(job_id: str, name: str):
    if not _RESULT_FILE.match(name):
        abort(404)
    path = store().file(job_id, name)
    if path is None:
        abort(404)
    # conditional=True answers Range requests, so the annotated video can be seeked.
    return send_file(path, conditional=True, max_age=3600)
