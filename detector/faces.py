"""Finding faces and cutting the square crops the classifier sees.

Two detectors share one small interface: MediaPipe BlazeFace (default: fast, gives six landmarks)
and OpenCV's Haar cascade (no neural network, selectable). Both look at the picture with a black
border added around it, because BlazeFace's short-range model misses faces that fill the frame
(close-ups, ready-made crops) and the border brings them back into its working range. The same
``crop_face`` serves training and serving, so the model always sees faces framed the same way.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import cv2
import numpy as np

# Fraction of each side added as black border before detection (see the module docstring).
DETECTION_BORDER = 0.3


@dataclass
class Face:
    """One detected face in the coordinates of the analysed picture."""

    box: tuple[int, int, int, int]  # x, y, width, height
    confidence: float
    landmarks: list[tuple[float, float]] = field(default_factory=list)

    @property
    def size(self) -> int:
        return min(self.box[2], self.box[3])


class FaceDetector(Protocol):
    name: str

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 image, largest first."""
        ...


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """MediaPipe's C++ side logs set-up chatter straight to fd 2; hide it while a graph starts."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)


def _add_border(image: np.ndarray, fraction: float) -> tuple[np.ndarray, int, int]:
    h, w = image.shape[:2]
    px, py = round(w * fraction), round(h * fraction)
    padded = cv2.copyMakeBorder(image, py, py, px, px, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    return padded, px, py


def _clip_box(x: float, y: float, w: float, h: float, width: int, height: int) -> tuple[int, ...]:
    x0, y0 = max(0.0, x), max(0.0, y)
    x1, y1 = min(float(width), x + w), min(float(height), y + h)
    return round(x0), round(y0), round(x1 - x0), round(y1 - y0)


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int], iou: float) -> bool:
    """Same face: boxes overlap by ``iou``, or one sits almost wholly inside the other (a face
    cannot contain another face, so nested boxes are one face found at two scales)."""
    if _iou(a, b) >= iou:
        return True
    iw = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    smaller = min(a[2] * a[3], b[2] * b[3])
    return smaller > 0 and iw * ih / smaller >= 0.7


def _dedupe(faces: list[Face], threshold: float = 0.3) -> list[Face]:
    kept: list[Face] = []
    for face in sorted(faces, key=lambda f: f.confidence, reverse=True):
        if not any(_overlaps(face.box, k.box, threshold) for k in kept):
            kept.append(face)
    return sorted(kept, key=lambda f: f.box[2] * f.box[3], reverse=True)


class BlazeFaceDetector:
    """MediaPipe BlazeFace, its two models combined for faces near and far.

    The short-range model gives the tightest boxes for faces of ordinary size; the full-range
    model finds small faces far from the camera (it runs on pictures larger than a crop); and
    the short-range model on the picture with a black border finds close-ups that fill the
    frame, but invents large faces on bodies when the real face is small, so it is consulted
    only when nothing confident was found and must itself be confident. On close-ups the
    bordered and plain boxes agree in size and centre (measured within 5 %), so crops are framed
    the same whichever pass found the face. MediaPipe graphs are not thread-safe: calls are
    serialised per instance.
    """

    CONFIDENT = 0.75  # a plain short-range face this sure needs no second opinion
    BORDER_MIN = 0.6  # on wide pictures the bordered pass's false faces on bodies scored 0.51 to 0.63
    FULL_RANGE_MIN_SIDE = 360  # smaller pictures are crops, where full-range misses (27 %)

    name = "blazeface"

    def __init__(self, min_confidence: float = 0.5) -> None:
        self.min_confidence = min_confidence
        self._short = None
        self._full = None
        self._lock = threading.Lock()

    def _graph(self, full_range: bool):
        import mediapipe as mp  # imported lazily: it is heavy and only this detector needs it

        attr = "_full" if full_range else "_short"
        if getattr(self, attr) is None:
            with _native_stderr_silenced():
                graph = mp.solutions.face_detection.FaceDetection(
                    model_selection=1 if full_range else 0,
                    min_detection_confidence=self.min_confidence,
                )
                graph.process(np.zeros((64, 64, 3), dtype=np.uint8))  # first run logs too
            setattr(self, attr, graph)
        return getattr(self, attr)

    def _run(self, image: np.ndarray, full_range: bool, border: float) -> list[Face]:
        h, w = image.shape[:2]
        padded, px, py = _add_border(image, border) if border else (image, 0, 0)
        ph, pw = padded.shape[:2]
        result = self._graph(full_range).process(np.ascontiguousarray(padded))
        faces = []
        for det in result.detections or []:
            rel = det.location_data.relative_bounding_box
            box = _clip_box(rel.xmin * pw - px, rel.ymin * ph - py, rel.width * pw, rel.height * ph, w, h)
            if box[2] < 2 or box[3] < 2:
                continue
            marks = [(kp.x * pw - px, kp.y * ph - py) for kp in det.location_data.relative_keypoints]
            faces.append(Face(box=box, confidence=float(det.score[0]), landmarks=marks))
        return faces

    def detect(self, image: np.ndarray) -> list[Face]:
        with self._lock:
            crop_like = min(image.shape[:2]) < self.FULL_RANGE_MIN_SIDE
            faces = self._run(image, full_range=False, border=0.0)
            if not crop_like:
                faces += self._run(image, full_range=True, border=0.0)
            if not any(f.confidence >= self.CONFIDENT for f in faces):
                bordered = self._run(image, full_range=False, border=DETECTION_BORDER)
                # a crop has no body to invent a face on; a wider picture does
                faces += [f for f in bordered if crop_like or f.confidence >= self.BORDER_MIN]
        return _dedupe(faces)

    def close(self) -> None:
        for graph in (self._short, self._full):
            if graph is not None:
                graph.close()
        self._short = self._full = None


class HaarDetector:
    """OpenCV's frontal-face Haar cascade. Confidence is the neighbour count scaled to 0..1."""

    name = "haar"

    def __init__(self, min_confidence: float = 0.5) -> None:
        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise RuntimeError(f"OpenCV Haar cascade missing at {path}")
        self.min_confidence = min_confidence
        self._lock = threading.Lock()

    def detect(self, image: np.ndarray) -> list[Face]:
        h, w = image.shape[:2]
        padded, px, py = _add_border(image, DETECTION_BORDER)
        grey = cv2.equalizeHist(cv2.cvtColor(padded, cv2.COLOR_RGB2GRAY))
        scale = 1.0
        longest = max(grey.shape)
        if longest > 1280:  # the cascade's cost grows with area; faces it can judge survive this
            scale = 1280 / longest
            grey = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        with self._lock:
            boxes, neighbours = self._cascade.detectMultiScale2(
                grey, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24)
            )
        faces = []
        for (x, y, bw, bh), n in zip(boxes, np.ravel(neighbours), strict=False):
            conf = float(min(1.0, n / 20.0))
            if conf < self.min_confidence * 0.5:
                continue
            box = _clip_box(x / scale - px, y / scale - py, bw / scale, bh / scale, w, h)
            if box[2] >= 2 and box[3] >= 2:
                faces.append(Face(box=box, confidence=conf))
        return _dedupe(faces)

    def close(self) -> None:
        pass


