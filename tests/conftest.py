"""Shared fixtures for the detection core: real faces from shared data, and media made here.

Every clip is generated in ``tmp_path`` with PyAV (as PyAV's own ``generate_video.py`` does) from
real face photos, so each test decodes real files and no fixture media lives in git. The model is
the one the settings name: ``models/unmask-lite0`` unless ``UNMASK_MODEL_DIR`` says otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
from PIL import Image

import testmedia
from detector.analyze import Analyzer
from detector.config import Settings, settings_from_env

SHARED_DATA = testmedia.SHARED
FACES = SHARED_DATA / "faces"
VIDEOS = SHARED_DATA / "videos"

# Frames scored per video in tests: enough to track people, few enough to stay fast.
TEST_SAMPLE_FRAMES = 6

Draw = Callable[[np.ndarray, int], None]


@lru_cache(maxsize=32)
def _face_photo(dataset: str, label: str, index: int) -> np.ndarray:
    files = sorted((FACES / dataset / label).glob("*.jpg"))
    if not files:
        pytest.fail(f"no face photos in {FACES / dataset / label}: is the shared data mounted?")
    with Image.open(files[index]) as img:
        return np.asarray(img.convert("RGB"))


def face_photo_path(index: int = 0, dataset: str = "utkface", label: str = "real") -> Path:
    return sorted((FACES / dataset / label).glob("*.jpg"))[index]


@pytest.fixture(scope="session")
def face_image() -> Callable[..., np.ndarray]:
    """``face_image(index=0, dataset="utkface", label="real")``: a real face photo as RGB uint8.

    The UTKFace crops are 200x200 with one frontal face filling most of the picture."""

    def load(index: int = 0, dataset: str = "utkface", label: str = "real") -> np.ndarray:
        return _face_photo(dataset, label, index).copy()

    return load


def paste_faces(
    canvas_size: tuple[int, int], faces: Sequence[np.ndarray], shift: int = 0, background: int = 90
) -> np.ndarray:
    """Faces side by side on a grey canvas (width, height), each in its own slot, moved ``shift`` px."""
    width, height = canvas_size
    canvas = np.full((height, width, 3), background, dtype=np.uint8)
    if not faces:
        return canvas
    slot = width // len(faces)
    for i, face in enumerate(faces):
        fh, fw = face.shape[:2]
        x = i * slot + (slot - fw) // 2 + shift
        y = (height - fh) // 2
        x0, x1 = max(x, 0), min(x + fw, width)
        canvas[y : y + fh, x0:x1] = face[:, x0 - x : x1 - x]
    return canvas


def make_clip(
    path: Path,
    images: Sequence[np.ndarray] = (),
    fps: int = 15,
    size: tuple[int, int] = (320, 240),
    seconds: float = 1.0,
    audio: bool | str = False,
    rotation: int = 0,
    faststart: bool = False,
    draw: Draw | None = None,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
) -> Path:
    """A clip with ``images`` side by side on a canvas, moving 2 px per frame (H.264 by default).

    The container follows the suffix (.mp4, .mov, .mkv, .webm, .avi). ``rotation`` is stored as
    display-matrix metadata (the pixels stay as drawn); ``audio`` adds a sine track of the same
    length, AAC when True or the named codec; ``draw(frame, index)`` paints on each frame before
    encoding. PyAV writes an MP4's moov atom at the end unless ``faststart``."""
    width, height = size
    frames = round(fps * seconds)
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        video = container.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        if rotation:
            video.set_display_rotation(rotation)
        sound = None
        if audio:
            sound = container.add_stream("aac" if audio is True else audio, rate=44100)
        for i in range(frames):
            frame = paste_faces(size, images, shift=2 * i)
            if draw is not None:
                draw(frame, i)
            for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if sound is not None:
            _write_tone(container, sound, seconds)
    return path


