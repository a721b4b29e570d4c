"""Faults: a full or unwritable disk, jobs the broker lost, workers killed, Redis restarted, limits.

The fast tests use the Flask test client, the worker's task in process and a real Redis (its own
database, 11, which no test worker reads). The slow ones run the scenarios of ``make faults``
(``benchmarks/faults.py``): a private ``redis-server`` and real ``celery worker`` processes.
"""

from __future__ import annotations

import io
import os
import shutil
import time

import pytest
import redis
from billiard.exceptions import TimeLimitExceeded
from conftest import NO_LIMITS, csrf_token

from benchmarks import faults
from jobstore import Job, JobStore, free_bytes, new_id
from webapp import create_app
from webapp.serve import cookie_warning
from worker.sweep import LOST_MESSAGE, live_task_ids, sweep_app

SWEEP_DB = 11


def _post_photo(client, photo):
    return client.post(
        "/api/v1/analyze",
        data={"file": (io.BytesIO(photo.read_bytes()), "p.jpg")},
        headers={"X-CSRFToken": csrf_token(client)},
    )


def _job_folders(data_dir) -> list[str]:
    jobs = data_dir / "jobs"
    return sorted(p.name for p in jobs.iterdir()) if jobs.is_dir() else []


# -- a full or unwritable disk -----------------------------------------------------------------


def test_an_upload_is_refused_when_the_disk_is_short(app, client, queued, webmedia, tmp_path):
    app.config["MIN_FREE_MB"] = free_bytes(app.config["DATA_DIR"]) / 2**20 + 10_000
    response = _post_photo(client, webmedia.photo)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "60"
    error = response.get_json()["error"]
    assert error["code"] == "storage_full" and "storage space" in error["message"]
    assert queued == [] and _job_folders(tmp_path / "var") == []


def test_an_upload_into_an_unwritable_data_folder_is_refused_plainly(tmp_path, queued, webmedia):
    data = tmp_path / "var"
    app = create_app({"TESTING": True, "DATA_DIR": str(data), "MIN_FREE_MB": 0, **NO_LIMITS})
    if os.geteuid() == 0:  # root writes through mode 0555: make jobs/ something nobody can write into
        (data / "jobs").write_text("not a folder")
    else:
        (data / "jobs").mkdir()
        (data / "jobs").chmod(0o555)
    client = app.test_client()
    response = _post_photo(client, webmedia.photo)
    assert response.status_code == 503
    error = response.get_json()["error"]
    assert error["code"] == "storage_unavailable" and str(tmp_path) not in error["message"]
    if (data / "jobs").is_dir():
        (data / "jobs").chmod(0o755)
        assert _job_folders(data) == []


def test_the_worker_fails_a_job_when_the_disk_is_short(app, in_process, webmedia):
    store = JobStore(app.config["DATA_DIR"])
    job = Job(id=new_id(), source="upload", input="in.mp4")
    shutil.copy(webmedia.clip, store.create(job) / job.input)
    app.config["MIN_FREE_MB"] = free_bytes(app.config["DATA_DIR"]) / 2**20 + 10_000
    returned = in_process.analyze_job(job.id)
    assert returned["error_code"] == "storage_full"
    assert store.result(job.id)["error_code"] == "storage_full"
    assert sorted(p.name for p in store.folder(job.id).iterdir()) == ["job.json", "result.json"]


def test_failing_a_job_never_replaces_an_outcome(tmp_path):
    store = JobStore(tmp_path)
    job = Job(id=new_id(), source="upload", input="in.jpg")
    (store.create(job) / "in.jpg").write_bytes(b"x")
    store.write_result(job.id, {"status": "ok"})
    assert store.fail(job.id, "lost", LOST_MESSAGE) is False
    assert store.result(job.id) == {"status": "ok"}
    other = Job(id=new_id(), source="upload", input="in.jpg")
    (store.create(other) / "in.jpg").write_bytes(b"x")
    assert store.fail(other.id, "lost", LOST_MESSAGE) is True
    assert store.result(other.id)["error_code"] == "lost"
    assert sorted(p.name for p in store.folder(other.id).iterdir()) == ["job.json", "result.json"]
    assert not [p for p in store.folder(other.id).iterdir() if p.name.endswith(".tmp")]


# -- jobs the broker lost: the sweeper ---------------------------------------------------------


@pytest.fixture
def sweep_app_(redis_url, tmp_path):
    """An app on its own Redis database (no worker reads it), with a one-minute stale age."""
    url = redis_url.rsplit("/", 1)[0] + f"/{SWEEP_DB}"
    redis.Redis.from_url(url).flushdb()
    app = create_app(
        {
            "TESTING": True,
            "DATA_DIR": str(tmp_path / "var"),
            "REDIS_URL": url,
            "STALE_JOB_MINUTES": 1,
            "TASK_TIME_LIMIT": 60,
            **NO_LIMITS,
        }
    )
    yield app
    redis.Redis.from_url(url).flushdb()


def _queued_job(app, created: float, started: float | None = None, send: bool = False) -> str:
    store = JobStore(app.config["DATA_DIR"])
    job = Job(id=new_id(), source="upload", input="in.jpg", created=created, started=started)
    (store.create(job) / "in.jpg").write_bytes(b"\xff\xd8\xff")
    if send:  # a real message in the broker's analysis list, as the web app sends it
        app.extensions["celery"].tasks["worker.tasks.analyze_job"].apply_async(args=[job.id], task_id=job.id)
    return job.id


