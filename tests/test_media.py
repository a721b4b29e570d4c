"""detector.media: what a file is judged from its bytes, limits before decoding, upright RGB."""

from __future__ import annotations

import shutil
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detector.config import Settings
from detector.errors import CorruptMedia, MediaTooLarge, UnsupportedMedia
from detector.media import detect_type, error_reason, load_image

SETTINGS = Settings()
MARK = (255, 0, 0)


def _zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "not a video " * 50)
    return path


def _html(path: Path) -> Path:
    path.write_text("<!doctype html><html><body><img src='face.jpg'></body></html>\n")
    return path


def _png_claiming(path: Path, width: int, height: int) -> Path:
    """A real 1x1 PNG whose header (IHDR, with a valid CRC) claims ``width`` x ``height``."""
    Image.new("L", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = 8 + 4  # signature, then the chunk length; the chunk type and data follow
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17]))
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))
    return path


def test_real_jpeg_named_png_is_read_as_jpeg(tmp_path, media, face_image):
    renamed = shutil.copy(media.face_photo_path(0), tmp_path / "photo.png")
    assert detect_type(renamed, SETTINGS).format == "jpeg"
    image = load_image(renamed, SETTINGS)
    assert image.shape == face_image(0).shape and image.dtype == np.uint8
    assert np.abs(image.astype(int) - face_image(0)).max() <= 2


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [("PNG", "png"), ("WEBP", "webp"), ("BMP", "bmp"), ("GIF", "gif"), ("TIFF", "tiff"), ("JPEG", "jpeg")],
)
def test_image_formats_sniffed_whatever_the_name(tmp_path, media, face_image, fmt, expected):
    path = media.save_image(face_image(0), tmp_path / "upload.bin", format=fmt)
    assert detect_type(path, SETTINGS).format == expected
    image = load_image(path, SETTINGS)
    assert image.shape == (200, 200, 3)


@pytest.mark.parametrize(
    ("make", "name"),
    [(_zip, "clip.mp4"), (_zip, "photo.jpg"), (_html, "photo.jpg"), (_html, "clip.mp4")],
)
def test_other_content_with_media_name_is_unsupported(tmp_path, make, name):
    path = make(tmp_path / name)
    with pytest.raises(UnsupportedMedia, match="not a supported image or video"):
        detect_type(path, SETTINGS)
    with pytest.raises(UnsupportedMedia):
        load_image(path, SETTINGS)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_image_is_corrupt(tmp_path, media, face_image, fmt):
    path = media.truncate(media.save_image(face_image(0), tmp_path / f"cut.{fmt.lower()}", format=fmt))
    with pytest.raises(CorruptMedia, match="corrupt or truncated"):
        load_image(path, SETTINGS)


def test_empty_file_is_corrupt(tmp_path):
    path = tmp_path / "empty.jpg"
    path.touch()
    with pytest.raises(CorruptMedia, match="empty"):
        load_image(path, SETTINGS)


def test_missing_file_is_corrupt_and_folder_is_unsupported(tmp_path):
    with pytest.raises(CorruptMedia, match="not found"):
        detect_type(tmp_path / "gone.jpg", SETTINGS)
    with pytest.raises(UnsupportedMedia, match="folder"):
        detect_type(tmp_path, SETTINGS)


def test_huge_dimensions_refused_before_decoding(tmp_path):
    # 30000x30000 with a 1-pixel body: decoding would fail as corrupt, so MediaTooLarge proves
    # the header was judged first.
    path = _png_claiming(tmp_path / "bomb.png", 30000, 30000)
    assert path.stat().st_size < 200
    with pytest.raises(MediaTooLarge):
        load_image(path, SETTINGS)


def test_pixel_limit_from_settings(tmp_path, media, face_image):
    path = media.save_image(face_image(0), tmp_path / "face.png")
    with pytest.raises(MediaTooLarge, match="200x200"):
        load_image(path, Settings(max_image_pixels=200 * 200 - 1))
    assert load_image(path, Settings(max_image_pixels=200 * 200)).shape == (200, 200, 3)


