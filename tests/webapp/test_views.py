from __future__ import annotations

import io
import json

import pytest
from billiard.exceptions import TimeLimitExceeded, WorkerLostError
from conftest import NO_LIMITS, csrf_token

import webapp.analyze.views as views
from jobstore import Job, JobStore, new_id
from webapp import create_app


@pytest.mark.parametrize("path", ["/", "/link", "/webcam/", "/quiz/"])
def test_pages_render_with_a_strict_policy(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert b'name="csrf-token"' in response.data
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert b"<script>" not in response.data  # no inline scripts


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/", {"file": (io.BytesIO(b"x"), "a.jpg")}),
        ("/link", {"url": "https://example.com/v"}),
        ("/webcam/frame", {"frame": (io.BytesIO(b"x"), "f.jpg")}),
        ("/quiz/round", {}),
        ("/quiz/answer", {"round": "x", "pick": "a"}),
    ],
)
def test_posts_without_csrf_token_are_refused(client, queued, path, data):
    response = client.post(path, data=data, headers={"Accept": "application/json"})
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "csrf"
    assert queued == []


def _upload(client, name: str, content: bytes, accept: str = "application/json"):
    return client.post(
        "/",
        data={"file": (io.BytesIO(content), name)},
        headers={"X-CSRFToken": csrf_token(client), "Accept": accept},
        content_type="multipart/form-data",
    )


def test_upload_is_stored_under_a_random_name_and_queued(client, app, queued, webmedia):
    response = _upload(client, "my holiday.png", webmedia.photo.read_bytes())  # a JPEG named .png
    assert response.status_code == 202
    body = response.get_json()
    job = JobStore(app.config["DATA_DIR"]).load(body["id"])
    assert job.filename == "my holiday.png"
    assert job.input.endswith(".jpg") and "holiday" not in job.input
    assert queued == [("analyze_job", [job.id], queued[0][2])]
    assert queued[0][2]["task_id"] == job.id
    assert body["page_url"] == f"/jobs/{job.id}"


def test_browser_form_post_redirects_to_the_job_page(client, queued, webmedia):
    response = _upload(client, "p.jpg", webmedia.photo.read_bytes(), accept="text/html")
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/jobs/")
    page = client.get(response.headers["Location"])
    assert b'data-status-url="/api/v1/jobs/' in page.data


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"PK\x03\x04 this is a zip archive", "not a photo or video"),
        (b"<html>hello</html>", "not a photo or video"),
        (b"", "empty"),
    ],
)
def test_disguised_or_empty_uploads_are_refused_by_content(client, queued, content, words):
    response = _upload(client, "looks-fine.mp4", content)
    assert response.status_code == 400
    assert words in response.get_json()["error"]["message"]
    assert queued == []


def test_oversized_upload_is_refused(client, queued):
    response = _upload(client, "big.jpg", b"\xff\xd8\xff" + b"0" * (6 * 1024 * 1024))
    assert response.status_code == 413
    assert "5 MB" in response.get_json()["error"]["message"]


def test_link_to_a_host_that_is_not_allowed(client, queued):
    response = client.post(
        "/link",
        data={"url": "https://evil.example.org/v.mp4"},
        headers={"X-CSRFToken": csrf_token(client)},
    )
    assert response.status_code == 400
    assert b"not on this server&#39;s list of allowed sites" in response.data
    assert queued == []


def test_api_accepts_a_link_as_json(client, queued):
    response = client.post(
        "/api/v1/analyze",
        data=json.dumps({"url": "https://example.com/watch?v=1"}),
        content_type="application/json",
        headers={"X-CSRFToken": csrf_token(client)},
    )
    assert response.status_code == 202
    body = response.get_json()
    assert response.headers["Location"] == body["status_url"] == f"/api/v1/jobs/{body['id']}"


def test_api_needs_exactly_one_input(client, queued):
    response = client.post("/api/v1/analyze", data={}, headers={"X-CSRFToken": csrf_token(client)})
    assert response.status_code == 400
    assert "exactly one" in response.get_json()["error"]["message"]


def test_api_key_stands_in_for_csrf(tmp_path, monkeypatch, webmedia):
    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path), "API_KEYS": "k1,k2", **NO_LIMITS})
    sent = []
    task = app.extensions["celery"].tasks["worker.tasks.analyze_job"]
    monkeypatch.setattr(task, "apply_async", lambda args=None, **o: sent.append(args))
    client = app.test_client()

    def post(headers):
        data = {"file": (io.BytesIO(webmedia.photo.read_bytes()), "p.jpg")}
        return client.post("/api/v1/analyze", data=data, headers=headers)

    assert post({"Authorization": "Bearer nope"}).status_code == 403
    assert post({"Authorization": "Bearer k2"}).status_code == 202
    assert len(sent) == 1
    refused = post({})  # neither a key nor a token: which headers to send
    assert (
        refused.status_code == 401 and "Authorization: Bearer <key>" in refused.get_json()["error"]["message"]
    )


