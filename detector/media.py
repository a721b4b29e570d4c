"""Reading media from disk: what a file really is (from its bytes) and its pixels as RGB.

The extension is never trusted: a zip renamed ``.mp4`` must fail as unsupported, and a real JPEG
named ``.png`` must still be read. Images come back upright (EXIF orientation applied) and as
3-channel RGB whatever their mode (grey, RGBA, palette, 16-bit).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageOps

from .config import Settings, get_settings
from .errors import CorruptMedia, MediaTooLarge, UnsupportedMedia

MediaKind = Literal["image", "video"]

_SNIFF_BYTES = 64
# A file path in a decoder's message, quoted ('/a/b.mp4') or bare (/a/b.mp4): never shown to users.
_QUOTED_PATH = re.compile(r"""(['\"])(?:[A-Za-z]:)?[/\\\\][^'\"]*\1|(?<![\w.])/[^\s'\"]+""")
IMAGE_SUFFIXES = {
    ".jpg",
    ".jpeg",
    ".png",
    ".webp",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".avif",
    ".heic",
    ".heif",
}
# ISO-BMFF brands ("ftyp" boxes) of still pictures: AVIF (Pillow reads it) and HEIF/HEIC, what
# iPhones save by default (read through pillow-heif's Pillow plug-in, registered below).
_AVIF_BRANDS = {b"avif", b"avis"}
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}

try:
    from pillow_heif import register_heif_opener

    register_heif_opener()
except ImportError:  # without it a HEIC photo fails to decode, in plain words (load_image)
    pass
VIDEO_SUFFIXES = {".mp4", ".mov", ".m4v", ".webm", ".mkv", ".avi", ".3gp"}


@dataclass(frozen=True)
class MediaType:
    kind: MediaKind
    format: str


def sniff(head: bytes) -> MediaType | None:
    """Name the container from its first bytes, or None when it is nothing we read."""
    if head.startswith(b"\xff\xd8\xff"):
        return MediaType("image", "jpeg")
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return MediaType("image", "png")
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return MediaType("image", "gif")
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return MediaType("image", "webp")
    # BMP: "BM", then a DIB header whose size is one of the few the format defines
    if (
        head.startswith(b"BM")
        and len(head) >= 18
        and int.from_bytes(head[14:18], "little") in (12, 40, 52, 56, 64, 108, 124)
    ):
        return MediaType("image", "bmp")
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return MediaType("image", "tiff")
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        box = int.from_bytes(head[:4], "big")
        compatible = {head[i : i + 4] for i in range(16, min(box, len(head)) - 3, 4)}
        if brand in _AVIF_BRANDS or (brand in (b"mif1", b"msf1") and compatible & _AVIF_BRANDS):
            return MediaType("image", "avif")
        if brand in _HEIF_BRANDS:
            return MediaType("image", "heif")
        return MediaType("video", "mp4")
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return MediaType("video", "matroska")
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return MediaType("video", "avi")
    return None


def error_reason(exc: BaseException) -> str:
    """A decoder's words for an error, without file paths (which must not reach a user)."""
    text = str(getattr(exc, "strerror", None) or exc)
    text = _QUOTED_PATH.sub("", text).strip().rstrip(":").strip()
    return text or type(exc).__name__


def detect_type(path: str | Path, settings: Settings | None = None) -> MediaType:
    """Check size and content type before anything is decoded."""
    settings = settings or get_settings()
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(_SNIFF_BYTES)
    except FileNotFoundError:
        raise CorruptMedia(f"file not found: {path.name}") from None
    except IsADirectoryError:
        raise UnsupportedMedia(f"{path.name} is a folder, not a file") from None
    except OSError as exc:
        raise CorruptMedia(f"cannot read {path.name}: {exc.strerror or exc}") from None
    if size == 0:
        raise CorruptMedia("the file is empty (0 bytes)")
    if size > settings.max_file_bytes:
        raise MediaTooLarge(
            f"the file is {size / 1e6:.0f} MB; the limit is {settings.max_file_bytes / 1e6:.0f} MB"
        )
    kind = sniff(head)
    if kind is None:
        raise UnsupportedMedia(
            "not a supported image or video: the content is none of JPEG, PNG, WebP, GIF, BMP, "
            "TIFF, AVIF, HEIC/HEIF, MP4/MOV, WebM/MKV or AVI"
        )
    return kind


def to_rgb(image: Image.Image) -> np.ndarray:
    """Any PIL mode to an HxWx3 uint8 array; transparency is composited on white."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(image, dtype=np.float64)
        peak = arr.max() or 1.0
        image = Image.fromarray((arr / peak * 255).astype(np.uint8))
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))


def load_image(path: str | Path, settings: Settings | None = None) -> np.ndarray:
    """Decode an image file to upright RGB, refusing bombs before their pixels are allocated."""
    settings = settings or get_settings()
    path = Path(path)
    media = detect_type(path, settings)
    if media.kind != "image":
        raise UnsupportedMedia(f"expected an image, found a {media.format} video")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
                if width * height > settings.max_image_pixels:
                    raise MediaTooLarge(
                        f"the image is {width}x{height} pixels; the limit is "
                        f"{settings.max_image_pixels / 1e6:.0f} megapixels"
                    )
                img.load()
                upright = ImageOps.exif_transpose(img) or img
                return to_rgb(upright)
    except MediaTooLarge:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise MediaTooLarge("the image has too many pixels to decode safely") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise CorruptMedia(
            "the image cannot be decoded: it is corrupt or truncated", detail=error_reason(exc)
        ) from None