def _write_tone(container, stream, seconds: float, rate: int = 44100, chunk: int = 1024) -> None:
    t = np.arange(round(rate * seconds)) / rate
    samples = 0.2 * np.sin(2 * np.pi * 440 * t)
    fmt = stream.format.name  # the encoder's native sample format: fltp for AAC, s16 for PCM
    data = (samples * 32767).astype(np.int16) if fmt.startswith("s16") else samples.astype(np.float32)
    for start in range(0, len(data), chunk):
        frame = av.AudioFrame.from_ndarray(data[None, start : start + chunk], format=fmt, layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def save_image(image: np.ndarray | Image.Image, path: Path, **options) -> Path:
    """Write an array or PIL image; the format follows ``options['format']`` or the suffix."""
    img = image if isinstance(image, Image.Image) else Image.fromarray(image)
    img.save(path, **options)
    return path


def gradient(width: int = 320, height: int = 240) -> np.ndarray:
    """A smooth colour gradient: a valid picture with no face in it."""
    xs = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    ys = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    r = np.broadcast_to(xs, (height, width))
    g = np.broadcast_to(ys, (height, width))
    b = np.full((height, width), 128.0, dtype=np.float32)
    return np.stack([r, g, b], axis=-1).astype(np.uint8)


def red_corner(image: np.ndarray, inset: int) -> str:
    """The one corner of ``image`` holding a red mark, looked for ``inset`` pixels in from the edges.

    Rotation tests (EXIF for photos, the display matrix for videos) mark one corner of the stored
    picture and ask where it ends up once the picture is shown upright.
    """
    h, w = image.shape[:2]
    corners = {
        "top-left": (inset, inset),
        "top-right": (inset, w - 1 - inset),
        "bottom-left": (h - 1 - inset, inset),
        "bottom-right": (h - 1 - inset, w - 1 - inset),
    }
    red = [name for name, (y, x) in corners.items() if image[y, x, 0] > 200 and image[y, x, 1] < 80]
    assert len(red) == 1, f"expected the mark in exactly one corner, found {red}"
    return red[0]


def truncate(path: Path, fraction: float = 0.5) -> Path:
    """Cut a file to ``fraction`` of its bytes, as an interrupted download or copy leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test that takes ``shared_video`` runs once per labelled clip in ``videos/{real,fake}/``."""
    if "shared_video" in metafunc.fixturenames:
        clips = sorted(VIDEOS.glob("*/*.mp4"))
        params = [pytest.param(p, id=f"{p.parent.name}/{p.name}", marks=_known_miss(p)) for p in clips]
        metafunc.parametrize("shared_video", params)


# Clips the shipped model is known to get wrong (models/README.md gives the scores). Strict, so
# a model that gets one right makes the test fail until the clip is taken off this list.
KNOWN_VIDEO_MISSES: dict[str, str] = {}  # 0.2.0 gets all seven right


def _known_miss(clip: Path) -> list:
    reason = KNOWN_VIDEO_MISSES.get(f"{clip.parent.name}/{clip.name}")
    return [pytest.mark.xfail(reason=reason, strict=True)] if reason else []


@pytest.fixture(scope="session")
def shared_faces() -> Path:
    """``faces/`` of the shared data: ``<set>/{real,fake}/`` with a ``labels.csv`` per set."""
    if not FACES.is_dir():
        pytest.fail(f"shared data not found at {FACES} (set UNMASK_SHARED_DATA)", pytrace=False)
    return FACES


@pytest.fixture(name="make_clip", scope="session")
def make_clip_fixture() -> Callable[..., Path]:
    """``make_clip(path, images, fps=15, size=(320, 240), seconds=1.0, audio=False, rotation=0, ...)``."""
    return make_clip


@pytest.fixture(scope="session")
def media() -> SimpleNamespace:
    """Small media helpers: ``paste_faces``, ``gradient``, ``save_image``, ``truncate``,
    ``face_photo_path``, ``red_corner``."""
    return SimpleNamespace(
        paste_faces=paste_faces,
        red_corner=red_corner,
        gradient=gradient,
        save_image=save_image,
        truncate=truncate,
        face_photo_path=face_photo_path,
    )


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The model the settings name; a missing model fails loudly rather than skipping."""
    directory = settings_from_env().model_dir
    if not (directory / "card.json").exists():
        pytest.fail(
            f"no model card at {directory}: commit models/unmask-lite0 or set UNMASK_MODEL_DIR",
            pytrace=False,
        )
    return directory


@pytest.fixture(scope="session")
def settings(model_dir: Path) -> Settings:
    return Settings(model_dir=model_dir, sample_frames=TEST_SAMPLE_FRAMES, threads=2)


@pytest.fixture(scope="session")
def analyzer(settings: Settings):
    """One Analyzer (BlazeFace + the ONNX model) for the whole session: loading costs seconds."""
    return Analyzer(settings)


@pytest.fixture(scope="session")
def predictor(analyzer):
    return analyzer.predictor
