"""Back-pressure (a full analysis queue) and per-client rate limits, on a real Redis.

These tests use their own Redis database (12), never the one the test worker reads its queue
from, and fill the ``analysis`` list with placeholders that no worker will ever see.
"""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
import redis
from conftest import csrf_token

import webapp.limits
from webapp import create_app
from webapp.config import DEFAULTS
from webapp.storage import ANALYSIS_ENDPOINTS, STORING_ENDPOINTS

LIMITS_DB = 12


@pytest.fixture
def limited(redis_url, tmp_path, monkeypatch):
    """An app whose limits a test sets; the enqueue is stubbed (records job ids)."""
    url = redis_url.rsplit("/", 1)[0] + f"/{LIMITS_DB}"
    db = redis.Redis.from_url(url)
    db.flushdb()
    # A frozen clock, mid-window: no test can straddle a window's end, however slow it runs.
    monkeypatch.setattr(webapp.limits, "time", SimpleNamespace(time=lambda: 1_800_000.5))

    def make(**config):
        app = create_app(
            {
                "TESTING": True,
                "DATA_DIR": str(tmp_path / "var"),
                "REDIS_URL": url,
                "ALLOWED_URL_HOSTS": "example.com",
                "MAX_QUEUE": 0,
                "RATE_LIMIT_UPLOADS": 0,
                "RATE_LIMIT_WEBCAM": 0,
                "RATE_LIMIT_WINDOW": 3600,
                **config,
            }
        )
        sent: list = []
        task = app.extensions["celery"].tasks["worker.tasks.analyze_job"]
        monkeypatch.setattr(task, "apply_async", lambda args=None, **o: sent.append(args))
        app.sent = sent  # type: ignore[attr-defined]
        return app

    yield make, db
    db.flushdb()


def _post_link(client, remote: str = "203.0.113.7"):
    return client.post(
        "/api/v1/analyze",
        data={"url": "https://example.com/v"},
        headers={"X-CSRFToken": csrf_token(client)},
        environ_base={"REMOTE_ADDR": remote},
    )


def test_a_full_queue_answers_503_with_retry_after(limited, tmp_path):
    make, db = limited
    app = make(MAX_QUEUE=3)
    client = app.test_client()
    db.rpush("analysis", *[b"placeholder"] * 2)
    assert _post_link(client).status_code == 202
    db.rpush("analysis", b"placeholder")  # now 3 waiting: at the limit
    response = _post_link(client)
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "queue_full"
    assert int(response.headers["Retry-After"]) > 0
    assert len(app.sent) == 1  # the refused one was never queued
    assert len(list((tmp_path / "var" / "jobs").iterdir())) == 1  # nor stored


def test_a_full_queue_refuses_browser_uploads_with_a_page(limited, webmedia):
    make, db = limited
    app = make(MAX_QUEUE=1)
    client = app.test_client()
    db.rpush("analysis", b"placeholder")
    response = client.post(
        "/",
        data={"file": (io.BytesIO(webmedia.photo.read_bytes()), "p.jpg")},
        headers={"X-CSRFToken": csrf_token(client), "Accept": "text/html"},
    )
    assert response.status_code == 503 and "Retry-After" in response.headers
    assert b"busy" in response.data and b"Traceback" not in response.data


def test_uploads_are_rate_limited_per_client(limited):
    make, _ = limited
    app = make(RATE_LIMIT_UPLOADS=2)
    client = app.test_client()
    assert [_post_link(client).status_code for _ in range(2)] == [202, 202]
    refused = _post_link(client)
    assert refused.status_code == 429
    assert refused.get_json()["error"]["code"] == "rate_limited"
    assert 0 < int(refused.headers["Retry-After"]) <= 3601
    assert _post_link(client, remote="198.51.100.9").status_code == 202  # another client is not affected
    assert len(app.sent) == 3


def test_webcam_frames_are_rate_limited(limited):
    make, _ = limited
    app = make(RATE_LIMIT_WEBCAM=1)
    client = app.test_client()

    def frame():
        return client.post(
            "/webcam/frame",
            data={"frame": (io.BytesIO(b"not a picture"), "f.jpg")},
            headers={"X-CSRFToken": csrf_token(client)},
        )

    assert frame().status_code == 400  # counted, then refused for its content
    response = frame()
    assert response.status_code == 429 and "Retry-After" in response.headers


def test_limits_off_by_zero_touch_nothing(limited):
    make, db = limited
    app = make()
    db.rpush("analysis", *[b"placeholder"] * 50)
    client = app.test_client()
    assert all(_post_link(client).status_code == 202 for _ in range(5))
    assert not db.keys("unmask:rate:*")


def test_defaults_are_generous():
    assert DEFAULTS["MAX_QUEUE"] >= 50
    assert DEFAULTS["RATE_LIMIT_UPLOADS"] >= 10
    assert DEFAULTS["RATE_LIMIT_WEBCAM"] >= 4 * DEFAULTS["RATE_LIMIT_WINDOW"]  # the page sends 4 a second


def test_the_storing_endpoints_are_the_apps_own(app):
    # One list (webapp/storage.py) names the requests that store data; a renamed view must not
    # slip out of the storage check and the rate limits unnoticed.
    assert set(STORING_ENDPOINTS) <= set(app.view_functions)
    assert ANALYSIS_ENDPOINTS.issubset(STORING_ENDPOINTS) and "webcam.frame" not in ANALYSIS_ENDPOINTS
