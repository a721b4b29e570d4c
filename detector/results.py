"""What an analysis returns: plain dataclasses that serialise to the CLI's and the API's JSON.

The verdict rule lives here, in one place, so the CLI, the worker and the web page agree:
- a face is fake when its fake probability is at or above the model card's threshold;
- a photo's score is its most suspicious face (one swapped face makes the photo fake);
- a video's score per person is the mean over the frames that person was scored in, and the
  video's score is its most suspicious person with enough frames to judge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Verdict = Literal["real", "fake"]
Status = Literal["ok", "no_face", "error"]


@dataclass
class FaceResult:
    box: tuple[int, int, int, int]
    confidence: float
    fake_probability: float | None  # None when the face is too small to judge
    too_small: bool = False
    track_id: int | None = None
    # Evidence for a results page, kept only when the Analyzer is asked to (never in JSON):
    # the model's input crop (RGB uint8) and its class activation map (per-cell P(fake), 0..1).
    crop: np.ndarray | None = field(default=None, repr=False, compare=False)
    heatmap: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict:
        out = {"box": list(self.box), "fake_probability": _round(self.fake_probability)}
        out["confidence"] = round(self.confidence, 4)
        if self.too_small:
            out["too_small"] = True
        if self.track_id is not None:
            out["track_id"] = self.track_id
        return out


@dataclass
class TrackResult:
    """One person followed across the sampled frames of a video."""

    track_id: int
    fake_probability: float | None
    verdict: Verdict | None
    frames: int
    first_time: float
    last_time: float
    box: tuple[int, int, int, int]  # the box in the frame where the face was largest
    crop: np.ndarray | None = field(default=None, repr=False, compare=False)
    heatmap: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict:
        return {
            "track_id": self.track_id,
            "fake_probability": _round(self.fake_probability),
            "verdict": self.verdict,
            "frames": self.frames,
            "first_time": round(self.first_time, 3),
            "last_time": round(self.last_time, 3),
            "box": list(self.box),
        }


@dataclass
class FrameScore:
    index: int
    time: float
    fake_probability: float | None  # the frame's most suspicious face; None when no face


@dataclass
class AnalysisResult:
    path: str
    kind: Literal["image", "video"]
    status: Status
    verdict: Verdict | None = None
    fake_probability: float | None = None
    threshold: float | None = None
    faces: list[FaceResult] = field(default_factory=list)
    tracks: list[TrackResult] = field(default_factory=list)
    timeline: list[FrameScore] = field(default_factory=list)
    frames_analyzed: int | None = None
    width: int | None = None
    height: int | None = None
    duration: float | None = None
    fps: float | None = None
    annotated_path: str | None = None
    error: str | None = None
    error_code: str | None = None
    message: str | None = None  # plain words for a user, e.g. why no face was scored
    model: str | None = None
    seconds: float | None = None
    # What the file says about itself (C2PA, EXIF, container tags): beside the score, never in it.
    provenance: dict | None = None

    def to_json(self) -> dict:
        """The CLI's ``--json`` line and the API's result: one flat object per file."""
        out: dict = {
            "path": self.path,
            "kind": self.kind,
            "status": self.status,
            "verdict": self.verdict,
            "fake_probability": _round(self.fake_probability),
            "faces": [f.to_json() for f in self.faces],
        }
        if self.kind == "video":
            out["frames_analyzed"] = self.frames_analyzed or 0
            out["persons"] = [t.to_json() for t in self.tracks]
            out["timeline"] = [
                {"frame": s.index, "time": round(s.time, 3), "fake_probability": _round(s.fake_probability)}
                for s in self.timeline
            ]
            out["duration"] = None if self.duration is None else round(self.duration, 3)
            out["fps"] = None if self.fps is None else round(self.fps, 3)
        for key in ("threshold", "width", "height", "annotated_path", "message", "model", "seconds"):
            value = getattr(self, key)
            if value is not None:
                out[key] = round(value, 3) if isinstance(value, float) else value
        if self.provenance is not None:
            out["provenance"] = self.provenance
        if self.status == "error":
            out["error"] = self.error or "unknown error"
            out["error_code"] = self.error_code or "error"
        return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def verdict_for(probability: float | None, threshold: float) -> Verdict | None:
    if probability is None:
        return None
    return "fake" if probability >= threshold else "real"
