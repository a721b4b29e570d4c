"""The rules a live camera frame is judged by, in one place for both of its paths.

The browser (static/js/webcam-device.js, which reads them from ``/webcam/model/card.json``) and
the server's frame task (``worker.tasks.detect_frame``) apply the same numbers, so a face is a
face, and too small, on either path. The detector's own rules (``detector.faces``) decide what
BlazeFace reports; a live frame then keeps only faces as sure as BlazeFace's "confident" level:
a camera gives many frames, a real face in view scores 0.9 and more, and Chromium's test pattern
(no face at all) makes BlazeFace report a "face" at 0.53 to 0.62 every other frame. A photo or
video file keeps the library's lower floor, where one missed face is the only chance.
"""

from __future__ import annotations

from detector.config import Settings
from detector.faces import DETECTION_BORDER, BlazeFaceDetector

LIVE_MIN_CONFIDENCE = BlazeFaceDetector.CONFIDENT


def detection_rules(settings: Settings) -> dict[str, float | int]:
    """What the browser needs to find, keep and judge faces exactly as the server does."""
    return {
        "min_confidence": settings.min_detection_confidence,
        "live_min_confidence": LIVE_MIN_CONFIDENCE,
        "confident": BlazeFaceDetector.CONFIDENT,
        "border": DETECTION_BORDER,
        "border_min": BlazeFaceDetector.BORDER_MIN,
        "crop_like_side": BlazeFaceDetector.FULL_RANGE_MIN_SIDE,
        "min_face_size": settings.min_face_size,
    }
