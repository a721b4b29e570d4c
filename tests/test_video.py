"""detector.video and detector.tracking: probing, limits, rotation, truncation, sampling by time."""

from __future__ import annotations

import contextlib
import threading

import numpy as np
import pytest

from detector.config import Settings
from detector.errors import CorruptMedia, MediaTooLarge, MediaTooLong, UnsupportedMedia
from detector.faces import _iou, create_detector
from detector.tracking import FaceFollower, FaceTracker
from detector.video import decode_ahead, iter_frames, probe_video, sample_frames, sample_times

SETTINGS = Settings()
FPS = 15


def _mark_top_left(frame: np.ndarray, index: int) -> None:
    frame[:40, :40] = (255, 0, 0)


def _brightness_is_index(frame: np.ndarray, index: int) -> None:
    """Each frame says its own number: grey level 8 * index (decodes back within a few levels)."""
    frame[:] = 8 * index


def _frame_number(image: np.ndarray) -> int:
    return round(float(image.mean()) / 8)


def _decode_all(path, settings: Settings = SETTINGS) -> list:
    info = probe_video(path, settings)
    return [frame.image for frame in iter_frames(path, info, settings)]


@pytest.mark.parametrize("audio", [False, True])
def test_probe_reports_the_clip(tmp_path, make_clip, face_image, audio):
    clip = make_clip(tmp_path / "clip.mp4", [face_image(0)], fps=FPS, seconds=2.0, audio=audio)
    info = probe_video(clip, SETTINGS)
    assert (info.width, info.height) == (320, 240)
    assert info.fps == pytest.approx(FPS)
    assert info.frames == 2 * FPS
    assert info.duration == pytest.approx(2.0, abs=1 / FPS)
    assert info.rotation == 0
    assert info.codec == "h264"
    assert info.has_audio is audio


def test_every_frame_decoded_in_order(tmp_path, make_clip):
    clip = make_clip(tmp_path / "count.mp4", fps=FPS, seconds=1.0, draw=_brightness_is_index)
    frames = list(iter_frames(clip, settings=SETTINGS))
    assert [f.index for f in frames] == list(range(FPS))
    assert [_frame_number(f.image) for f in frames] == list(range(FPS))
    times = [f.time for f in frames]
    assert times[0] == pytest.approx(0.0, abs=1e-3)
    assert np.diff(times) == pytest.approx(np.full(FPS - 1, 1 / FPS), abs=1e-3)


def _pipeline_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("unmask-")]


def test_decode_ahead_gives_yuv420p_frames(tmp_path, make_clip):
    clip = make_clip(tmp_path / "count.mp4", fps=FPS, seconds=1.0, draw=_brightness_is_index)
    frames = list(decode_ahead(iter_frames(clip, settings=SETTINGS), yuv420p=True))
    assert [_frame_number(_yuv_to_rgb(f.yuv420p())) for f in frames] == list(range(FPS))


def test_decode_ahead_gives_the_same_frames_in_order(tmp_path, make_clip):
    clip = make_clip(tmp_path / "count.mp4", fps=FPS, seconds=1.0, draw=_brightness_is_index)
    serial = [(f.index, f.time, f.image) for f in iter_frames(clip, settings=SETTINGS)]
    ahead = [(f.index, f.time, f.image) for f in decode_ahead(iter_frames(clip, settings=SETTINGS), depth=2)]
    assert [(i, t) for i, t, _ in ahead] == [(i, t) for i, t, _ in serial]
    assert all(np.array_equal(a, b) for (_, _, a), (_, _, b) in zip(ahead, serial, strict=True))
    assert not _pipeline_threads()


def _yuv_to_rgb(frame) -> np.ndarray:
    return frame.to_ndarray(format="rgb24")


@pytest.mark.parametrize(
    ("rotation", "shape", "corner"), [(0, (240, 320, 3), "top-left"), (90, (320, 240, 3), "bottom-left")]
)
def test_yuv420p_frames_are_upright(tmp_path, make_clip, media, rotation, shape, corner):
    clip = make_clip(tmp_path / "phone.mp4", seconds=0.4, rotation=rotation, draw=_mark_top_left)
    for frame in iter_frames(clip, settings=SETTINGS, threads=1):
        yuv = frame.yuv420p()
        assert (yuv.format.name, yuv.height, yuv.width) == ("yuv420p", *shape[:2])
        assert media.red_corner(_yuv_to_rgb(yuv), inset=5) == corner


