"""The web surface's safety rules, on every page and API answer: headers, cookies, files, ids."""

from __future__ import annotations

import pytest

import webapp.api.views as views
from jobstore import Job, JobStore, new_id, valid_id
from webapp import create_app


@pytest.fixture
def finished_job(app):
    """A job with a result and its files, as the worker leaves it."""
    store = JobStore(app.config["DATA_DIR"])
    job = Job(id=new_id(), source="upload", filename="x.jpg", input="0123456789abcdef.jpg")
    folder = store.create(job)
    (folder / job.input).write_bytes(b"\xff\xd8\xff the upload")
    (folder / "in.annotated.jpg").write_bytes(b"\xff\xd8\xff annotated")
    (folder / "in.annotated.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 annotated")
    (folder / "face-0.jpg").write_bytes(b"\xff\xd8\xff crop")
    store.write_result(job.id, {"status": "ok", "annotated": "in.annotated.jpg", "evidence": []})
    return job


def _paths(job_id: str) -> list[str]:
    return [
        "/",
        "/link",
        "/webcam/",
        "/quiz/",
        f"/jobs/{job_id}",
        "/api/v1/csrf",
        f"/api/v1/jobs/{job_id}",
        f"/api/v1/jobs/{job_id}/result.json",
        f"/jobs/{job_id}/files/in.annotated.jpg",
        "/no/such/page",
        "/api/v1/jobs/nope",
    ]


def test_every_answer_carries_the_security_headers(client, finished_job):
    for path in _paths(finished_job.id):
        response = client.get(path)
        headers = response.headers
        csp = headers["Content-Security-Policy"]
        assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp, path
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
        assert "object-src 'none'" in csp, path
        assert headers["X-Content-Type-Options"] == "nosniff", path
        assert headers["X-Frame-Options"] == "DENY", path
        assert headers["Referrer-Policy"] in ("same-origin", "no-referrer", "strict-origin"), path


def test_pages_have_no_inline_script_or_handlers(client, finished_job):
    for path in ("/", "/link", "/webcam/", "/quiz/", f"/jobs/{finished_job.id}"):
        html = client.get(path).get_data(as_text=True).lower()
        assert "<script>" not in html and " onclick=" not in html and " onload=" not in html, path
        assert "javascript:" not in html, path


@pytest.mark.parametrize(
    ("name", "content_type"),
    [("in.annotated.jpg", "image/jpeg"), ("in.annotated.mp4", "video/mp4"), ("face-0.jpg", "image/jpeg")],
)
def test_result_files_are_served_as_inert_media(client, finished_job, name, content_type):
    response = client.get(f"/jobs/{finished_job.id}/files/{name}")
    assert response.status_code == 200
    assert response.mimetype == content_type
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    "name", ["0123456789abcdef.jpg", "job.json", "result.json", "..%2Fjob.json", "x.html", "in.annotated.svg"]
)
def test_inputs_and_bookkeeping_are_never_served(client, finished_job, name):
    assert client.get(f"/jobs/{finished_job.id}/files/{name}").status_code == 404


@pytest.mark.parametrize("path", ["/jobs/", "/jobs", "/static/", "/static/js/", "/api/v1/jobs/", "/var/"])
def test_no_directory_listing(client, path):
    response = client.get(path)
    assert response.status_code in (404, 405)
    assert b"Index of" not in response.data


def test_result_json_downloads_as_an_attachment(client, finished_job):
    response = client.get(f"/api/v1/jobs/{finished_job.id}/result.json")
    assert response.mimetype == "application/json"
    assert response.headers["Content-Disposition"].startswith("attachment")


def test_job_ids_are_random_and_checked():
    ids = {new_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(valid_id(i) and len(i) == 22 for i in ids)  # 128 random bits
    assert not valid_id("../../etc") and not valid_id("1") and not valid_id("a" * 23)


def test_only_the_id_opens_a_job(client, finished_job):
    other = new_id()
    assert client.get(f"/api/v1/jobs/{other}").status_code == 404
    assert client.get(f"/jobs/{other}").status_code == 404


def test_cookies_are_httponly_samesite_and_secure_outside_debug(tmp_path):
    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path), "SECURE_COOKIES": True})
    cookie = app.test_client().get("/api/v1/csrf").headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie
    plain = create_app({"TESTING": True, "DATA_DIR": str(tmp_path / "p")})
    cookie = plain.test_client().get("/api/v1/csrf").headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_errors_show_no_traceback_or_path(client, app, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError(f"secret failure in {app.config['DATA_DIR']}/x.py")

    monkeypatch.setattr(views, "store", boom)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    response = client.get(f"/api/v1/jobs/{new_id()}")
    assert response.status_code == 500
    body = response.get_data(as_text=True)
    assert "Traceback" not in body and app.config["DATA_DIR"] not in body and "secret" not in body
