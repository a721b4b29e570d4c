"""Named failures of the detection library.

Callers (the CLI, the worker) turn these into plain-words messages and failed jobs; the library
never prints or exits. Every message says what was wrong with the input, not where in the code.
"""

from __future__ import annotations


class UnmaskError(Exception):
    """Base class: anything the library refuses, with a message fit to show a user.

    ``detail`` keeps a decoder's own words (FFmpeg's "Invalid data found when processing
    input", Pillow's "cannot identify image file") for logs: they mean nothing to a person
    looking at a web page, so they are never part of the message.
    """

    code = "error"

    def __init__(self, message: str = "", detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail


class UnsupportedMedia(UnmaskError):
    """The content is not an image or video format we read (judged from its bytes)."""

    code = "unsupported_media"


class CorruptMedia(UnmaskError):
    """The file claims a format we read, but it cannot be decoded (corrupt or truncated)."""

    code = "corrupt_media"


class MediaTooLarge(UnmaskError):
    """The file, its pixel count or its frame count is over a configured limit."""

    code = "too_large"


class MediaTooLong(UnmaskError):
    """A video runs longer than the configured limit."""

    code = "too_long"


class NoFaceFound(UnmaskError):
    """No face big enough to judge was found. Raised only where a caller asks for it."""

    code = "no_face"


class ModelNotFound(UnmaskError):
    """The model file or its card is missing or inconsistent."""

    code = "model_not_found"
