"""Following faces from frame to frame, so a video with two people gets a verdict per person.

Greedy matching on box overlap, with a centre-distance fallback because sampled frames can be
a second apart: a talking head moves little in that time, two different people rarely overlap.
``FaceFollower`` makes detection cheaper on consecutive frames, where a face is found again
near where it just was.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .faces import Face, FaceDetector, _iou

Box = tuple[int, int, int, int]


@dataclass
class Track:
    track_id: int
    last_box: Box
    last_time: float
    first_time: float
    hits: int = 1
    scores: list[float] = field(default_factory=list)
    largest_box: Box | None = None


def _centre_distance(a: Box, b: Box) -> float:
    ax, ay = a[0] + a[2] / 2, a[1] + a[3] / 2
    bx, by = b[0] + b[2] / 2, b[1] + b[3] / 2
    scale = max(1.0, (a[2] + b[2]) / 2)
    return (((ax - bx) ** 2 + (ay - by) ** 2) ** 0.5) / scale


class FaceTracker:
    def __init__(self, max_gap_seconds: float = 2.0, min_iou: float = 0.2, max_centre_distance: float = 0.6):
        self.max_gap = max_gap_seconds
        self.min_iou = min_iou
        self.max_dist = max_centre_distance
        self.tracks: list[Track] = []

    def update(self, time: float, boxes: list[Box]) -> list[int]:
        """Track ids for ``boxes`` (same order), opening new tracks where nothing matches."""
        active = [t for t in self.tracks if time - t.last_time <= self.max_gap]
        pairs = []
        for ti, track in enumerate(active):
            for bi, box in enumerate(boxes):
                iou = _iou(track.last_box, box)
                dist = _centre_distance(track.last_box, box)
                if iou >= self.min_iou or dist <= self.max_dist:
                    pairs.append((iou - 0.1 * dist, ti, bi))
        ids: list[int | None] = [None] * len(boxes)
        used_tracks: set[int] = set()
        for _, ti, bi in sorted(pairs, reverse=True):
            if ti in used_tracks or ids[bi] is not None:
                continue
            used_tracks.add(ti)
            track = active[ti]
            track.last_box, track.last_time = boxes[bi], time
            track.hits += 1
            if (
                track.largest_box is None
                or boxes[bi][2] * boxes[bi][3] > track.largest_box[2] * track.largest_box[3]
            ):
                track.largest_box = boxes[bi]
            ids[bi] = track.track_id
        for bi, box in enumerate(boxes):
            if ids[bi] is None:
                track = Track(len(self.tracks), box, time, time, largest_box=box)
                self.tracks.append(track)
                ids[bi] = track.track_id
        return [int(i) for i in ids]

    def get(self, track_id: int) -> Track:
        return self.tracks[track_id]


class FaceFollower:
    """Face detection for consecutive frames of one video, most of it on small windows.

    The full detector runs on a key frame every ``every`` frames, and on any frame where a face
    it follows is not found again. Between key frames each followed face is looked for in a
    window ``window`` times its size around its last box, shrunk to at most ``side`` pixels:
    on a 720p frame that is one small pass per face (about 1.5 ms) instead of BlazeFace's two
    or three passes over the whole frame (about 4 ms). A new face entering the picture is found
    at the next key frame. Use one follower per video, frames in order.
    """

    def __init__(self, detector: FaceDetector, every: int = 10, window: float = 2.0, side: int = 256):
        self.detector = detector
        self.every, self.window, self.side = every, window, side
        self._faces: list[Face] = []
        self._since_key = 0
        self.key_frames = 0  # how many frames took the full detector (for the benchmark)

    def detect(self, image: np.ndarray) -> list[Face]:
        if self._faces and self._since_key < self.every:
            found = [self._near(image, face) for face in self._faces]
            if all(f is not None for f in found) and not _any_overlap(found):
                self._since_key += 1
                self._faces = sorted(found, key=lambda f: f.box[2] * f.box[3], reverse=True)
                return list(self._faces)
        self.key_frames += 1
        self._since_key = 1
        self._faces = self.detector.detect(image)
        return list(self._faces)

    def _near(self, image: np.ndarray, face: Face) -> Face | None:
        """``face`` found again in a window around its last box, in frame coordinates."""
        h, w = image.shape[:2]
        x, y, bw, bh = face.box
        half = self.window * max(bw, bh) / 2
        cx, cy = x + bw / 2, y + bh / 2
        x0, y0 = max(0, round(cx - half)), max(0, round(cy - half))
        x1, y1 = min(w, round(cx + half)), min(h, round(cy + half))
        if x1 - x0 < 8 or y1 - y0 < 8:
            return None
        scale = min(1.0, self.side / max(x1 - x0, y1 - y0))
        patch = image[y0:y1, x0:x1]
        if scale < 1.0:
            patch = cv2.resize(patch, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        sy, sx = (y1 - y0) / patch.shape[0], (x1 - x0) / patch.shape[1]
        candidates = []
        for f in self.detector.detect(np.ascontiguousarray(patch)):
            fx, fy, fw, fh = f.box
            box = (round(fx * sx) + x0, round(fy * sy) + y0, round(fw * sx), round(fh * sy))
            marks = [(mx * sx + x0, my * sy + y0) for mx, my in f.landmarks]
            candidates.append(Face(box=box, confidence=f.confidence, landmarks=marks))
        if not candidates:
            return None
        best = max(candidates, key=lambda f: _iou(f.box, face.box) - 0.1 * _centre_distance(f.box, face.box))
        if _iou(best.box, face.box) < 0.3:  # something else in the window: look at the whole frame
            return None
        return best


def _any_overlap(faces: list[Face]) -> bool:
    """Two followed faces that converged on the same person."""
    return any(_iou(a.box, b.box) > 0.3 for i, a in enumerate(faces) for b in faces[i + 1 :])
