"""Write a corpus of hostile media into a folder (never commit it), and optionally run it.

    python -m scripts.make_hostile_corpus /tmp/hostile           # write the files
    python -m scripts.make_hostile_corpus /tmp/hostile --check   # and analyse each one

Every file must end as a clear error (a failed job), never a crash or a runaway: truncated and
corrupted JPEG / PNG / MP4 / WebM, a zip and an HTML page named ``.mp4``, a decompression bomb
(a tiny PNG whose header says 30000 x 30000), 100000 frames at 2 x 2, absurd rotation and frame
rate metadata, and an empty file. ``--check`` runs each through ``Analyzer.analyze`` in this
process and prints the error shown and the peak resident memory after it (``ru_maxrss``).
The sources are generated here (a flat picture, a few synthetic frames): nothing is downloaded.
"""

from __future__ import annotations

import argparse
import io
import random
import resource
import struct
import sys
import zipfile
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from detector.analyze import Analyzer
from detector.errors import UnmaskError
from testmedia import FAST, write_video


def _frames(count: int, width: int, height: int):
    rng = np.random.default_rng(0)
    for i in range(count):
        image = np.full((height, width, 3), (i * 7) % 255, dtype=np.uint8)
        image[: height // 2] = rng.integers(0, 255, (height // 2, width, 3), dtype=np.uint8)
        yield image


def _video(
    path: Path, codec: str, fmt: str, count: int, size: tuple[int, int], rate: Fraction, metadata=None
) -> Path:
    options = FAST if codec == "libx264" else None
    return write_video(
        path,
        _frames(count, *size),
        rate,
        size,
        codec=codec,
        fmt=fmt,
        stream_options=options,
        stream_tags=metadata,
    )


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _bomb_png(path: Path, side: int = 30_000) -> Path:
    """A valid PNG of side x side grey pixels, all zeros, compressed to a few tens of kilobytes."""
    compressor = zlib.compressobj(9)
    row = b"\x00" + b"\x00" * side  # filter byte + one byte per pixel (greyscale)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    body = _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def _corrupt(data: bytes, start: float = 0.3, seed: int = 1) -> bytes:
    """Overwrite a stretch in the middle with noise, keeping the header intact."""
    rng = random.Random(seed)
    out = bytearray(data)
    begin = max(64, int(len(out) * start))
    for i in range(begin, min(len(out), begin + max(256, len(out) // 4))):
        out[i] = rng.randrange(256)
    return bytes(out)


def make_corpus(folder: Path) -> list[Path]:
    """Write every hostile file into ``folder``; return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".sources"
    tmp.mkdir(exist_ok=True)
    photo = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(
        photo, "JPEG", quality=90
    )
    jpeg = photo.getvalue()
    png_io = io.BytesIO()
    Image.new("RGB", (320, 240), (90, 120, 160)).save(png_io, "PNG")
    png = png_io.getvalue()
    mp4 = _video(tmp / "src.mp4", "libx264", "mp4", 30, (160, 120), Fraction(25)).read_bytes()
    webm = _video(tmp / "src.webm", "libvpx", "webm", 30, (160, 120), Fraction(25)).read_bytes()

    files: dict[str, bytes | None] = {
        "truncated.jpg": jpeg[: len(jpeg) // 3],
        "corrupt.jpg": _corrupt(jpeg),
        "truncated.png": png[: len(png) // 2],
        "corrupt.png": _corrupt(png, 0.2),
        "truncated.mp4": mp4[: len(mp4) // 3],
        "corrupt.mp4": _corrupt(mp4, 0.2),
        "header-only.mp4": mp4[:64],
        "truncated.webm": webm[: len(webm) // 3],
        "corrupt.webm": _corrupt(webm, 0.2),
        "empty.mp4": b"",
        "html-named.mp4": b"<!doctype html><html><body><script>alert(1)</script></body></html>\n" * 20,
        "zip-named.mp4": None,
        "bomb-30000x30000.png": None,
        "frames-100000-at-2x2.mkv": None,
        "rotation-absurd.mp4": None,
        "framerate-absurd.mp4": None,
    }
    for name, data in files.items():
        if data is not None:
            (folder / name).write_bytes(data)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("movie.mp4", mp4)
    (folder / "zip-named.mp4").write_bytes(archive.getvalue())
    _bomb_png(folder / "bomb-30000x30000.png")
    _video(folder / "frames-100000-at-2x2.mkv", "mpeg4", "matroska", 100_000, (2, 2), Fraction(25))
    _video(
        folder / "rotation-absurd.mp4",
        "libx264",
        "mp4",
        10,
        (160, 120),
        Fraction(25),
        metadata={"rotate": "123456789"},
    )
    _video(folder / "framerate-absurd.mp4", "libx264", "mp4", 10, (160, 120), Fraction(1_000_000))
    for path in tmp.iterdir():
        path.unlink()
    tmp.rmdir()
    return sorted(folder / name for name in files)


def check(paths: list[Path]) -> int:
    """Analyse each file in this process; print the outcome and the peak memory so far."""
    analyzer = Analyzer()
    bad = 0
    print(f"{'file':28} {'bytes':>9}  {'peak MB':>7}  outcome")
    for path in paths:
        try:
            result = analyzer.analyze(path)
            outcome = f"{result.status}: {result.message or result.verdict}"
        except UnmaskError as exc:
            outcome = f"{exc.code}: {exc}"
        except Exception as exc:  # a bug: reported, and the run goes on
            bad += 1
            outcome = f"BUG {type(exc).__name__}: {exc}"
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{path.name:28} {path.stat().st_size:>9}  {peak:7.0f}  {outcome}")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="where to write the corpus (kept out of git)")
    parser.add_argument("--check", action="store_true", help="analyse each file and report")
    args = parser.parse_args(argv)
    paths = make_corpus(args.folder)
    print(f"wrote {len(paths)} files to {args.folder}", file=sys.stderr)
    return check(paths) if args.check else 0


if __name__ == "__main__":
    sys.exit(main())
