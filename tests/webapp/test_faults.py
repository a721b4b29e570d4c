"""Faults: a full or unwritable disk, jobs the broker lost, workers killed, Redis restarted, limits.

The fast tests use the Flask test client, the worker's task in process and a real Redis (its own
database, 11, which no test worker reads). The slow ones run the scenarios of ``make faults``
(``benchmarks/faults.py``): a private ``redis-server`` and real ``celery worker`` processes.
"""

from __future__ import annotations

import io
import os
import shutil

import pytest
from conftest import NO_LIMITS, csrf_token

from webapp import create_app
from webapp.jobs import Job, JobStore, free_bytes, new_id
from webapp.serve import cookie_warning

LOST_MESSAGE = "the job was lost"


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
