"""Fetching the video behind a link with yt-dlp, inside the limits this server allows.

A link is accepted only for hosts on ``UNMASK_ALLOWED_URL_HOSTS`` (a host or any subdomain of
it). Before any download the host name is resolved, and addresses on loopback, private, link-local
or reserved networks are refused unless that exact host is on the list, so a link cannot make the
worker fetch from the server's own network. yt-dlp's info dict lets us refuse long or large videos
before downloading; a progress hook stops a download the moment it passes the size cap, because
servers do not always announce the size.

Redirects are checked too: every connection yt-dlp opens during a download goes through
``_guarded_connection``, which refuses an internal address (a redirect to 169.254.169.254, a
DNS name that later resolves to 10.0.0.1) before the socket connects, unless that host is listed
exactly. yt-dlp is asked to use its urllib handler, whose connections we can see.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import av

from detector.errors import MediaTooLarge, MediaTooLong, UnmaskError

log = logging.getLogger(__name__)

DownloadProgress = Callable[[float], None]


class UrlRefused(UnmaskError):
    """The link is not one this server will fetch (scheme, host, address)."""

    code = "url_refused"


class DownloadFailed(UnmaskError):
    """The site could not be reached or gave no downloadable video."""

    code = "download_failed"


class _TooLarge(Exception):
    """Raised from the progress hook to stop a download that passed the size cap."""


class _TooLong(Exception):
    """Raised from the progress hook when the partial file already shows a too-long video."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.seconds = seconds


# Bytes after which a partial download is probed for its duration (when the site gave none).
_PROBE_AFTER = 512 * 1024


def probe_partial_duration(path: str | Path) -> float | None:
    """The duration a partly downloaded video declares, or None when it cannot tell yet.

    MP4 files written for streaming carry their index (and so their duration) at the start, so
    the first few hundred kilobytes are enough to refuse a two-hour film before it downloads.
    """
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            if container.duration:
                return container.duration / 1_000_000
            stream = container.streams.video[0] if container.streams.video else None
            if stream is not None and stream.duration and stream.time_base:
                return float(stream.duration * stream.time_base)
    except Exception:  # a partial file is often unreadable; that is no error
        return None
    return None


def host_allowed(host: str, allowed: list[str]) -> bool:
    host = host.lower().rstrip(".")
    return any(host == a or host.endswith("." + a) for a in allowed)


def check_url(url: str, allowed: list[str]) -> str:
    """Refuse links this server will not fetch; return the host. Cheap: no network."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
        _ = parts.port  # raises ValueError on a bad port
    except ValueError:
        raise UrlRefused("that is not a valid link") from None
    if parts.scheme not in ("http", "https"):
        raise UrlRefused("only http:// and https:// links can be analysed")
    if not host:
        raise UrlRefused("the link has no site name in it")
    if parts.username or parts.password:
        raise UrlRefused("links with a user name or password in them are not accepted")
    if not allowed:
        raise UrlRefused("this server does not accept links (no sites are allowed)")
    if not host_allowed(host, allowed):
        raise UrlRefused(f"{host} is not on this server's list of allowed sites ({', '.join(allowed)})")
    return host.lower()


def check_address(url: str, allowed: list[str]) -> None:
    """Resolve the link's host; refuse internal addresses unless the host is listed exactly."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    if host in allowed:
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise DownloadFailed(f"could not find the site {host} (its name does not resolve)") from None
    for info in infos:
        if _internal(info[4][0]):
            raise UrlRefused(f"{host} points to a private or local network address, which is not allowed")


def _internal(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_multicast
        or ip.is_unspecified
    )


# The allow-list of the download running in this thread (None: no download, no check) and the
# host of the last refused connection, read back when yt-dlp reports its failure.
_guard = threading.local()
_install_lock = threading.Lock()


