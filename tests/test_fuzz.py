"""Property-based fuzzing of the media entry points on mutated bytes of real small files.

Whatever the bytes, ``detect_type``, ``load_image`` and ``probe_video`` either succeed or raise
an ``UnmaskError`` subclass: any other exception is a bug. Hypothesis runs derandomized (the same
examples on every run, so CI cannot flake); set ``UNMASK_FUZZ_EXAMPLES`` (default 20) for a
longer hunt, e.g. ``UNMASK_FUZZ_EXAMPLES=2000 pytest tests/test_fuzz.py``.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from detector.config import Settings
from detector.errors import CorruptMedia, UnmaskError, UnsupportedMedia
from detector.media import detect_type, load_image
from detector.video import probe_video
from testmedia import write_video

EXAMPLES = int(os.environ.get("UNMASK_FUZZ_EXAMPLES", "20"))
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
LIMITS = Settings()


def _image(fmt: str) -> bytes:
    rng = np.random.default_rng(0)
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(out, fmt)
    return out.getvalue()


def _video(fmt: str, codec: str) -> bytes:
    frames = (np.full((24, 32, 3), 40 * i, dtype=np.uint8) for i in range(5))
    return write_video(io.BytesIO(), frames, 10, (32, 24), codec=codec, fmt=fmt).getvalue()


SEEDS = {
    "jpg": _image("JPEG"),
    "png": _image("PNG"),
    "gif": _image("GIF"),
    "mp4": _video("mp4", "libx264"),
    "webm": _video("webm", "libvpx"),
}


@st.composite
def mutated(draw, seed: bytes) -> bytes:
    """The seed with a few bytes overwritten, a stretch cut or repeated, and maybe truncated."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(0, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        start = draw(st.integers(0, len(data) - 1))
        end = draw(st.integers(start, min(len(data), start + 512)))
        if draw(st.booleans()):
            del data[start:end]
        else:
            data[start:start] = data[start:end] * draw(st.integers(1, 4))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


def _only_unmask_errors(call, path: Path) -> None:
    try:
        call(path, LIMITS)
    except UnmaskError:
        pass


# What reads each kind of file first in the product: the sniffing, then the image or video reader.
READERS = {"jpg": load_image, "png": load_image, "gif": load_image, "mp4": probe_video, "webm": probe_video}


@pytest.mark.parametrize("kind", list(READERS))
def test_media_survive_mutation(tmp_path, kind):
    path = tmp_path / f"fuzz.{kind}"

    @FUZZ
    @given(data=mutated(SEEDS[kind]))
    def check(data: bytes) -> None:
        path.write_bytes(data)
        _only_unmask_errors(detect_type, path)
        _only_unmask_errors(READERS[kind], path)

    check()


@FUZZ
@given(data=st.binary(max_size=256))
def test_arbitrary_bytes_never_crash_the_probes(tmp_path_factory, data):
    path = tmp_path_factory.getbasetemp() / "fuzz-any.bin"
    path.write_bytes(data)
    for call in (detect_type, load_image, probe_video):
        _only_unmask_errors(call, path)


def test_unknown_codec_is_unsupported_not_a_crash(tmp_path):
    """Found by this fuzzer: a track whose codec FFmpeg does not know has no codec context."""
    data = SEEDS["mp4"]
    tag = data.index(b"avc1", data.index(b"stsd"))
    path = tmp_path / "unknown-codec.mp4"
    path.write_bytes(data[:tag] + b"zzzz" + data[tag + 4 :])
    with pytest.raises(UnsupportedMedia, match="codec"):
        probe_video(path, LIMITS)


def test_unseekable_index_is_corrupt_not_a_crash(tmp_path):
    """Found by this fuzzer: without ``mvhd`` the packets are counted, then the seek back fails."""
    path = tmp_path / "no-mvhd.mp4"
    path.write_bytes(SEEDS["mp4"].replace(b"mvhd", b"\x00vhd", 1))
    with pytest.raises(CorruptMedia, match="cannot be read"):
        probe_video(path, LIMITS)
