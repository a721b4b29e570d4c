"""detector.annotate: boxes and labels on pictures, and annotated H.264 video decoded back."""

from __future__ import annotations

import threading
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from detector.annotate import (
    AMBER,
    GREEN,
    GREY,
    RED,
    AnnotatedVideoWriter,
    Label,
    draw_labels,
    draw_labels_yuv420,
    heatmap_overlay,
)
from detector.media import load_image

BOX = (60, 50, 100, 90)


def _box_coloured(image: np.ndarray, tolerance: int = 45) -> int:
    """Pixels near the red, amber or green of a verdict box (after H.264 or JPEG has blurred them)."""
    pixels = image.reshape(-1, 3).astype(int)
    near = [(np.abs(pixels - colour).max(axis=1) <= tolerance) for colour in (RED, AMBER, GREEN)]
    return int(np.logical_or.reduce(near).sum())


def _decode(path: Path) -> tuple[dict, list[np.ndarray]]:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        facts = {
            "codec": video.codec_context.name,
            "pix_fmt": video.codec_context.pix_fmt,
            "size": (video.codec_context.width, video.codec_context.height),
            "audio": [s.codec_context.name for s in container.streams.audio],
        }
        frames = []
        for frame in container.decode(video):
            facts.setdefault("rotation", frame.rotation)
            frames.append(frame.to_ndarray(format="rgb24"))
    return facts, frames