def test_api_without_credentials_gets_an_api_answer(client, queued):
    """Scripts get told which header to send (401), or that keys are off here (403); a token
    that does not match its session is a 400 in the API's words, not the browser's."""
    response = client.post("/api/v1/analyze", data={"url": "https://example.com/v"})
    assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
    error = response.get_json()["error"]
    assert error["code"] == "unauthorized"
    assert "Authorization: Bearer <key>" in error["message"] and "X-CSRFToken" in error["message"]
    keyed = client.post("/api/v1/analyze", data={"url": "x"}, headers={"Authorization": "Bearer k"})
    assert keyed.status_code == 403 and keyed.get_json()["error"]["code"] == "api_keys_disabled"
    stale = client.post("/api/v1/analyze", data={"url": "x"}, headers={"X-CSRFToken": "stale"})
    assert stale.status_code == 400 and "reload the page" not in stale.get_json()["error"]["message"]
    assert queued == []


@pytest.mark.parametrize("max_queue", [0, 1], ids=["no-queue-limit", "queue-limit"])
def test_queue_down_gives_503_and_no_orphan_job(tmp_path, webmedia, max_queue):
    """With a queue limit the upload first asks Redis how long the queue is: Redis being down
    must still reach the plain "queue unavailable" answer, not an error of the limit check."""
    config = {"TESTING": True, "DATA_DIR": str(tmp_path), "REDIS_URL": "redis://127.0.0.1:1/0"}
    app = create_app({**config, "MAX_QUEUE": max_queue})
    client = app.test_client()
    response = client.post(
        "/api/v1/analyze",
        data={"file": (io.BytesIO(webmedia.photo.read_bytes()), "p.jpg")},
        headers={"X-CSRFToken": csrf_token(client)},
    )
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "queue_unavailable"
    assert not any((tmp_path / "jobs").iterdir())


def test_status_of_unknown_job_is_404(client):
    assert client.get(f"/api/v1/jobs/{new_id()}").status_code == 404
    assert client.get("/api/v1/jobs/..%2f..").status_code == 404
    assert client.get(f"/jobs/{new_id()}").status_code == 404


def _job_with_result(app, result: dict) -> str:
    store = JobStore(app.config["DATA_DIR"])
    job = Job(id=new_id(), source="upload", filename="p.jpg", input="x.jpg")
    folder = store.create(job)
    (folder / "x.annotated.jpg").write_bytes(b"\xff\xd8\xffjpeg")
    store.write_result(job.id, result)
    return job.id


def test_done_job_gives_result_with_urls_and_serves_only_results(app, client):
    job_id = _job_with_result(
        app,
        {"status": "ok", "kind": "image", "verdict": "real", "annotated": "x.annotated.jpg", "evidence": []},
    )
    status = client.get(f"/api/v1/jobs/{job_id}").get_json()
    assert status["state"] == "done" and status["progress"] == 1.0
    assert status["result"]["annotated_url"] == f"/jobs/{job_id}/files/x.annotated.jpg"
    assert client.get(status["result"]["annotated_url"]).status_code == 200
    assert client.get(f"/jobs/{job_id}/files/job.json").status_code == 404
    assert client.get(f"/jobs/{job_id}/files/result.json").status_code == 404
    download = client.get(status["json_url"])
    assert "attachment" in download.headers["Content-Disposition"]


def test_failed_job_says_what_failed(app, client):
    job_id = _job_with_result(
        app, {"status": "error", "error_code": "corrupt_media", "error": "the image cannot be decoded"}
    )
    status = client.get(f"/api/v1/jobs/{job_id}").get_json()
    assert status["state"] == "failed"
    assert status["error"] == {"code": "corrupt_media", "message": "the image cannot be decoded"}
    assert status["result"] is None


def test_errors_never_show_tracebacks(app, client, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(views, "submit_upload", boom)
    response = _upload(client, "p.jpg", b"\xff\xd8\xff....")
    assert response.status_code == 500
    text = response.get_data(as_text=True)
    assert "secret internals" not in text and "Traceback" not in text


@pytest.mark.parametrize(
    ("state", "info", "expected"),
    [
        ("PENDING", None, ("queued", "queued")),
        ("STARTED", None, ("running", "starting")),
        ("PROGRESS", {"stage": "faces", "progress": 0.4}, ("running", "faces")),
        ("FAILURE", "TimeLimitExceeded", ("failed", "done")),
        ("FAILURE", "WorkerLostError", ("failed", "done")),
    ],
)
def test_celery_states_map_to_job_states(app, client, monkeypatch, state, info, expected):
    errors = {"TimeLimitExceeded": TimeLimitExceeded(900), "WorkerLostError": WorkerLostError("gone")}
    store = JobStore(app.config["DATA_DIR"])
    job = Job(id=new_id(), source="upload")
    store.create(job)

    class FakeResult:
        def __init__(self, task_id):
            self.state = state
            self.info = errors.get(info, info) if isinstance(info, str) else info

    monkeypatch.setattr(app.extensions["celery"], "AsyncResult", FakeResult)
    status = client.get(f"/api/v1/jobs/{job.id}").get_json()
    assert (status["state"], status["stage"]) == expected
    if state == "FAILURE":
        assert "Traceback" not in status["error"]["message"]
        assert ("time limit" in status["error"]["message"]) == (info == "TimeLimitExceeded")