def _guarded_connection(address, timeout=socket._GLOBAL_DEFAULT_TIMEOUT, source_address=None, **kwargs):
    """yt-dlp's ``create_connection``, refusing internal addresses right before connecting."""
    from yt_dlp.networking import _helper  # yt-dlp takes 0.2 s to import: loaded by the first link

    inner = kwargs.pop("_create_socket_func", None) or _helper._socket_connect
    allowed = getattr(_guard, "allowed", None)
    host = str(address[0]).lower().strip("[]")
    if allowed is None or host in allowed:
        return _helper.create_connection(address, timeout, source_address, _create_socket_func=inner)

    def checked(ip_addr, *args):
        if _internal(str(ip_addr[4][0])):
            _guard.refused = host
            raise OSError(f"refused to connect to {host}: a private or local network address")
        return inner(ip_addr, *args)

    return _helper.create_connection(address, timeout, source_address, _create_socket_func=checked)


def _install_guard() -> None:
    from yt_dlp.networking import _urllib  # yt-dlp takes 0.2 s to import: loaded by the first link

    with _install_lock:
        if getattr(_urllib, "create_connection", None) is not _guarded_connection:
            _urllib.create_connection = _guarded_connection


class _Logger:
    """yt-dlp's messages go to our log, never to a user."""

    def debug(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)

    def info(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)

    def warning(self, msg: str) -> None:
        log.info("yt-dlp: %s", msg)

    def error(self, msg: str) -> None:
        log.info("yt-dlp: %s", msg)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _plain(message: str, host: str) -> str:
    """yt-dlp's error text, reduced to plain words for a user."""
    text = _ANSI.sub("", str(message)).replace("ERROR:", "").strip()
    text = re.sub(r"^\[[^\]]+\]\s*", "", text)
    text = re.sub(r"^[\w-]+: ", "", text) if text.startswith(("generic:", "youtube:")) else text
    low = text.lower()
    if "connection refused" in low or "errno 111" in low:
        return f"could not connect to {host} (connection refused)"
    if "name or service not known" in low or "nodename nor servname" in low or "errno -2" in low:
        return f"could not find the site {host} (its name does not resolve)"
    if "timed out" in low:
        return f"{host} did not answer in time"
    m = re.search(r"HTTP Error (\d{3})", text)
    if m:
        return f"{host} answered with HTTP error {m.group(1)}"
    if "unsupported url" in low:
        return f"no video was found at that link on {host}"
    if "private video" in low or "sign in" in low:
        return "the video is private or needs a login"
    first = text.splitlines()[0] if text else "unknown error"
    return f"could not download a video from {host}: {first[:200]}"


def download_video(
    url: str,
    folder: Path,
    allowed: list[str],
    max_bytes: int,
    max_seconds: float,
    progress: DownloadProgress | None = None,
    stem: str = "download",
) -> Path:
    """Download one video into ``folder``; raise ``UnmaskError`` subclasses with plain messages."""
    host = check_url(url, allowed)
    check_address(url, allowed)
    _install_guard()
    _guard.allowed, _guard.refused = [a.lower() for a in allowed], None
    try:
        return _download(url, host, folder, allowed, max_bytes, max_seconds, progress, stem)
    finally:
        _guard.allowed = None


