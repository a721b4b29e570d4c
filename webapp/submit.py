"""Turning an upload or a link into a queued job: validate, store, enqueue. Nothing heavy.

Shared by the pages and the API so both accept and refuse exactly the same inputs. The server
judges an upload by its first bytes (not its name or the browser's MIME type); decoding it
properly is the worker's job, where a corrupt file becomes a failed job with a clear message.
"""

from __future__ import annotations

import logging
import secrets
import threading

from flask import current_app
from kombu.exceptions import OperationalError
from werkzeug.datastructures import FileStorage

from detector.errors import UnmaskError, UnsupportedMedia
from detector.media import sniff
from jobstore import EXTENSIONS, Job, JobStore, new_id
from worker.download import check_url

log = logging.getLogger(__name__)


class QueueUnavailable(Exception):
    """The broker (Redis) cannot take the job right now."""


def store() -> JobStore:
    return JobStore(current_app.config["DATA_DIR"])


# Celery's Redis result backend keeps one pub/sub connection per process, which is not safe to
# use from several threads at once (gunicorn runs threads): every send and wait takes this lock.
celery_lock = threading.Lock()


def task(name: str):
    """A task bound to this app's Celery (its broker), whatever app was created last."""
    return current_app.extensions["celery"].tasks[f"worker.tasks.{name}"]


def _clean_name(name: str | None) -> str | None:
    if not name:
        return None
    return "".join(ch for ch in name.replace("\\", "/").rsplit("/", 1)[-1] if ch.isprintable())[:120]


def submit_upload(upload: FileStorage) -> Job:
    """Store an uploaded photo or video under a random name and queue it."""
    head = upload.stream.read(64)
    upload.stream.seek(0)
    if not head:
        raise UnsupportedMedia("the file is empty")
    media = sniff(head)
    if media is None:
        raise UnsupportedMedia(
            "this is not a photo or video we can read: the content is none of JPEG, PNG, WebP, "
            "GIF, BMP, TIFF, AVIF, HEIC/HEIF, MP4/MOV, WebM/MKV or AVI (whatever the file name says)"
        )
    job = Job(id=new_id(), source="upload", filename=_clean_name(upload.filename), kind=media.kind)
    job.input = f"{secrets.token_hex(8)}{EXTENSIONS.get(media.format, '.bin')}"
    folder = store().create(job)
    upload.save(folder / job.input)
    return _enqueue(job)


def submit_url(url: str) -> Job:
    """Queue a link; the worker checks the address again and downloads it."""
    check_url(url, current_app.config["ALLOWED_URL_HOSTS"])
    job = Job(id=new_id(), source="url", url=url.strip(), kind="video")
    store().create(job)
    return _enqueue(job)


def _enqueue(job: Job) -> Job:
    try:
        with celery_lock:
            task("analyze_job").apply_async(
                args=[job.id],
                task_id=job.id,
                retry=True,
                retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1},
            )
    except (OperationalError, OSError, RuntimeError) as exc:  # broker or result store unreachable
        log.error("job %s: cannot reach the queue: %s", job.id, exc)
        store().delete(job.id)
        raise QueueUnavailable("the job queue is not reachable right now; please try again shortly") from None
    log.info("job %s: queued (%s)", job.id, job.source)
    return job


__all__ = ["QueueUnavailable", "UnmaskError", "submit_upload", "submit_url"]
