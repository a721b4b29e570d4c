"""Following faces from frame to frame, so a video with two people gets a verdict per person.

Greedy matching on box overlap, with a centre-distance fallback because sampled frames can be
a second apart: a talking head moves little in that time, two different people rarely overlap.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .faces import _iou

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