DETECTORS = {"blazeface": BlazeFaceDetector, "haar": HaarDetector}


def create_detector(name: str = "blazeface", min_confidence: float = 0.5) -> FaceDetector:
    try:
        cls = DETECTORS[name]
    except KeyError:
        raise ValueError(f"unknown face detector {name!r}; choose one of {sorted(DETECTORS)}") from None
    return cls(min_confidence=min_confidence)


def square_box(box: tuple[int, int, int, int], margin: float) -> tuple[int, int, int]:
    """The square (x, y, side) centred on a face box, grown by ``margin`` of its side per edge."""
    x, y, w, h = box
    side = max(w, h) * (1.0 + 2.0 * margin)
    cx, cy = x + w / 2.0, y + h / 2.0
    return round(cx - side / 2), round(cy - side / 2), max(1, round(side))


def crop_face(image: np.ndarray, box: tuple[int, int, int, int], margin: float, size: int) -> np.ndarray:
    """Square crop around a face, black where it runs past the frame, resized to ``size``."""
    sx, sy, side = square_box(box, margin)
    h, w = image.shape[:2]
    x0, y0, x1, y1 = max(sx, 0), max(sy, 0), min(sx + side, w), min(sy + side, h)
    canvas = np.zeros((side, side, 3), dtype=np.uint8)
    if x1 > x0 and y1 > y0:
        canvas[y0 - sy : y1 - sy, x0 - sx : x1 - sx] = image[y0:y1, x0:x1]
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(canvas, (size, size), interpolation=interp)


def frame_width(side: int, fraction: float) -> int:
    """Pixels of ``mask_frame``'s black frame on each edge of a crop ``side`` pixels wide (the
    browser's cropFace rounds the same way)."""
    return round(side * fraction) if fraction > 0 else 0


def mask_frame(crop: np.ndarray, fraction: float) -> np.ndarray:
    """Black out an even frame of ``fraction`` of the side on each edge of a square crop.

    Ready-made face crops (DFDC) run out of picture inside the crop margin and come with black
    edges, while crops from video frames do not: a model can learn that difference instead of
    the face (measured: a real FaceForensics++ clip scored 0.98 fake unmasked, 0.43 masked).
    Masking every crop the same way, in training and in serving, removes the cue.
    """
    b = frame_width(crop.shape[0], fraction)
    if b == 0:  # a fraction too small for one pixel masks nothing (``out[-0:]`` would be all of it)
        return crop
    out = crop.copy()
    out[:b], out[-b:], out[:, :b], out[:, -b:] = 0, 0, 0, 0
    return out