@pytest.mark.parametrize(
    ("pix_fmt", "size", "even"),
    [("yuv420p", (322, 242), (322, 242)), ("yuv444p", (321, 241), (320, 240))],  # x264 420 needs even
)
def test_yuv420p_frames_are_even_and_close_to_rgb(tmp_path, make_clip, pix_fmt, size, even):
    clip = make_clip(
        tmp_path / "clip.mp4", size=size, pix_fmt=pix_fmt, seconds=0.4, draw=_brightness_is_index
    )
    rgb = [f.image for f in iter_frames(clip, settings=SETTINGS)]
    w, h = even
    for frame, picture in zip(iter_frames(clip, settings=SETTINGS), rgb, strict=True):
        yuv = frame.yuv420p()
        assert (yuv.width, yuv.height) == (w, h)
        assert np.abs(_yuv_to_rgb(yuv).astype(int) - picture[:h, :w]).mean() < 2
        with pytest.raises(RuntimeError, match="handed over"):
            _ = frame.image


def test_drawing_on_yuv420p_frames_leaves_the_decoder_alone(tmp_path, make_clip, face_image):
    """Later frames are predicted from earlier ones: drawing must never reach the decoder's buffers."""
    clip = make_clip(tmp_path / "talk.mp4", [face_image(0)], seconds=1.0)
    clean = [f.yuv420p().to_ndarray() for f in iter_frames(clip, settings=SETTINGS)]
    for frame, expected in zip(iter_frames(clip, settings=SETTINGS), clean, strict=True):
        assert np.array_equal(frame.yuv420p().to_ndarray(), expected)
        frame.yuv420p().planes[0].update(bytes(frame.yuv420p().planes[0].buffer_size))  # black luma


def test_decode_ahead_keep_drops_frames_in_the_thread(tmp_path, make_clip):
    clip = make_clip(tmp_path / "count.mp4", fps=FPS, seconds=1.0, draw=_brightness_is_index)
    callers: set[str] = set()

    def even(frame) -> bool:
        callers.add(threading.current_thread().name)
        return frame.index % 2 == 0

    frames = list(decode_ahead(iter_frames(clip, settings=SETTINGS), keep=even))
    assert [f.index for f in frames] == list(range(0, FPS, 2))
    assert [_frame_number(f.image) for f in frames] == list(range(0, FPS, 2))
    assert callers == {"unmask-decode"}


def _noise(frame: np.ndarray, index: int) -> None:
    """Pixels H.264 cannot squeeze: every frame takes about the same share of the file."""
    frame[:] = np.random.default_rng(index).integers(0, 256, frame.shape, dtype=np.uint8)


def test_decode_ahead_raises_the_decoding_error_and_stops(tmp_path, make_clip, media):
    clip = make_clip(tmp_path / "cut.mp4", fps=FPS, seconds=2.0, faststart=True, draw=_noise)
    media.truncate(clip, 0.3)
    info = probe_video(clip, SETTINGS)  # the header is whole: the damage shows while decoding
    seen = []
    with pytest.raises(CorruptMedia, match="truncated"):
        for frame in decode_ahead(iter_frames(clip, info, SETTINGS)):
            seen.append(frame.index)
    assert seen == list(range(len(seen))) and 0 < len(seen) < info.frames
    assert not _pipeline_threads()


def test_decode_ahead_raises_a_limit_met_half_way(tmp_path, make_clip):
    clip = make_clip(tmp_path / "count.mp4", fps=FPS, seconds=1.0)
    info = probe_video(clip, SETTINGS)
    seen = []
    with pytest.raises(MediaTooLarge, match="more than 5 frames"):
        for frame in decode_ahead(iter_frames(clip, info, Settings(max_video_frames=5))):
            seen.append(frame.index)
    assert seen == list(range(5))
    assert not _pipeline_threads()


def test_decode_ahead_stops_when_the_caller_stops(tmp_path, make_clip):
    clip = make_clip(tmp_path / "long.mp4", fps=FPS, seconds=3.0)
    frames = decode_ahead(iter_frames(clip, settings=SETTINGS), depth=1)
    with pytest.raises(RuntimeError, match="caller"), contextlib.closing(frames):
        for frame in frames:
            if frame.index == 2:
                raise RuntimeError("the caller failed")
    assert not _pipeline_threads()


