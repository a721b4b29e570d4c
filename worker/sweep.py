"""Jobs whose message was lost end as failed with a reason; none stays "queued" forever.

A job is *live* while its message waits in the broker's queue lists or is held by a worker:
Celery's Redis transport keeps every delivered, unacknowledged message in its ``unacked`` hash
until the task ends, and hands it back to the queue when the worker that held it is gone. A job
with no ``result.json``, no message in either place, queued more than
``UNMASK_STALE_JOB_MINUTES`` ago and not taken by a worker within the hard time limit can no
longer end on its own (Redis lost its data, or was flushed): the sweep fails it with what the
result backend knows (``timeout``, ``worker_lost``) or else with ``lost``.

Every worker sweeps on its own timer (a bootstep, no beat needed), at most once a minute; the
status view checks the one job it is asked about. Failing a job never replaces an outcome a task
wrote meanwhile (``JobStore.fail`` writes only when there is none), and a task delivered after
its job was failed does nothing.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable

import redis
from celery import bootsteps
from flask import Flask

from jobstore import Job, JobStore

log = logging.getLogger(__name__)

LOST_MESSAGE = (
    "the job was lost by the queue (the server restarted while it waited) and will not run; "
    "please send the file again"
)
# After the hard time limit, how long a job a worker took may still write its outcome.
GRACE_SECONDS = 60.0
# Kombu's Redis transport keeps priorities 3, 6 and 9 in their own lists beside the queue's.
_PRIORITY_SEPARATOR = "\x06\x16"
_PRIORITY_STEPS = (3, 6, 9)
_UNACKED = "unacked"


def _queue_keys(queues: Iterable[str]) -> list[str]:
    keys = []
    for queue in queues:
        keys.append(queue)
        keys.extend(f"{queue}{_PRIORITY_SEPARATOR}{step}" for step in _PRIORITY_STEPS)
    return keys


def _task_id(message: object) -> str | None:
    if not isinstance(message, dict):
        return None
    headers = message.get("headers") or {}
    properties = message.get("properties") or {}
    return headers.get("id") or properties.get("correlation_id")


def live_task_ids(client: redis.Redis, queues: Iterable[str] = ("analysis",)) -> set[str]:
    """Ids of the tasks whose message is waiting in ``queues`` or held by a worker."""
    ids: set[str] = set()
    pipe = client.pipeline(transaction=False)
    for key in _queue_keys(queues):
        pipe.lrange(key, 0, -1)
    pipe.hvals(_UNACKED)
    *lists, unacked = pipe.execute()
    for raw in (raw for waiting in lists for raw in waiting):
        try:
            ids.add(_task_id(json.loads(raw)) or "")
        except ValueError:
            continue
    for raw in unacked:
        try:
            message = json.loads(raw)[0]  # [message, exchange, routing key]
        except (ValueError, IndexError, TypeError):
            continue
        ids.add(_task_id(message) or "")
    ids.discard("")
    return ids


def due(job: Job, stale_seconds: float, hard_limit_seconds: float, now: float | None = None) -> bool:
    """Old enough to be judged: queued long ago, and no worker can still be running it."""
    now = time.time() if now is None else now
    if now - job.created < stale_seconds:
        return False
    return job.started is None or now - job.started > hard_limit_seconds + GRACE_SECONDS


def failure_error(info: object) -> dict:
    """The plain-words error of a task Celery recorded as FAILURE (the task could not say it)."""
    name = type(info).__name__ if isinstance(info, BaseException) else ""
    if name == "TimeLimitExceeded":
        return {"code": "timeout", "message": "the analysis ran past its time limit and was stopped"}
    if name == "WorkerLostError":
        return {"code": "worker_lost", "message": "the worker analysing the file stopped unexpectedly"}
    return {"code": "internal", "message": "internal error while analysing the file"}


def _reason(celery, job_id: str) -> tuple[str, str]:
    """What the result backend says ended the job (a hard time limit, a lost worker), else lost."""
    if celery is not None:
        try:
            result = celery.AsyncResult(job_id)
            if result.state == "FAILURE":
                error = failure_error(result.info)
                return error["code"], error["message"]
        except Exception as exc:
            log.warning("job %s: result backend not read: %s", job_id, exc)
    return "lost", LOST_MESSAGE


def sweep(
    store: JobStore,
    client: redis.Redis,
    stale_seconds: float,
    hard_limit_seconds: float,
    celery=None,
    jobs: Iterable[Job] | None = None,
    queues: Iterable[str] = ("analysis",),
    now: float | None = None,
) -> dict[str, str]:
    """Fail the unfinished jobs (all, or ``jobs``) that can no longer end; returns id -> reason.

    Raises ``redis.RedisError`` when the broker cannot be read: then nothing is judged.
    """
    queues = tuple(queues)
    candidates = [
        job
        for job in (store.unfinished() if jobs is None else jobs)
        if due(job, stale_seconds, hard_limit_seconds, now)
    ]
    if not candidates:
        return {}
    missing = {job.id for job in candidates} - live_task_ids(client, queues)
    if missing:
        # A message moves from a queue list to the unacked hash in two steps; read again so one
        # caught between them is not judged lost.
        missing -= live_task_ids(client, queues)
    swept: dict[str, str] = {}
    for job_id in sorted(missing):
        fresh = store.load(job_id)
        if fresh is None or store.result(job_id) is not None:
            continue
        if not due(fresh, stale_seconds, hard_limit_seconds, now):
            continue  # a worker took it meanwhile
        code, message = _reason(celery, job_id)
        if store.fail(job_id, code, message):
            log.warning("job %s: no message in the broker and no worker on it; failed as %s", job_id, code)
            swept[job_id] = code
    return swept


def stale_seconds(config) -> float:
    return float(config["STALE_JOB_MINUTES"]) * 60


def hard_limit_seconds(config) -> float:
    return float(config["CELERY"]["task_time_limit"])


def _client(app: Flask) -> redis.Redis:
    client = app.extensions.get("unmask_sweep_redis")
    if client is None:
        url = app.config["CELERY"]["broker_url"]
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
        app.extensions["unmask_sweep_redis"] = client
    return client


def sweep_app(app: Flask, jobs: Iterable[Job] | None = None) -> dict[str, str]:
    """One sweep with the app's settings; a broker that cannot be reached skips it (logged)."""
    config = app.config
    try:
        return sweep(
            JobStore(config["DATA_DIR"]),
            _client(app),
            stale_seconds(config),
            hard_limit_seconds(config),
            celery=app.extensions.get("celery"),
            jobs=jobs,
        )
    except redis.RedisError as exc:
        log.warning("stale-job sweep skipped, broker unavailable: %s", exc)
        return {}


def sweep_interval(config) -> float:
    """Seconds between a worker's sweeps: a quarter of the stale age, at most a minute."""
    return min(60.0, max(1.0, stale_seconds(config) / 4))


def sweep_step(app: Flask) -> type[bootsteps.StartStopStep]:
    """A worker bootstep that sweeps on the worker's own timer (no beat, no thread)."""

    class StaleJobSweep(bootsteps.StartStopStep):
        requires = ("celery.worker.components:Timer",)

        def __init__(self, worker, **kwargs) -> None:
            super().__init__(worker, **kwargs)
            self.tref = None

        def start(self, worker) -> None:
            self.tref = worker.timer.call_repeatedly(sweep_interval(app.config), self.run)

        def stop(self, worker) -> None:
            if self.tref is not None:
                self.tref.cancel()

        def run(self) -> None:
            try:
                with app.app_context():
                    swept = sweep_app(app)
                if swept:
                    log.warning("stale-job sweep failed %d job(s): %s", len(swept), swept)
            except Exception:  # the sweep must never take the worker down
                log.exception("stale-job sweep failed")

    return StaleJobSweep