def _download(
    url: str,
    host: str,
    folder: Path,
    allowed: list[str],
    max_bytes: int,
    max_seconds: float,
    progress: DownloadProgress | None,
    stem: str,
) -> Path:
    # yt-dlp takes 0.2 s to import; the web process and most jobs never need it.
    import yt_dlp
    from yt_dlp.utils import DownloadError, YoutubeDLError

    probed = {"done": False}

    def hook(status: dict) -> None:
        done = status.get("downloaded_bytes") or 0
        if done > max_bytes:
            raise _TooLarge()
        partial = status.get("tmpfilename") or status.get("filename")
        if not probed["done"] and status.get("status") == "downloading" and done >= _PROBE_AFTER and partial:
            probed["done"] = True
            seconds = probe_partial_duration(partial)
            if seconds is not None and seconds > max_seconds:
                raise _TooLong(seconds)
        total = status.get("total_bytes") or status.get("total_bytes_estimate")
        if progress is not None and total:
            progress(min(1.0, done / total))

    options = {
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "noplaylist": True,
        "playlist_items": "1",
        "outtmpl": str(folder / f"{stem}.%(ext)s"),
        "restrictfilenames": True,
        # single-file formats: no ffmpeg is needed to merge streams
        "format": "best[ext=mp4][vcodec!=none][acodec!=none]/best[vcodec!=none][acodec!=none]/best",
        "max_filesize": max_bytes,
        "socket_timeout": 20,
        "retries": 2,
        "fragment_retries": 2,
        "cachedir": False,
        "logger": _Logger(),
        "progress_hooks": [hook],
        "overwrites": True,
        # the urllib handler opens its connections through _guarded_connection (redirects too)
        "compat_opts": {"prefer-legacy-http-handler"},
    }
    try:
        with yt_dlp.YoutubeDL(options) as ydl:
            info = ydl.extract_info(url, download=False)
            if info is None:
                raise DownloadFailed(f"no video was found at that link on {host}")
            if info.get("_type") in ("playlist", "multi_video"):
                raise DownloadFailed("that link is a playlist; paste the link of a single video")
            if info.get("is_live"):
                raise DownloadFailed("live streams cannot be analysed")
            duration = info.get("duration")
            if duration and duration > max_seconds:
                raise _too_long(duration, max_seconds)
            # The media itself may live on another host (a CDN): it must not be internal either.
            media_urls = [info.get("url")] + [f.get("url") for f in info.get("requested_formats") or []]
            for media_url in filter(None, media_urls):
                if urlsplit(media_url).scheme in ("http", "https"):
                    check_address(media_url, allowed)
            size = info.get("filesize") or info.get("filesize_approx")
            if size and size > max_bytes:
                raise MediaTooLarge(
                    f"the video is {size / 1e6:.0f} MB; the limit is {max_bytes / 1e6:.0f} MB"
                )
            info = ydl.process_ie_result(info, download=True)
    except UnmaskError:
        raise
    except _TooLarge:
        _remove_partial(folder, stem)
        raise MediaTooLarge(f"the video is larger than the {max_bytes / 1e6:.0f} MB limit") from None
    except _TooLong as exc:
        _remove_partial(folder, stem)
        raise _too_long(exc.seconds, max_seconds) from None
    except (DownloadError, YoutubeDLError) as exc:
        _remove_partial(folder, stem)
        refused = getattr(_guard, "refused", None)
        if refused:
            raise UrlRefused(
                f"the link leads to {refused}, a private or local network address, which is not allowed"
            ) from None
        cause = (getattr(exc, "exc_info", None) or (None, None))[1]
        if isinstance(cause, _TooLarge):
            raise MediaTooLarge(f"the video is larger than the {max_bytes / 1e6:.0f} MB limit") from None
        if isinstance(cause, _TooLong):
            raise _too_long(cause.seconds, max_seconds) from None
        raise DownloadFailed(_plain(str(exc), host)) from None
    files = [p for p in folder.glob(f"{stem}.*") if not p.name.endswith((".part", ".ytdl"))]
    if not files:
        # yt-dlp skips (without an error) a file whose announced size is over max_filesize.
        raise MediaTooLarge(f"the video is larger than the {max_bytes / 1e6:.0f} MB limit")
    return files[0]


def _too_long(seconds: float, limit: float) -> MediaTooLong:
    return MediaTooLong(f"the video runs {seconds:.0f} seconds; the limit is {limit:.0f} seconds")


def _remove_partial(folder: Path, stem: str) -> None:
    for p in folder.glob(f"{stem}.*"):
        p.unlink(missing_ok=True)