@pytest.mark.parametrize(
    ("name", "codec", "decoded"),
    [("clip.mkv", "libx264", "h264"), ("clip.webm", "libvpx-vp9", "vp9"), ("clip.avi", "mpeg4", "mpeg4")],
)
def test_other_containers(tmp_path, make_clip, name, codec, decoded):
    clip = make_clip(tmp_path / name, fps=FPS, seconds=1.0, codec=codec, draw=_brightness_is_index)
    info = probe_video(clip, SETTINGS)
    assert (info.width, info.height, info.codec) == (320, 240, decoded)
    assert info.fps == pytest.approx(FPS) and info.frames == FPS
    assert info.duration == pytest.approx(1.0, abs=0.5 / FPS)
    numbers = [_frame_number(image) for image in _decode_all(clip)]
    assert np.abs(np.array(numbers) - np.arange(FPS)).max() <= 1


# Display-matrix angles are counter-clockwise: a viewer turns the stored picture by that much.
@pytest.mark.parametrize(
    ("rotation", "shape", "corner"),
    [
        (90, (320, 240, 3), "bottom-left"),
        (-90, (320, 240, 3), "top-right"),
        (180, (240, 320, 3), "bottom-right"),
    ],
)
def test_rotation_metadata_honoured(tmp_path, make_clip, media, rotation, shape, corner):
    clip = make_clip(tmp_path / "phone.mp4", seconds=0.4, rotation=rotation, draw=_mark_top_left)
    info = probe_video(clip, SETTINGS)
    assert info.rotation % 360 == rotation % 360
    assert (info.height, info.width) == shape[:2]
    for image in _decode_all(clip):
        assert image.shape == shape
        assert media.red_corner(image, inset=5) == corner
    sampled = next(iter(sample_frames(clip, 1, SETTINGS)))
    assert sampled.image.shape == shape


@pytest.mark.parametrize(
    "faststart", [pytest.param(False, id="moov-at-end"), pytest.param(True, id="moov-first")]
)
def test_truncated_mp4_is_corrupt(tmp_path, make_clip, face_image, media, faststart):
    clip = make_clip(tmp_path / "cut.mp4", [face_image(0)], seconds=2.0, faststart=faststart)
    media.truncate(clip, 0.5)
    with pytest.raises(CorruptMedia):
        _decode_all(clip)


def test_corrupt_video_messages_name_no_server_path(tmp_path, make_clip, face_image):
    (tmp_path / "secret-folder").mkdir()
    clip = make_clip(tmp_path / "secret-folder" / "cut.mp4", [face_image(0)], seconds=1.0)
    head = tmp_path / "secret-folder" / "head.mp4"
    head.write_bytes(clip.read_bytes()[:64])  # FFmpeg's error text quotes the path it opened
    with pytest.raises(CorruptMedia) as caught:
        probe_video(head, SETTINGS)
    assert "secret-folder" not in str(caught.value) and "corrupt or truncated" in str(caught.value)
    # FFmpeg's own words are kept for logs, never shown to a person (and without the path)
    assert "Invalid data" not in str(caught.value) and "Invalid data" in caught.value.detail
    assert "secret-folder" not in caught.value.detail


def test_too_long(tmp_path, make_clip):
    clip = make_clip(tmp_path / "long.mp4", seconds=1.0)
    with pytest.raises(MediaTooLong, match="limit"):
        probe_video(clip, Settings(max_video_seconds=0.5))
    assert probe_video(clip, Settings(max_video_seconds=1.5)).frames == FPS


@pytest.mark.parametrize(
    "limits",
    [{"max_video_frames": 10}, {"max_video_frame_pixels": 320 * 240 - 1}, {"max_file_bytes": 100}],
    ids=["frames", "frame-pixels", "bytes"],
)
def test_over_size_limits(tmp_path, make_clip, limits):
    clip = make_clip(tmp_path / "big.mp4", seconds=1.0)
    with pytest.raises(MediaTooLarge):
        probe_video(clip, Settings(**limits))


def test_image_is_not_a_video(tmp_path, media, face_image):
    path = media.save_image(face_image(0), tmp_path / "photo.mp4", format="JPEG")
    with pytest.raises(UnsupportedMedia, match="image"):
        probe_video(path, SETTINGS)