def test_file_over_byte_limit(tmp_path, media, face_image):
    path = media.save_image(face_image(0), tmp_path / "face.png")
    size = path.stat().st_size
    with pytest.raises(MediaTooLarge, match="limit"):
        detect_type(path, Settings(max_file_bytes=size - 1))
    with pytest.raises(MediaTooLarge):
        load_image(path, Settings(max_file_bytes=size - 1))
    assert detect_type(path, Settings(max_file_bytes=size)).kind == "image"


def _marked(width: int = 60, height: int = 40) -> np.ndarray:
    """Grey picture, landscape, with a red block in its top-left corner."""
    image = np.full((height, width, 3), 128, dtype=np.uint8)
    image[:10, :10] = MARK
    return image


# EXIF orientation: how the stored pixels must be turned to be seen upright.
@pytest.mark.parametrize(
    ("orientation", "shape", "corner"),
    [
        (1, (40, 60, 3), "top-left"),
        (3, (40, 60, 3), "bottom-right"),  # rotated 180
        (6, (60, 40, 3), "top-right"),  # rotate 90 clockwise to view
        (8, (60, 40, 3), "bottom-left"),  # rotate 90 counter-clockwise to view
    ],
)
def test_exif_orientation_applied(tmp_path, media, orientation, shape, corner):
    img = Image.fromarray(_marked())
    exif = img.getexif()
    exif[0x0112] = orientation
    path = tmp_path / "phone.jpg"
    img.save(path, quality=95, exif=exif)
    upright = load_image(path, SETTINGS)
    assert upright.shape == shape
    assert media.red_corner(upright, inset=2) == corner


def test_grey_image_becomes_rgb(tmp_path, media, face_image):
    grey = Image.fromarray(face_image(0)).convert("L")
    path = media.save_image(grey, tmp_path / "grey.png")
    image = load_image(path, SETTINGS)
    assert image.shape == (200, 200, 3) and image.dtype == np.uint8
    assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()
    assert (image[..., 0] == np.asarray(grey)).all()


def test_rgba_transparency_composited_on_white(tmp_path, media, face_image):
    rgba = np.dstack([face_image(0), np.full((200, 200), 255, np.uint8)])
    rgba[:20, :, 3] = 0  # a transparent band on top
    path = media.save_image(Image.fromarray(rgba, "RGBA"), tmp_path / "cutout.png")
    image = load_image(path, SETTINGS)
    assert image.shape == (200, 200, 3)
    assert (image[:20] == 255).all()
    assert (image[20:] == face_image(0)[20:]).all()


def test_sixteen_bit_grey_scaled_to_eight(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 64, dtype=np.uint16), (16, 1))
    path = tmp_path / "scan.png"
    Image.fromarray(ramp).save(path)  # PIL writes mode I;16 as a 16-bit PNG
    image = load_image(path, SETTINGS)
    assert image.shape == (16, 64, 3)
    assert image[0, 0, 0] == 0 and image[0, -1, 0] == 255
    assert (np.diff(image[0, :, 0].astype(int)) >= 0).all()


def test_video_is_not_an_image(tmp_path, make_clip, face_image):
    clip = make_clip(tmp_path / "clip.mov", [face_image(0)], seconds=0.2)
    assert detect_type(clip, SETTINGS).kind == "video"
    with pytest.raises(UnsupportedMedia, match="video"):
        load_image(clip, SETTINGS)


def test_bytes_starting_bm_without_a_bmp_header_are_unsupported(tmp_path):
    fake = tmp_path / "notes.bmp"
    fake.write_bytes(b"BM" + b"just some text that is not a bitmap at all" * 3)
    with pytest.raises(UnsupportedMedia):
        detect_type(fake)


def test_decoder_messages_lose_their_paths():
    assert (
        error_reason(OSError("cannot identify image file '/srv/jobs/x/in.png'"))
        == "cannot identify image file"
    )
    assert "/srv" not in error_reason(ValueError("bad data at /srv/jobs/x/in.png offset 3"))
    assert error_reason(ValueError("broken data stream")) == "broken data stream"
