"""AVIF and HEIC/HEIF photos, judged by their bytes, and folder scans that judge by content too."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from detector.cli import _kind_guess, expand
from detector.config import Settings
from detector.media import detect_type, load_image, sniff


def _save(path: Path, fmt: str) -> Path:
    """A small picture in ``fmt``; HEIC through pillow-heif (imported by detector.media)."""
    Image.new("RGB", (64, 48), (200, 30, 30)).save(path, format=fmt, quality=80)
    return path


@pytest.mark.parametrize(("fmt", "name"), [("AVIF", "avif"), ("HEIF", "heif")])
def test_avif_and_heic_are_read_as_photos(tmp_path, fmt, name):
    path = _save(tmp_path / f"p.{name}", fmt)
    media = detect_type(path, Settings())
    assert (media.kind, media.format) == ("image", name)
    pixels = load_image(path, Settings())
    assert pixels.shape == (48, 64, 3) and abs(int(pixels[10, 10, 0]) - 200) < 12


def test_an_mp4_is_still_a_video():
    head = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41"
    assert sniff(head).kind == "video"
    # a HEIF container whose compatible brands say AVIF is an AVIF picture
    assert sniff(b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1avifmiaf").format == "avif"


def test_a_folder_scan_takes_files_without_an_extension_by_their_content(tmp_path):
    _save(tmp_path / "IMG_0001", "JPEG")  # saved by a messenger without an extension
    _save(tmp_path / "IMG_0002.heic", "HEIF")
    (tmp_path / "notes").write_text("not a picture")
    found = sorted(p.name for p in expand([str(tmp_path)]))
    assert found == ["IMG_0001", "IMG_0002.heic"]
    assert _kind_guess(tmp_path / "IMG_0001") == "image"
