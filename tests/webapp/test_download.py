from __future__ import annotations

import functools
import http.server
import threading

import pytest
import webapp_media

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
    clip = webapp_media.face_clip(served / "long.mp4", seconds=20.0, width=640)
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
    import yt_dlp

    def extract_info(self, url, download=False):
        return {"id": "x", "url": "http://10.0.0.5/internal.mp4", "duration": 5}

    monkeypatch.setattr(yt_dlp.YoutubeDL, "extract_info", extract_info)
    with pytest.raises(UrlRefused, match="private or local"):
        download_video("http://127.0.0.1:1/page", tmp_path, ["127.0.0.1"], 10**8, 600)
