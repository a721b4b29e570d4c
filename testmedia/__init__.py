"""Media made from the shared data's real files: a photo, a short clip, a webcam .y4m.

The tests (``tests/webapp``), ``make faults``, ``make load`` and ``make screenshots`` all make
their media here, from ``../shared/data`` (or ``UNMASK_SHARED_DATA``). Nothing third-party is
committed; every file is generated when it is needed. Nothing in ``detector``, ``webapp`` or
``worker`` imports this (an import-linter contract in pyproject.toml says so).
"""

from __future__ import annotations

import itertools
import os
import shutil
import struct
import zlib
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
from PIL import Image

from detector.config import REPO_ROOT

# The shared data beside the project (faces/, videos/), read-only.
SHARED = Path(os.environ.get("UNMASK_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
FACE = SHARED / "faces" / "dfdc" / "real" / "aabqyygbaa.jpg"
# Debian's Chromium (never `playwright install`) and the flags every browser test launches it with.
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
VIDEO = SHARED / "videos" / "real" / "ffpp_519.mp4"
# x264 at its fastest: test media are made often and looked at never.
FAST = {"preset": "ultrafast"}


def face_photo(path: Path, size: tuple[int, int] = (640, 480)) -> Path:
    """A real face crop from the shared data, enlarged and placed on a plain background."""
    face = Image.open(FACE).convert("RGB").resize((320, 320))
    canvas = Image.new("RGB", size, (92, 104, 118))
    canvas.paste(face, ((size[0] - 320) // 2, (size[1] - 320) // 2))
    canvas.save(path, quality=92)
    return path


def write_video(
    target: Path | BinaryIO,
    frames: Iterable[np.ndarray | av.VideoFrame],
    rate: Fraction | int,
    size: tuple[int, int],
    *,
    codec: str = "libx264",
    fmt: str | None = None,
    stream_options: dict[str, str] | None = None,
    options: dict[str, str] | None = None,
    tags: dict[str, str] | None = None,
    stream_tags: dict[str, str] | None = None,
) -> Path | BinaryIO:
    """Encode ``frames`` (RGB arrays or decoded frames, scaled to ``size``) into ``target``.

    Why one writer: the tests, the benchmarks and the hostile corpus each make clips with their
    own codec, container and metadata, and one loop keeps the timestamps (frame ``i`` at
    ``i / rate``) and the flush right in all of them. ``options`` are the muxer's (``movflags``),
    ``stream_options`` the encoder's (``preset``, ``crf``); the container follows the file's
    suffix unless ``fmt`` names it (a file object needs ``fmt``)."""
    width, height = size
    target_arg = str(target) if isinstance(target, Path) else target
    with av.open(target_arg, "w", format=fmt, options=options or {}) as out:
        out.metadata.update(tags or {})
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = stream_options or {}
        stream.metadata.update(stream_tags or {})
        for i, image in enumerate(frames):
            frame = (
                image
                if isinstance(image, av.VideoFrame)
                else av.VideoFrame.from_ndarray(image, format="rgb24")
            )
            frame = frame.reformat(width=width, height=height, format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1) / Fraction(rate)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return target


def opening(source: Path, seconds: float) -> tuple[Fraction, tuple[int, int], Iterator[av.VideoFrame]]:
    """The first ``seconds`` of ``source``'s video: its frame rate, its size and the decoded
    frames, read lazily (the file stays open until the frames are used up)."""

    def frames() -> Iterator[av.VideoFrame]:
        with av.open(str(source)) as src:
            stream = src.streams.video[0]
            rate = Fraction(stream.average_rate or 25)
            for i, frame in enumerate(src.decode(stream)):
                if i >= seconds * rate:
                    return
                yield frame

    with av.open(str(source)) as src:
        stream = src.streams.video[0]
        rate, size = Fraction(stream.average_rate or 25), (stream.width, stream.height)
    return rate, size, frames()


def face_clip(path: Path, seconds: float = 1.2, width: int = 400) -> Path:
    """The first ``seconds`` of a real shared clip, downscaled and re-encoded as H.264, its index
    first as streaming sites serve MP4."""
    rate, (w, h), frames = opening(VIDEO, seconds)
    size = (width, int(h * width / w) // 2 * 2)
    options = {"movflags": "+faststart"}
    return write_video(path, frames, rate, size, fmt="mp4", options=options, stream_options=FAST)


def write_y4m(path: Path, frames: Iterable[av.VideoFrame], size: tuple[int, int], fps: int) -> Path:
    """A fake-camera file for Chromium (--use-file-for-fake-video-capture): 4:2:0 frames."""
    w, h = size
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            yuv = frame.reformat(width=w, height=h, format="yuv420p").to_ndarray()
            out.write(b"FRAME\n" + np.ascontiguousarray(yuv).tobytes())
    return path


def webcam_y4m(path: Path, frames: int = 10, size: tuple[int, int] = (640, 480)) -> Path:
    """A camera that shows the face photo, still."""
    rgb = np.asarray(Image.open(face_photo(path.with_suffix(".jpg"), size)).convert("RGB"))
    return write_y4m(path, [av.VideoFrame.from_ndarray(rgb, format="rgb24")] * frames, size, 10)


def video_y4m(path: Path, frames: int = 20, size: tuple[int, int] = (400, 300)) -> Path:
    """A camera that plays the first frames of a real face video (25 fps)."""
    with av.open(str(VIDEO)) as src:
        stream = src.streams.video[0]
        stream.thread_type = "AUTO"
        return write_y4m(path, itertools.islice(src.decode(stream), frames), size, 25)


def blank_photo(path: Path) -> Path:
    """A real JPEG with no face in it."""
    Image.new("RGB", (320, 240), (200, 180, 160)).save(path)
    return path


def huge_png(path: Path, width: int = 50_000, height: int = 50_000) -> Path:
    """A tiny PNG whose header claims a huge picture (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def truncated_copy(source: Path, path: Path, keep: float = 0.4) -> Path:
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path
