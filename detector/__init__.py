"""Unmask's detection library: faces, classifier, photo and video analysis. No web, no queue.

from detector import Analyzer
result = Analyzer().analyze("clip.mp4", annotate_dir=Path("out"))
"""

from .errors import (
    CorruptMedia,
    MediaTooLarge,
    MediaTooLong,
    ModelNotFound,
    NoFaceFound,
    UnmaskError,
    UnsupportedMedia,
)

__all__ = [
    "Analyzer",
    "CorruptMedia",
    "MediaTooLarge",
    "MediaTooLong",
    "ModelNotFound",
    "NoFaceFound",
    "UnmaskError",
    "UnsupportedMedia",
]


def __getattr__(name: str):
    # Analyzer pulls in OpenCV, PyAV and ONNX Runtime: load it on first use, not on import.
    if name == "Analyzer":
        from .analyze import Analyzer

        return Analyzer
    raise AttributeError(name)