@pytest.mark.parametrize("count", [1, 5, 8])
def test_sample_frames_spread_over_the_clip(tmp_path, make_clip, count):
    clip = make_clip(tmp_path / "count.mp4", fps=FPS, seconds=2.0, draw=_brightness_is_index)
    frames = list(sample_frames(clip, count, SETTINGS))
    assert len(frames) == count
    indices = [f.index for f in frames]
    assert indices == sorted(set(indices))
    for frame, target in zip(frames, sample_times(probe_video(clip, SETTINGS), count), strict=True):
        assert abs(frame.time - target) <= 0.5 / FPS + 1e-6
        assert _frame_number(frame.image) == frame.index  # the pixels are that frame's
    assert indices[0] < 2 * FPS / count + 1 and indices[-1] > 2 * FPS - 2 * FPS / count - 1


def test_sample_more_frames_than_the_clip_has(tmp_path, make_clip):
    clip = make_clip(tmp_path / "short.mp4", fps=FPS, seconds=0.4, draw=_brightness_is_index)
    frames = list(sample_frames(clip, 50, SETTINGS))
    assert [f.index for f in frames] == list(range(6))


def test_sample_times_are_centred_in_equal_slices(tmp_path, make_clip):
    info = probe_video(make_clip(tmp_path / "c.mp4", seconds=2.0), SETTINGS)
    assert sample_times(info, 4) == pytest.approx([0.25, 0.75, 1.25, 1.75], abs=0.05)


def _walk(tracker: FaceTracker, steps: int, boxes_at) -> list[list[int]]:
    return [tracker.update(t * 0.5, boxes_at(t)) for t in range(steps)]


def test_tracker_keeps_two_people_apart():
    def boxes(t: int):
        return [(20 + 3 * t, 40, 80, 80), (200 - 3 * t, 50, 70, 70)]

    ids = _walk(FaceTracker(), 8, boxes)
    assert all(step == ids[0] for step in ids)
    assert len(set(ids[0])) == 2


def test_tracker_follows_order_changes():
    def boxes(t: int):
        left, right = (20, 40, 80, 80), (220, 40, 80, 80)
        return [left, right] if t % 2 == 0 else [right, left]

    ids = _walk(FaceTracker(), 6, boxes)
    left_ids = [step[0] if t % 2 == 0 else step[1] for t, step in enumerate(ids)]
    assert len(set(left_ids)) == 1


def test_tracker_opens_a_new_track_after_a_long_gap():
    tracker = FaceTracker(max_gap_seconds=2.0)
    first = tracker.update(0.0, [(50, 50, 80, 80)])
    again = tracker.update(5.0, [(50, 50, 80, 80)])
    assert first != again
    assert tracker.get(first[0]).hits == 1


@pytest.fixture(scope="module")
def blazeface():
    return create_detector("blazeface")


def _best_iou(box, boxes) -> float:
    return max((_iou(box, b) for b in boxes), default=0.0)


def test_follower_finds_the_faces_the_detector_finds(blazeface, media, face_image):
    frames = [media.paste_faces((640, 360), [face_image(0), face_image(2)], shift=3 * i) for i in range(12)]
    follower = FaceFollower(blazeface, every=5)
    for image in frames:
        followed, full = follower.detect(image), blazeface.detect(image)
        assert len(followed) == len(full) == 2
        assert all(_best_iou(f.box, [g.box for g in full]) > 0.5 for f in followed)
        assert followed[0].box[2] * followed[0].box[3] >= followed[1].box[2] * followed[1].box[3]
    assert follower.key_frames == 3  # frames 0, 5 and 10


def test_follower_finds_a_new_face_at_the_next_key_frame(blazeface, media, face_image):
    one = media.paste_faces((640, 360), [face_image(0), np.full((200, 200, 3), 90, np.uint8)])
    two = media.paste_faces((640, 360), [face_image(0), face_image(2)])
    follower = FaceFollower(blazeface, every=4)
    counts = [len(follower.detect(image)) for image in [one] * 5 + [two] * 4]
    assert counts == [1, 1, 1, 1, 1, 1, 1, 1, 2]  # the second face arrives at frame 5, seen at 8


def test_follower_looks_at_the_whole_frame_when_a_face_is_lost(blazeface, media, face_image):
    face, empty = media.paste_faces((640, 360), [face_image(0)]), media.gradient(640, 360)
    follower = FaceFollower(blazeface, every=10)
    assert [len(follower.detect(image)) for image in [face, face, empty, face]] == [1, 1, 0, 1]
    assert follower.key_frames == 3  # the first frame, the lost face, the face back
