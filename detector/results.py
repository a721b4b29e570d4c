"""What an analysis returns: plain dataclasses that serialise to the CLI's and the API's JSON.

The verdict rule lives here, in one place, so the CLI, the worker and the web page agree. Two
thresholds on the calibrated fake probability (``Thresholds``, from the model card unless
``--thresholds`` or ``UNMASK_THRESHOLDS`` say otherwise) split it in three, because a score
close to a single line is a guess, and a guess that accuses a real person does more harm than
"cannot tell":
- a **face** is fake at or above the fake threshold, real below the real threshold, and
  uncertain in between (``face_verdict``);
- a **person** in a video is fake when the mean over the frames they were scored in is at or
  above the fake threshold *and* at least ``FRAME_SHARE`` of those frames are; real when the
  mean is below the real threshold and at least that share of frames are; uncertain otherwise:
  frames that disagree are not averaged into a confident answer (``person_verdict``);
- a **file** is fake if any person (video) or face (photo) is fake, uncertain if none is fake and
  any is uncertain, real when all are real (``file_verdict``). Its score is its most suspicious
  person or face.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Verdict = Literal["real", "uncertain", "fake"]
VERDICTS: tuple[str, ...] = ("real", "uncertain", "fake")
Status = Literal["ok", "no_face", "error"]

# The share of a person's scored frames that must agree with their mean for a decided verdict.
FRAME_SHARE = 0.5


@dataclass(frozen=True)
class Thresholds:
    """Calibrated fake probabilities: ``fake`` and above is fake, below ``real`` is real, and
    between them the model cannot tell. ``real == fake`` leaves no uncertain band (an old card's
    single threshold, or two thresholds chosen on validation that crossed)."""

    real: float
    fake: float

    def __post_init__(self) -> None:
        if not (0.0 <= self.real <= self.fake <= 1.0):
            raise ValueError(
                f"thresholds must satisfy 0 <= real <= fake <= 1, got real={self.real} fake={self.fake}"
            )

    @classmethod
    def parse(cls, text: str) -> Thresholds:
        """``"REAL,FAKE"`` (e.g. ``"0.2,0.8"``), as ``--thresholds`` and ``UNMASK_THRESHOLDS``
        take it; one number sets both (no uncertain band)."""
        parts = [p.strip() for p in str(text).split(",")]
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise ValueError(
                f"thresholds must be two numbers REAL,FAKE such as 0.2,0.8, got {text!r}"
            ) from None
        if len(values) == 1:
            values = values * 2
        if len(values) != 2:
            raise ValueError(f"thresholds must be two numbers REAL,FAKE such as 0.2,0.8, got {text!r}")
        return cls(values[0], values[1])

    @classmethod
    def from_card(cls, card: Any) -> Thresholds:
        """The card's ``"thresholds": {"real", "fake"}``; a card from before them has one
        ``threshold``, which becomes both (the old two-state verdict)."""
        data = card if isinstance(card, dict) else {**card.extra, "threshold": card.threshold}
        pair = data.get("thresholds")
        if pair:
            return cls(float(pair["real"]), float(pair["fake"]))
        return cls(float(data["threshold"]), float(data["threshold"]))

    def to_json(self) -> dict:
        return {"real": round(self.real, 4), "fake": round(self.fake, 4)}


def as_thresholds(value: Thresholds | float) -> Thresholds:
    """A single threshold as the pair it means (no uncertain band)."""
    return value if isinstance(value, Thresholds) else Thresholds(float(value), float(value))


def face_verdict(probability: float | None, thresholds: Thresholds | float) -> Verdict | None:
    """One face's verdict from its calibrated fake probability; None when it was not scored."""
    if probability is None:
        return None
    t = as_thresholds(thresholds)
    if probability >= t.fake:
        return "fake"
    if probability < t.real:
        return "real"
    return "uncertain"


def person_verdict(
    scores: Sequence[float], thresholds: Thresholds | float, share: float = FRAME_SHARE
) -> Verdict | None:
    """A person's verdict from their per-frame probabilities: the mean must cross a threshold
    and at least ``share`` of the frames must cross it too, else uncertain."""
    if len(scores) == 0:
        return None
    t = as_thresholds(thresholds)
    s = np.asarray(scores, dtype=np.float64)
    mean = float(s.mean())
    if mean >= t.fake and float((s >= t.fake).mean()) >= share:
        return "fake"
    if mean < t.real and float((s < t.real).mean()) >= share:
        return "real"
    return "uncertain"


def file_verdict(verdicts: Iterable[Verdict | None]) -> Verdict | None:
    """A photo's or video's verdict from its faces' or persons' verdicts (None ones ignored):
    fake if any is fake, uncertain if none is and any is uncertain, real if all are real."""
    decided = [v for v in verdicts if v is not None]
    if not decided:
        return None
    if "fake" in decided:
        return "fake"
    if "uncertain" in decided:
        return "uncertain"
    return "real"


@dataclass
class FaceResult:
    box: tuple[int, int, int, int]
    confidence: float
    fake_probability: float | None  # None when the face is too small to judge
    too_small: bool = False
    track_id: int | None = None
    verdict: Verdict | None = None  # face_verdict, or the person's verdict for a video's face
    # Evidence for a results page, kept only when the Analyzer is asked to (never in JSON):
    # the model's input crop (RGB uint8) and its class activation map (per-cell P(fake), 0..1).
    crop: np.ndarray | None = field(default=None, repr=False, compare=False)
    heatmap: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict:
        out = {"box": list(self.box), "fake_probability": _round(self.fake_probability)}
        out["verdict"] = self.verdict
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
    threshold: float | None = None  # the fake threshold, for readers from before ``thresholds``
    thresholds: Thresholds | None = None
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
    # the share of its test faces the model decides (real or fake) at these thresholds, from its
    # card: how often "uncertain" is to be expected; None under other thresholds
    model_decided: float | None = None
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
        for key in (
            "threshold",
            "width",
            "height",
            "annotated_path",
            "message",
            "model",
            "model_decided",
            "seconds",
        ):
            value = getattr(self, key)
            if value is not None:
                digits = 4 if key == "threshold" else 3  # as precise as the thresholds
                out[key] = round(value, digits) if isinstance(value, float) else value
        if self.thresholds is not None:
            out["thresholds"] = self.thresholds.to_json()
        if self.provenance is not None:
            out["provenance"] = self.provenance
        if self.status == "error":
            out["error"] = self.error or "unknown error"
            out["error_code"] = self.error_code or "error"
        return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)
