"""A job's state for the page and the API, from its folder and the Celery result backend.

The worker's ``result.json`` is the truth once it exists; before that, Celery's state says
queued (PENDING), running (STARTED / PROGRESS with a stage and fraction) or failed (FAILURE: the
hard time limit killed the task, or the worker died). Each is mapped explicitly. A job that has
been queued or running for longer than it possibly could is checked against the broker and failed
as ``lost`` when its message is gone (``worker/sweep.py``).
"""

from __future__ import annotations

import logging

from flask import current_app, url_for

from detector.config import get_settings
from jobstore import Job, JobStore
from worker.sweep import due, failure_error, hard_limit_seconds, stale_seconds, sweep_app

log = logging.getLogger(__name__)

# Every stage a job's status can name, with the words the job page shows while it lasts (the page
# gets them from ``stage_text``; static/js/job.js reads them there). The worker reports download
# and frames, the library frames, faces, scoring and encoding; the rest are this view's.
STAGE_TEXT = {
    "queued": "Waiting for a worker…",
    "starting": "Starting…",
    "download": "Downloading the video…",
    "frames": "Reading frames…",
    "faces": "Finding and scoring faces…",
    "scoring": "Scoring faces…",
    "encoding": "Drawing the annotated copy…",
    "done": "Done.",
    "unknown": "Status unavailable; retrying…",
}


def stage_text(job: Job) -> dict[str, str]:
    """The words for each stage of this job: a photo's faces are found first, then scored."""
    if job.kind == "image":
        return {**STAGE_TEXT, "faces": "Finding faces…"}
    return dict(STAGE_TEXT)


def stage_steps(job: Job) -> list[tuple[str, str]]:
    """The stages the worker reports for this kind of file, in order, each with its words in the
    page's list: a video's faces are found and scored in one pass over its frames ("faces")."""
    if job.kind == "image":
        return [("faces", "finding faces"), ("scoring", "scoring"), ("encoding", "drawing")]
    download = [("download", "download")] if job.source == "url" else []
    return [
        *download,
        ("frames", "reading frames"),
        ("faces", "finding and scoring faces"),
        ("encoding", "drawing the video"),
    ]


def _urls(job_id: str, result: dict) -> dict:
    out = dict(result)
    files = lambda name: url_for("analyze.job_file", job_id=job_id, name=name)  # noqa: E731
    # The size below which faces are reported, not scored: the page says it when none was judged.
    out.setdefault("min_face_size", get_settings().min_face_size)
    out["annotated_url"] = files(result["annotated"]) if result.get("annotated") else None
    out["evidence"] = [
        {
            **e,
            "crop_url": files(e["crop"]) if e.get("crop") else None,
            "heatmap_url": files(e["heatmap"]) if e.get("heatmap") else None,
        }
        for e in result.get("evidence") or []
    ]
    return out


def job_status(store: JobStore, job: Job) -> dict:
    status: dict = {
        "id": job.id,
        "state": "queued",
        "stage": "queued",
        "progress": 0.0,
        "created": job.created,
        "source": {"type": job.source, "filename": job.filename, "url": job.url},
        "status_url": url_for("api.job", job_id=job.id),
        "page_url": url_for("analyze.job_page", job_id=job.id),
        "json_url": url_for("api.job_json", job_id=job.id),
        "result": None,
        "error": None,
    }
    result = store.result(job.id)
    if result is not None:
        # A file with no face to judge is a finished analysis with a result, not a failure.
        ok = result.get("status") in ("ok", "no_face")
        status.update(state="done" if ok else "failed", stage="done", progress=1.0)
        if ok:
            status["result"] = _urls(job.id, result)
        else:
            status["error"] = {"code": result.get("error_code", "error"), "message": result.get("error", "")}
        return status
    celery = current_app.extensions["celery"]
    try:
        async_result = celery.AsyncResult(job.id)
        state, info = async_result.state, async_result.info
    except Exception as exc:  # the backend is down: say so, do not fail the page
        log.warning("job %s: result backend unavailable: %s", job.id, exc)
        status.update(state="unknown", stage="unknown")
        return status
    if state in ("PENDING", "STARTED", "PROGRESS") and _lost(job):
        return job_status(store, store.load(job.id) or job)
    if state == "PENDING":
        return status
    if state == "STARTED":
        status.update(state="running", stage="starting")
    elif state == "PROGRESS" and isinstance(info, dict):
        status.update(state="running", stage=info.get("stage", "running"), progress=info.get("progress", 0.0))
    elif state == "SUCCESS" and isinstance(info, dict) and info.get("status") == "error":
        # The task ended but could not write result.json (a full disk): its return value says why.
        error = {"code": info.get("error_code", "error"), "message": info.get("error", "")}
        status.update(state="failed", stage="done", progress=1.0, error=error)
    elif state == "SUCCESS":
        status.update(state="running", stage="encoding", progress=0.99)  # result.json is being written
    elif state == "REVOKED":
        status.update(state="failed", error={"code": "cancelled", "message": "the job was cancelled"})
    else:  # FAILURE, and anything unexpected
        log.error("job %s: task ended in %s: %r", job.id, state, info)
        status.update(state="failed", stage="done", progress=1.0, error=failure_error(info))
    return status


def _lost(job: Job) -> bool:
    """For a job older than it could be: fail it now if its message is gone (``worker/sweep.py``)."""
    config = current_app.config
    if not due(job, stale_seconds(config), hard_limit_seconds(config)):
        return False
    return job.id in sweep_app(current_app._get_current_object(), jobs=[job])  # type: ignore[attr-defined]
