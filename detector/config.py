"""Settings for the detection library, read once from ``UNMASK_*`` environment variables.

Every limit has a safe default so that ``python -m detector scan`` works on a fresh clone with
nothing set; the worker and the web app read the same object, so a limit is defined in one place.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from pathlib import Path

from .results import Thresholds

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_DIR = REPO_ROOT / "models" / "unmask-lite0"


@dataclass(frozen=True)
class Settings:
    """Limits and choices for analysis. Construct directly in tests; ``get_settings()`` elsewhere."""

    model_dir: Path = DEFAULT_MODEL_DIR
    face_detector: str = "blazeface"
    # A face whose box is smaller than this (pixels, shorter side) is reported, not scored.
    min_face_size: int = 36
    # Faces below this detector confidence are dropped.
    min_detection_confidence: float = 0.5
    max_file_bytes: int = 1024 * 1024 * 1024
    max_image_pixels: int = 60_000_000
    max_video_frame_pixels: int = 4096 * 2304
    max_video_seconds: float = 600.0
    max_video_frames: int = 36_000
    # Frames sampled evenly across a video when not analysing every frame.
    sample_frames: int = 32
    # Threads for ONNX Runtime; 0 lets it choose.
    threads: int = 0
    # PEM file of C2PA trust anchors; without it, signed files read as "untrusted" at best.
    c2pa_trust_anchors: Path | None = None
    # The verdict's two thresholds on the calibrated P(fake), "REAL,FAKE"; unset: the model card's.
    thresholds: Thresholds | None = None

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)


def _coerce(kind: type, raw: str) -> object:
    if "Thresholds" in str(kind):
        return Thresholds.parse(raw)
    if kind is Path or "Path" in str(kind):
        return Path(raw).expanduser()
    if kind in (int, "int"):
        return int(raw)
    if kind in (float, "float"):
        return float(raw)
    return raw


def settings_from_env(environ: dict[str, str] | None = None) -> Settings:
    """Build settings from the environment; unknown or unset variables keep the defaults."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for f in fields(Settings):
        raw = env.get(f"UNMASK_{f.name.upper()}")
        if raw is None or raw == "":
            continue
        try:
            values[f.name] = _coerce(f.type, raw)
        except ValueError as exc:
            kind = "REAL,FAKE pair" if "Thresholds" in str(f.type) else f.type
            raise ValueError(f"UNMASK_{f.name.upper()}={raw!r} is not a valid {kind}: {exc}") from exc
    return Settings(**values)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return settings_from_env()
