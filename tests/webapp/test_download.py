from __future__ import annotations

import functools
import http.server
import threading
from typing import ClassVar

import pytest
import yt_dlp

import testmedia
from detector.errors import MediaTooLarge, MediaTooLong
from worker.download import DownloadFailed, UrlRefused, _plain, check_address, check_url, download_video


@pytest.mark.parametrize(
    "url",
    [
        "https://www.youtube.com/watch?v=x",
        "https://youtu.be/x",
        "http://m.youtube.com/watch?v=x",
    ],
)
def test_allowed_hosts_and_subdomains(url):
    assert check_url(url, ["youtube.com", "youtu.be"])


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://youtube.com/x", "http"),
        ("javascript:alert(1)", "http"),
        ("https://evilyoutube.com/x", "not on this server's list"),
        ("https://youtube.com.evil.net/x", "not on this server's list"),
        ("https://user:pw@youtube.com/x", "password"),
        ("https://", "no site name"),
        ("https://youtube.com:99999/x", "not a valid link"),
    ],
)
def test_refused_links_say_why(url, words):
    with pytest.raises(UrlRefused, match=words):
        check_url(url, ["youtube.com"])


def test_private_addresses_need_the_exact_host_listed():
    check_address("http://127.0.0.1:8000/x.mp4", ["127.0.0.1"])  # listed exactly: allowed
    with pytest.raises(UrlRefused, match="private or local"):
        check_address("http://localhost:8000/x.mp4", ["host"])


def test_yt_dlp_errors_become_plain_words():
    assert "connection refused" in _plain("ERROR: [generic] x: [Errno 111] Connection refused", "h")
    assert "HTTP error 404" in _plain("ERROR: [generic] x: HTTP Error 404: Not Found", "h")
    assert "Traceback" not in _plain("ERROR: weird\nTraceback (most recent call last):", "h")


def test_download_from_an_allowed_local_server(file_server, tmp_path):
    path = download_video(f"{file_server}/clip.mp4", tmp_path, ["127.0.0.1"], 10**8, 600)
    assert path.stat().st_size > 1000


def test_download_over_the_size_cap_is_refused(file_server, tmp_path):
    with pytest.raises(MediaTooLarge, match="limit"):
        download_video(f"{file_server}/clip.mp4", tmp_path, ["127.0.0.1"], 2000, 600)
    assert not list(tmp_path.iterdir())


def test_missing_and_unreachable(file_server, tmp_path):
    with pytest.raises(DownloadFailed, match="404"):
        download_video(f"{file_server}/nothing.mp4", tmp_path, ["127.0.0.1"], 10**8, 600)
    with pytest.raises(DownloadFailed, match="refused"):
        download_video("http://127.0.0.1:9/x.mp4", tmp_path, ["127.0.0.1"], 10**8, 600)


@pytest.mark.slow
def test_too_long_video_is_stopped_before_the_download_finishes(tmp_path):
    """The site gives no duration; the partial file's index gives it away after 512 KB."""
    served = tmp_path / "served"
    served.mkdir()
    clip = testmedia.face_clip(served / "long.mp4", seconds=20.0, width=640)
    assert clip.stat().st_size > 600 * 1024
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.handle_error = lambda request, address: None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    out = tmp_path / "out"
    out.mkdir()
    try:
        with pytest.raises(MediaTooLong, match="limit is 10 seconds"):
            download_video(
                f"http://127.0.0.1:{server.server_address[1]}/long.mp4", out, ["127.0.0.1"], 10**9, 10.0
            )
    finally:
        server.shutdown()
    assert not list(out.iterdir())


def test_media_on_an_internal_address_is_refused(tmp_path, monkeypatch):
    """An allowed page whose video lives on a private address (a CDN trick) is refused."""

    def extract_info(self, url, download=False):
        return {"id": "x", "url": "http://10.0.0.5/internal.mp4", "duration": 5}

    monkeypatch.setattr(yt_dlp.YoutubeDL, "extract_info", extract_info)
    with pytest.raises(UrlRefused, match="private or local"):
        download_video("http://127.0.0.1:1/page", tmp_path, ["127.0.0.1"], 10**8, 600)


class _Redirector(http.server.BaseHTTPRequestHandler):
    """Answers every GET and HEAD with a 302 to ``target``; counts the requests it saw."""

    target: ClassVar[str] = ""
    hits: ClassVar[list] = []

    def do_GET(self) -> None:
        type(self).hits.append(self.path)
        self.send_response(302)
        self.send_header("Location", self.target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def redirecting_server():
    """A server on 127.0.0.1 that redirects to a target the test sets, plus a trap on 127.0.0.2."""
    trap_hits: list = []

    class Trap(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            trap_hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"no")

    Redirect = type("Redirect", (_Redirector,), {"hits": [], "target": ""})
    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)]
    servers.append(http.server.ThreadingHTTPServer(("127.0.0.2", 0), Trap))
    for server in servers:
        server.handle_error = lambda request, address: None
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield (
            Redirect,
            f"http://127.0.0.1:{servers[0].server_address[1]}",
            servers[1].server_address[1],
            trap_hits,
        )
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


@pytest.mark.parametrize(
    "target", ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/x.mp4", "trap"]
)
def test_a_redirect_to_an_internal_address_is_refused_before_connecting(redirecting_server, tmp_path, target):
    handler, base, trap_port, trap_hits = redirecting_server
    handler.target = f"http://127.0.0.2:{trap_port}/clip.mp4" if target == "trap" else target
    with pytest.raises(UrlRefused, match="private or local network address"):
        download_video(f"{base}/video.mp4", tmp_path, ["127.0.0.1"], 10**8, 600)
    assert handler.hits  # the allowed server was asked, and answered with the redirect
    assert trap_hits == []  # no connection reached the refused address
    assert not list(tmp_path.iterdir())


def test_a_redirect_to_an_allowed_address_is_followed(file_server, redirecting_server, tmp_path):
    handler, base, _, _ = redirecting_server
    handler.target = f"{file_server}/clip.mp4"
    path = download_video(f"{base}/video.mp4", tmp_path, ["127.0.0.1"], 10**8, 600)
    assert path.stat().st_size > 1000