@pytest.mark.parametrize(
    ("probability", "too_small", "colour"),
    [(0.9, False, RED), (0.5, False, RED), (0.1, False, GREEN), (None, True, GREY), (None, False, GREY)],
    ids=["fake", "at-threshold", "real", "too-small", "unscored"],
)
def test_draw_labels_colour_follows_the_verdict(probability, too_small, colour):
    image = np.full((240, 320, 3), 30, dtype=np.uint8)
    out = draw_labels(image, [Label(BOX, probability, threshold=0.5, too_small=too_small)])
    x, y, w, h = BOX
    assert tuple(out[y + h // 2, x]) == colour  # left edge
    assert tuple(out[y + h, x + w // 2]) == colour  # bottom edge
    assert tuple(out[y + h // 2, x + w // 2]) == (30, 30, 30)  # inside is left alone
    assert (image == 30).all(), "the input is not drawn on"


def test_draw_labels_keeps_the_label_inside_the_frame():
    image = np.zeros((120, 160, 3), dtype=np.uint8)
    out = draw_labels(image, [Label((0, 0, 60, 60), 0.9, 0.5)])  # no room above: label goes below
    assert out.shape == image.shape
    assert (out[61:90, :60] == RED).all(axis=-1).any()


def test_draw_labels_in_place():
    image = np.full((240, 320, 3), 30, dtype=np.uint8)
    out = draw_labels(image, [Label(BOX, 0.9, threshold=0.5)], copy=False)
    assert out is image and tuple(image[BOX[1] + BOX[3] // 2, BOX[0]]) == RED


def _yuv_frame(image: np.ndarray) -> av.VideoFrame:
    return av.VideoFrame.from_ndarray(cv2.cvtColor(image, cv2.COLOR_RGB2YUV_I420), format="yuv420p")


def _rgb(frame: av.VideoFrame) -> np.ndarray:
    return cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2RGB_I420)


LABELS = [
    Label(BOX, 0.9, 0.5),
    Label((0, 0, 50, 40), 0.1, 0.5),  # label goes below, box touches the corner
    Label((270, 200, 50, 40), None, 0.5, too_small=True),  # runs to the bottom-right edge
]


def test_draw_labels_yuv420_draws_what_draw_labels_draws(face_image, media):
    picture = media.paste_faces((320, 240), [face_image(0)])
    frame = _yuv_frame(picture)
    before = frame.to_ndarray().copy()
    out = draw_labels_yuv420(frame, LABELS)
    assert out is frame
    expected = _rgb(_yuv_frame(draw_labels(picture, LABELS)))
    got = _rgb(frame)
    assert np.abs(got.astype(int) - expected).mean() < 1.0
    for label, colour in zip(LABELS, (RED, GREEN, GREY), strict=True):
        x, y, _, h = label.box
        edge = got[y + h // 2, min(x + 1, 319)]
        assert np.abs(edge.astype(int) - colour).max() <= 30, (label, edge)
    # far from every label the frame is untouched, byte for byte
    luma = frame.to_ndarray()[:240]
    assert np.array_equal(luma[120:180, 180:260], before[:240][120:180, 180:260])


def test_writer_takes_yuv420p_frames_of_its_size(tmp_path):
    path = tmp_path / "yuv.mp4"
    with AnnotatedVideoWriter(path, 320, 240, 12.0, queue_depth=2) as writer:
        for i in range(4):
            writer.write(_yuv_frame(_ramp(i, (240, 320))))
    facts, frames = _decode(path)
    assert (facts["codec"], facts["pix_fmt"], len(frames)) == ("h264", "yuv420p", 4)
    with (
        pytest.raises(ValueError, match="320x240 yuv420p"),
        AnnotatedVideoWriter(tmp_path / "bad.mp4", 320, 240, 12.0) as writer,
    ):
        writer.write(_yuv_frame(_ramp(0, (120, 160))))
    assert not (tmp_path / "bad.mp4").exists()


def _encoder_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "unmask-encode"]


def _ramp(i: int, size: tuple[int, int] = (241, 321)) -> np.ndarray:
    """A moving colour ramp: enough detail that a frame out of place would show."""
    h, w = size
    xs = (np.arange(w)[None, :] * 255 // w + 12 * i) % 256
    ys = np.arange(h)[:, None] * 255 // h
    return np.stack(np.broadcast_arrays(xs, ys, 255 - xs), axis=-1).astype(np.uint8)


@pytest.mark.parametrize("queue_depth", [0, 2], ids=["inline", "encoding-thread"])
def test_annotated_video_writer_evens_odd_sizes(tmp_path, queue_depth):
    path = tmp_path / "odd.mp4"
    with AnnotatedVideoWriter(path, 321, 241, 12.0, queue_depth=queue_depth) as writer:
        for i in range(5):
            writer.write(_ramp(i))
    facts, frames = _decode(path)
    assert facts["size"] == (320, 240)
    assert facts["codec"] == "h264" and facts["pix_fmt"] == "yuv420p"
    assert len(frames) == 5
    for i, frame in enumerate(frames):  # each frame in its place, colours kept (BT.601 range)
        assert np.abs(frame.astype(int) - _ramp(i)[:240, :320]).mean() < 4
    assert not _encoder_threads()


@pytest.mark.parametrize(
    ("preset", "params", "profile"),
    [("ultrafast", "cabac=1:deblock=0,0:bframes=1", "Main"), ("veryfast", "", "High")],
    ids=["default", "veryfast"],
)
def test_annotated_video_writer_encoder_settings(tmp_path, preset, params, profile):
    path = tmp_path / f"{preset}.mp4"
    with AnnotatedVideoWriter(path, 320, 240, 25.0, preset=preset, x264_params=params) as writer:
        for i in range(12):
            writer.write(_ramp(i, (240, 320)))
    facts, frames = _decode(path)
    assert (facts["codec"], facts["pix_fmt"], len(frames)) == ("h264", "yuv420p", 12)
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.profile == profile


@pytest.mark.parametrize("queue_depth", [0, 2], ids=["inline", "encoding-thread"])
def test_annotated_video_writer_removes_the_file_on_failure(tmp_path, queue_depth):
    path = tmp_path / "broken.mp4"
    with (
        pytest.raises(RuntimeError),
        AnnotatedVideoWriter(path, 64, 64, 10.0, queue_depth=queue_depth) as writer,
    ):
        writer.write(np.zeros((64, 64, 3), dtype=np.uint8))
        raise RuntimeError("analysis failed half way")
    assert not path.exists()
    assert not _encoder_threads()


def test_encoding_thread_error_is_raised_by_the_writer(tmp_path):
    path = tmp_path / "bad.mp4"
    writer = AnnotatedVideoWriter(path, 64, 64, 10.0, queue_depth=2)
    with pytest.raises(cv2.error), writer:  # the encoding thread's own error, not a stand-in
        writer.write(np.zeros((64, 64, 3), dtype=np.float32))  # not 8-bit: cannot convert
        for _ in range(50):
            writer.write(np.zeros((64, 64, 3), dtype=np.uint8))
    assert not path.exists()
    assert not _encoder_threads()


def test_encoding_thread_error_is_raised_by_close(tmp_path):
    path = tmp_path / "bad.mp4"
    writer = AnnotatedVideoWriter(path, 64, 64, 10.0, queue_depth=4)
    writer.write(np.zeros((64, 64, 3), dtype=np.float32))
    with pytest.raises(cv2.error):
        writer.close()
    assert not path.exists()
    assert not _encoder_threads()


@pytest.mark.parametrize(
    ("audio", "every_frame"), [(True, False), (False, True)], ids=["audio-sampled", "silent-every-frame"]
)
def test_annotated_video_decodes_back(tmp_path, analyzer, make_clip, face_image, audio, every_frame):
    clip = make_clip(tmp_path / "talk.mp4", [face_image(0)], seconds=1.0, audio=audio)
    result = analyzer.analyze(clip, annotate_dir=tmp_path / "out", every_frame=every_frame)
    assert result.status == "ok"
    out = Path(result.annotated_path)
    assert out == tmp_path / "out" / "talk.annotated.mp4"
    facts, frames = _decode(out)
    _, source = _decode(clip)
    assert facts["codec"] == "h264" and facts["pix_fmt"] == "yuv420p"
    assert facts["size"] == (320, 240)
    assert len(frames) == len(source) == 15
    assert facts["audio"] == (["aac"] if audio else [])
    boxed = [_box_coloured(frame) > 150 for frame in frames]
    assert all(boxed), f"frames without a verdict box: {[i for i, b in enumerate(boxed) if not b]}"
    assert max(_box_coloured(frame) for frame in source) < 20, "the input has no box colours"


@pytest.mark.parametrize(
    ("name", "options", "size", "audio"),
    [
        ("odd.mp4", {"size": (321, 241), "pix_fmt": "yuv444p"}, (320, 240), []),  # even for yuv420p
        ("pcm.mov", {"audio": "pcm_s16le"}, (320, 240), ["aac"]),  # browsers need AAC
    ],
    ids=["odd-size", "pcm-audio"],
)
def test_annotated_video_plays_in_a_browser(
    tmp_path, analyzer, make_clip, face_image, name, options, size, audio
):
    clip = make_clip(tmp_path / name, [face_image(0)], seconds=1.0, **options)
    result = analyzer.analyze(clip, annotate_dir=tmp_path / "out")
    facts, frames = _decode(Path(result.annotated_path))
    assert (facts["codec"], facts["pix_fmt"], facts["size"], facts["audio"]) == (
        "h264",
        "yuv420p",
        size,
        audio,
    )
    assert len(frames) == 15


def test_annotated_audio_lasts_as_long_as_the_source(tmp_path, analyzer, make_clip, face_image):
    clip = make_clip(tmp_path / "talk.mp4", [face_image(0)], seconds=1.0, audio=True)
    out = Path(analyzer.analyze(clip, annotate_dir=tmp_path / "out").annotated_path)
    with av.open(str(out)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
    assert samples == pytest.approx(44100, abs=2048)


def test_annotated_rotated_video_is_upright(tmp_path, analyzer, make_clip, face_image):
    clip = make_clip(tmp_path / "phone.mp4", [face_image(0)], seconds=0.6, rotation=90)
    result = analyzer.analyze(clip, annotate_dir=tmp_path / "out")
    facts, frames = _decode(Path(result.annotated_path))
    assert facts["size"] == (240, 320)  # stored upright: no display matrix needed
    assert not facts["rotation"]
    assert frames[0].shape == (320, 240, 3)


def test_annotated_photo(tmp_path, analyzer, media, face_image):
    photo = media.save_image(face_image(0), tmp_path / "face.png")
    result = analyzer.analyze(photo, annotate_dir=tmp_path / "out")
    out = Path(result.annotated_path)
    assert out == tmp_path / "out" / "face.annotated.jpg"
    annotated = load_image(out)
    assert annotated.shape == face_image(0).shape
    assert _box_coloured(annotated) > 100 + _box_coloured(face_image(0))


@pytest.mark.parametrize(("heat", "hotter"), [(1.0, "red"), (0.0, "blue")])
def test_heatmap_overlay(heat, hotter):
    crop = np.full((224, 224, 3), 128, dtype=np.uint8)
    out = heatmap_overlay(crop, np.full((7, 7), heat, dtype=np.float32))
    assert out.shape == crop.shape and out.dtype == np.uint8
    red, blue = out[..., 0].mean(), out[..., 2].mean()
    assert (red > blue + 30) if hotter == "red" else (blue > red + 30)
