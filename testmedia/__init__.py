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
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

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


def face_photo(path: Path, size: tuple[int, int] = (640, 480)) -> Path:
    """A real face crop from the shared data, enlarged and placed on a plain background."""
    face = Image.open(FACE).convert("RGB").resize((320, 320))
    canvas = Image.new("RGB", size, (92, 104, 118))
    canvas.paste(face, ((size[0] - 320) // 2, (size[1] - 320) // 2))
    canvas.save(path, quality=92)
    return path


def face_clip(path: Path, seconds: float = 1.2, width: int = 400) -> Path:
    """The first ``seconds`` of a real shared clip, downscaled and re-encoded as H.264."""
    options = {"movflags": "+faststart"}  # the index first, as streaming sites serve MP4
    with av.open(str(VIDEO)) as src, av.open(str(path), "w", format="mp4", options=options) as out:
        stream = src.streams.video[0]
        rate = Fraction(stream.average_rate or 25)
        height = int(stream.height * width / stream.width) // 2 * 2
        enc = out.add_stream("libx264", rate=rate)
        enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
        enc.options = {"preset": "ultrafast"}
        enc.codec_context.time_base = 1 / rate
        for i, frame in enumerate(src.decode(stream)):
            if i >= seconds * float(rate):
                break
            small = frame.reformat(width=width, height=height, format="yuv420p")
            small.pts = i
            small.time_base = 1 / rate
            for packet in enc.encode(small):
                out.mux(packet)
        for packet in enc.encode():
            out.mux(packet)
    return path


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
