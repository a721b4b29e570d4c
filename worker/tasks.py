"""The heavy work: analysing a job, judging one webcam frame, scoring quiz faces, retention.

Tasks take ids and paths, never file bytes; each re-reads its inputs from the shared data folder.
Every failure the user can cause ends as a ``result.json`` with a plain-words message and the job
marked failed, never as an exception that kills the worker; anything unexpected is logged with the
job id and shown as a generic message, without a traceback.

An analysis writes its annotated media and evidence in a hidden ``.work/`` folder inside the job's
folder and moves them next to ``job.json`` only when it succeeded; ``result.json`` comes last. A
failed, killed or timed-out analysis leaves nothing half-written under a name that is served.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from flask import current_app

from detector.annotate import heatmap_overlay, save_image
from detector.errors import ModelNotFound, UnmaskError
from detector.media import load_image
from detector.results import face_verdict, file_verdict
from jobstore import JobStore, StorageUnavailable, check_storage, expire_data

from .analysis import get_analyzer, score_whole_image
from .download import download_video
from .live import LIVE_MIN_CONFIDENCE

log = logging.getLogger(__name__)

INTERNAL_ERROR = "internal error while analysing the file"

# Deliveries of one job before it is failed: a file that kills its worker is not retried forever.
MAX_ATTEMPTS = 2

# The share of the progress bar the download takes for link jobs.
_DOWNLOAD_SHARE = 0.3


class ProgressReporter:
    """Forwards (stage, fraction) to the task's state, at most a few times a second."""

    def __init__(self, task, offset: float = 0.0, interval: float = 0.25) -> None:
        self.task = task
        self.offset = offset
        self.interval = interval
        self._last = 0.0
        self._stage = ""

    def __call__(self, stage: str, fraction: float) -> None:
        now = time.monotonic()
        if stage == self._stage and now - self._last < self.interval:
            return
        self._stage, self._last = stage, now
        overall = self.offset + (1.0 - self.offset) * max(0.0, min(1.0, fraction))
        self.publish(stage, overall)

    def publish(self, stage: str, overall: float) -> None:
        if self.task.request.id is None:  # called directly (tests), not through a worker
            return
        try:
            self.task.update_state(state="PROGRESS", meta={"stage": stage, "progress": round(overall, 3)})
        except Exception as exc:  # Redis restarting: the analysis goes on, only the bar pauses
            log.warning("job %s: progress not published: %s", self.task.request.id, exc)


def _error(code: str, message: str) -> dict:
    return {"status": "error", "error_code": code, "error": message}


def _save_evidence(result, folder: Path) -> list[dict]:
    out = []
    for i, face in enumerate(result.faces):
        if face.crop is None:
            continue
        entry = {
            "index": i,
            "box": list(face.box),
            "fake_probability": None if face.fake_probability is None else round(face.fake_probability, 4),
            "verdict": face.verdict,  # the library's: real, uncertain or fake
            "track_id": face.track_id,
            "crop": save_image(face.crop, folder / f"face-{i}.jpg").name,
            "heatmap": None,
        }
        if face.heatmap is not None:
            entry["heatmap"] = save_image(
                heatmap_overlay(face.crop, face.heatmap), folder / f"face-{i}-heat.jpg"
            ).name
        out.append(entry)
    return out


def _payload(result, folder: Path) -> dict:
    data = result.to_json()
    data.pop("path", None)
    annotated = data.pop("annotated_path", None)
    data["annotated"] = Path(annotated).name if annotated else None
    data["evidence"] = _save_evidence(result, folder)
    if result.status == "no_face":
        # No face to judge is a result (the status API shows it as done), not a failure; the
        # reason stays under error_code / error too, where readers of result.json look for it.
        data["error_code"] = "no_face"
        data["error"] = result.message or "no face was found"
    return data


def _publish_outputs(work: Path, folder: Path) -> None:
    """Move a finished analysis's files next to ``job.json`` (each rename is atomic)."""
    for item in work.iterdir():
        os.replace(item, folder / item.name)
    work.rmdir()