def test_a_job_the_broker_lost_is_failed_as_lost_and_live_ones_are_kept(sweep_app_):
    app = sweep_app_
    hour_ago = time.time() - 3600
    lost = _queued_job(app, hour_ago)
    waiting = _queued_job(app, hour_ago, send=True)  # long in the queue, but its message is there
    fresh = _queued_job(app, time.time())
    running = _queued_job(app, hour_ago, started=time.time() - 30)  # a worker may still write it
    finished = _queued_job(app, hour_ago)
    JobStore(app.config["DATA_DIR"]).write_result(finished, {"status": "ok"})
    assert waiting in live_task_ids(redis.Redis.from_url(app.config["REDIS_URL"]))

    assert sweep_app(app) == {lost: "lost"}
    store = JobStore(app.config["DATA_DIR"])
    assert store.result(lost)["error"] == LOST_MESSAGE
    assert sorted(p.name for p in store.folder(lost).iterdir()) == ["job.json", "result.json"]
    assert all(store.result(j) is None for j in (waiting, fresh, running))
    assert sweep_app(app) == {}  # nothing twice


def test_the_status_view_fails_a_lost_job_it_is_asked_about(sweep_app_):
    lost = _queued_job(sweep_app_, time.time() - 3600)
    status = sweep_app_.test_client().get(f"/api/v1/jobs/{lost}").get_json()
    assert status["state"] == "failed" and status["error"]["code"] == "lost"
    assert "send the file again" in status["error"]["message"]


def test_a_hard_time_limit_shows_as_timeout_and_is_kept_on_disk(sweep_app_):
    app = sweep_app_
    job_id = _queued_job(app, time.time(), started=time.time())
    app.extensions["celery"].backend.mark_as_failure(job_id, TimeLimitExceeded(90))
    status = app.test_client().get(f"/api/v1/jobs/{job_id}").get_json()
    assert status["state"] == "failed" and status["error"]["code"] == "timeout"
    store = JobStore(app.config["DATA_DIR"])
    job = store.load(job_id)
    job.created = job.started = time.time() - 3600
    store.save(job)
    assert sweep_app(app) == {job_id: "timeout"}  # recorded on disk, as Redis may forget it


def test_a_delivery_after_the_job_was_failed_changes_nothing(app, in_process, webmedia):
    store = JobStore(app.config["DATA_DIR"])
    job = Job(id=new_id(), source="upload", input="in.jpg")
    shutil.copy(webmedia.photo, store.create(job) / job.input)
    store.fail(job.id, "lost", LOST_MESSAGE)
    assert in_process.analyze_job(job.id) == {"status": "error"}
    assert store.result(job.id)["error_code"] == "lost" and store.load(job.id).attempts == 0


# -- cookies -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "secure"),
    [({}, True), ({"DEBUG": True}, False), ({"SECURE_COOKIES": "0"}, False), ({"SECURE_COOKIES": "1"}, True)],
    ids=["default", "debug", "opted-out", "opted-in"],
)
def test_the_session_cookie_is_secure_outside_debug(tmp_path, config, secure):
    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path), **config})
    cookie = app.test_client().get("/api/v1/csrf").headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert ("Secure" in cookie) is secure


def test_the_launcher_warns_when_secure_cookies_meet_plain_http_elsewhere():
    assert cookie_warning("127.0.0.1", {}) is None and cookie_warning("localhost", {}) is None
    assert "UNMASK_SECURE_COOKIES=0" in cookie_warning("0.0.0.0", {})
    assert cookie_warning("0.0.0.0", {"UNMASK_SECURE_COOKIES": "0"}) is None


# -- with real processes (make faults) ---------------------------------------------------------


@pytest.fixture(scope="module")
def fault_media(tmp_path_factory) -> faults.Media:
    return faults.make_media(tmp_path_factory.mktemp("fault-media"))


@pytest.mark.slow
@pytest.mark.integration
def test_a_worker_killed_mid_video_hands_the_job_back_and_it_finishes(tmp_path, fault_media):
    result = faults.kill_worker(tmp_path, fault_media, kills=1)
    assert result.ok, result.lines
    assert result.jobs == {"video": "done"} and result.figures["deliveries"] == 2


@pytest.mark.slow
@pytest.mark.integration
def test_a_video_that_kills_its_worker_twice_fails_with_worker_lost(tmp_path, fault_media):
    result = faults.kill_worker(tmp_path, fault_media, kills=2)
    assert result.ok, result.lines
    assert result.jobs == {"video": "failed: worker_lost"}


@pytest.mark.slow
@pytest.mark.integration
def test_queued_jobs_survive_a_redis_restart_with_an_append_only_file(tmp_path, fault_media):
    result = faults.redis_restart(tmp_path, fault_media, persistent=True)
    assert result.ok, result.lines
    assert set(result.jobs.values()) == {"done"}


@pytest.mark.slow
@pytest.mark.integration
def test_jobs_lost_in_a_redis_restart_without_persistence_fail_as_lost(tmp_path, fault_media):
    result = faults.redis_restart(tmp_path, fault_media, persistent=False)
    assert result.ok, result.lines
    assert result.jobs["photo sent after"] == "done"
    assert all(v in ("done", "failed: lost") for v in result.jobs.values())


@pytest.mark.slow
@pytest.mark.integration
def test_a_short_or_unwritable_disk_gives_clear_errors_with_a_real_worker(tmp_path, fault_media):
    result = faults.disk(tmp_path, fault_media)
    assert result.ok, result.lines
    assert result.jobs == {"door": "503 storage_full", "worker": "failed: storage_full"}


@pytest.mark.slow
@pytest.mark.integration
def test_a_video_past_the_time_limit_fails_with_timeout(tmp_path, fault_media):
    result = faults.timeout(tmp_path, fault_media)
    assert result.ok, result.lines
    assert result.jobs == {"video": "failed: timeout"}