@shared_task(bind=True, name="worker.tasks.analyze_job")
def analyze_job(self, job_id: str) -> dict:
    """Download (for links), analyse, annotate and keep the evidence for one job."""
    config = current_app.config
    store = JobStore(config["DATA_DIR"])
    job = store.load(job_id)
    if job is None:
        log.warning("job %s: folder missing (expired?)", job_id)
        return {"status": "error"}
    ended = store.result(job_id)
    if ended is not None:  # a repeated delivery of a job that has ended (or was failed as lost)
        log.warning("job %s: already has its outcome; delivery ignored", job_id)
        return {"status": ended.get("status", "error")}
    folder = store.folder(job_id)
    job.attempts += 1
    job.started = time.time()
    try:
        store.save(job)
    except OSError as exc:  # nothing can be written: the result backend carries the outcome
        storage = StorageUnavailable.from_os_error(exc)
        if storage is None:
            raise
        log.error("job %s: cannot write to its folder: %s", job_id, exc)
        return {"status": "error", "error_code": storage.code, "error": storage.message}
    if job.attempts > MAX_ATTEMPTS:
        log.error("job %s: delivered %d times, the worker died each time; failing it", job_id, job.attempts)
        store.clear_outputs(job_id)
        payload = _error("worker_lost", "the worker stopped unexpectedly while analysing this file, twice")
        payload["job_id"] = job_id
        store.write_result(job_id, payload)
        return {"status": "error", "error_code": "worker_lost", "error": payload["error"]}
    started = time.time()
    path: Path | None = None
    work = folder / ".work"
    shutil.rmtree(work, ignore_errors=True)  # what a killed delivery left behind
    try:
        check_storage(config["DATA_DIR"], int(float(config["MIN_FREE_MB"]) * 2**20))
        work.mkdir()
        analyzer = get_analyzer()
        settings = analyzer.settings
        if job.source == "url":
            reporter = ProgressReporter(self)
            reporter.publish("download", 0.0)
            path = download_video(
                job.url or "",
                folder,
                config["ALLOWED_URL_HOSTS"],
                max_bytes=int(config["MAX_DOWNLOAD_MB"]) * 1024 * 1024,
                max_seconds=settings.max_video_seconds,
                progress=lambda f: reporter("download", f * _DOWNLOAD_SHARE),
                stem="input",
            )
            job.input = path.name
            store.save(job)
            reporter = ProgressReporter(self, offset=_DOWNLOAD_SHARE)
        else:
            path = folder / (job.input or "")
            reporter = ProgressReporter(self)
        reporter.publish("frames", reporter.offset)
        result = analyzer.analyze(path, annotate_dir=work, progress=reporter)
        payload = _payload(result, work)
        _publish_outputs(work, folder)
    except ModelNotFound as exc:
        log.error("job %s: %s", job_id, exc)  # the operator's problem; the path stays in the log
        payload = _error(exc.code, "the detection model is not installed on this server")
    except UnmaskError as exc:
        if exc.detail:  # the decoder's own words, for the operator only
            log.info("job %s: %s (%s)", job_id, exc, exc.detail)
        payload = _error(exc.code, str(exc))
    except SoftTimeLimitExceeded:
        limit = int(config["TASK_TIME_LIMIT"])
        payload = _error("timeout", f"the analysis took longer than the {limit}-second limit and was stopped")
    except OSError as exc:
        storage = StorageUnavailable.from_os_error(exc)
        if storage is None:
            log.exception("job %s: internal error", job_id)
            payload = _error("internal", INTERNAL_ERROR)
        else:
            log.error("job %s: storage: %s", job_id, exc)
            payload = _error(storage.code, storage.message)
    except Exception:
        log.exception("job %s: internal error", job_id)
        payload = _error("internal", INTERNAL_ERROR)
    finally:
        if path is not None and path.is_file():
            path.unlink(missing_ok=True)  # the upload is not needed once analysed
        shutil.rmtree(work, ignore_errors=True)  # a failed analysis's partial files
    if payload["status"] == "error":
        store.clear_outputs(job_id)
    payload["job_id"] = job_id
    payload["seconds_total"] = round(time.time() - started, 3)
    try:
        store.write_result(job_id, payload)
    except OSError as exc:  # the disk is full even for the outcome: the result backend carries it
        log.error("job %s: cannot write result.json: %s", job_id, exc)
        storage = StorageUnavailable.from_os_error(exc)
        if payload["status"] != "error":  # a result that cannot be kept is not a result
            payload = _error(storage.code, storage.message) if storage else _error("internal", INTERNAL_ERROR)
        store.clear_outputs(job_id)
    log.info("job %s: %s %s", job_id, payload["status"], payload.get("error_code", ""))
    return {k: payload[k] for k in ("status", "error_code", "error") if k in payload}


@shared_task(name="worker.tasks.detect_frame", soft_time_limit=20, time_limit=30)
def detect_frame(path: str) -> dict:
    """Faces and scores for one webcam frame; the frame file is deleted whatever happens."""
    try:
        analyzer = get_analyzer()
        image = load_image(path, analyzer.settings)
        faces = analyzer.detector.detect(image)
        if analyzer.detector.name == "blazeface":  # the browser's detector: the same live rule
            faces = [f for f in faces if f.confidence >= LIVE_MIN_CONFIDENCE]
        results = analyzer.score_faces(image, faces)
        # each face's verdict is the library's (detector.results.face_verdict): real, uncertain, fake
        return {
            "width": image.shape[1],
            "height": image.shape[0],
            "threshold": analyzer.threshold,
            "thresholds": analyzer.thresholds.to_json(),
            "faces": [face.to_json() for face in results],
        }
    except UnmaskError as exc:
        return {"error": str(exc), "error_code": exc.code}
    except Exception:
        log.exception("webcam frame: internal error")
        return {"error": INTERNAL_ERROR, "error_code": "internal"}
    finally:
        Path(path).unlink(missing_ok=True)


@shared_task(name="worker.tasks.score_images", soft_time_limit=60, time_limit=90)
def score_images(paths: list[str]) -> list[dict]:
    """The model's fake probability for each quiz picture (its most suspicious face), and its
    verdict by the library's photo rule."""
    analyzer = get_analyzer()
    out = []
    for path in paths:
        try:
            image = load_image(path, analyzer.settings)
            results = analyzer.score_faces(image, analyzer.detector.detect(image))
            scores = [r.fake_probability for r in results if r.fake_probability is not None]
            if scores:
                p, verdict = max(scores), file_verdict(r.verdict for r in results)
            else:  # a tight crop the detector misses: the whole picture is the face
                p = score_whole_image(image)
                verdict = face_verdict(p, analyzer.thresholds)
            out.append({"fake_probability": round(float(p), 4), "verdict": verdict, "faces": len(scores)})
        except UnmaskError as exc:
            out.append({"fake_probability": None, "error": str(exc)})
        except Exception:
            log.exception("quiz scoring failed for %s", path)
            out.append({"fake_probability": None, "error": INTERNAL_ERROR})
    return out


@shared_task(name="worker.tasks.cleanup")
def cleanup() -> dict:
    """Delete jobs, webcam frames and quiz rounds older than the retention."""
    removed = expire_data(current_app.config["DATA_DIR"], float(current_app.config["RETENTION_HOURS"]))
    log.info("retention: removed %s", removed)
    return removed
