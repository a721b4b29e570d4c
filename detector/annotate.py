"""Drawing verdicts on pictures and writing annotated video that plays in a browser.

Green box for real, red for fake, amber for faces the model cannot tell (between the two
thresholds of ``detector.results``), the fake probability on the box; grey for faces too small to
judge. Video goes out as H.264 (yuv420p, even dimensions, moov atom first) with the source's
audio copied when it is AAC and re-encoded to AAC otherwise, which every browser plays.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from .results import Thresholds, face_verdict
from .video import plane_view

GREEN = (40, 200, 70)
RED = (230, 40, 40)
AMBER = (235, 150, 0)
GREY = (160, 160, 160)

# x264 settings for the annotated copy. Measured on the shared 720p and 1080p clips against the
# former ``veryfast`` at CRF 23 (models/README.md, "Pipeline speed"): ultrafast with CABAC, the
# deblocking filter and one B-frame, at CRF 27, gives the same luma PSNR or better (44.6 and
# 45.0 dB against 44.3 and 44.9) in files 1.0 to 1.4 times the size, encodes 2.6 to 3 times
# faster and holds a third of the memory (48 MB against 155 MB at 1080p). PSNR does not see
# everything: ultrafast has no psycho-visual tuning, so flat areas may band a little sooner.
# Main profile: every browser plays it.
X264_PRESET = "ultrafast"
X264_CRF = 27
X264_PARAMS = "cabac=1:deblock=0,0:bframes=1"


@dataclass
class Label:
    box: tuple[int, int, int, int]
    fake_probability: float | None
    threshold: Thresholds | float  # a single number: no uncertain band
    too_small: bool = False


def _style(label: Label) -> tuple[tuple[int, int, int], str]:
    p = label.fake_probability
    if label.too_small:
        return GREY, "too small"
    if p is None:
        return GREY, "face"
    verdict = face_verdict(p, label.threshold)
    if verdict == "fake":
        return RED, f"FAKE {p:.2f}"
    if verdict == "uncertain":
        return AMBER, f"UNSURE {p:.2f}"
    return GREEN, f"REAL {p:.2f}"


@dataclass(frozen=True)
class _Look:
    """Where and how one label is drawn on a picture of a given size."""

    color: tuple[int, int, int]
    text: str
    thick: int
    font_scale: float
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 of the face box
    tag: tuple[int, int, int, int]  # x0, y0, x1, y1 of the filled rectangle behind the text
    origin: tuple[int, int]  # text baseline start


def _look(label: Label, h: int, w: int) -> _Look:
    thick = max(2, round(min(h, w) / 300))
    font_scale = max(0.45, min(h, w) / 900)
    color, text = _style(label)
    x, y, bw, bh = label.box
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, max(1, thick - 1))
    ty = y - 4 if y - th - base - 4 >= 0 else min(h - 1, y + bh + th + base + 4)
    return _Look(
        color,
        text,
        thick,
        font_scale,
        (x, y, x + bw, y + bh),
        (x, ty - th - base, x + tw + 6, ty + base - 2),
        (x + 3, ty - 2),
    )


def _draw(out: np.ndarray, look: _Look, dx: int = 0, dy: int = 0) -> None:
    """Draw ``look`` on ``out``, a window whose top-left corner is (dx, dy) in the picture."""
    bx0, by0, bx1, by1 = look.box
    tx0, ty0, tx1, ty1 = look.tag
    cv2.rectangle(out, (bx0 - dx, by0 - dy), (bx1 - dx, by1 - dy), look.color, look.thick)
    cv2.rectangle(out, (tx0 - dx, ty0 - dy), (tx1 - dx, ty1 - dy), look.color, -1)
    cv2.putText(
        out,
        look.text,
        (look.origin[0] - dx, look.origin[1] - dy),
        cv2.FONT_HERSHEY_SIMPLEX,
        look.font_scale,
        (255, 255, 255),
        max(1, look.thick - 1),
        cv2.LINE_AA,
    )


def draw_labels(image: np.ndarray, labels: list[Label], copy: bool = True) -> np.ndarray:
    """``image`` (RGB) with each face boxed and scored: on a copy, or on ``image`` itself when
    ``copy`` is false (a decoded video frame nobody else reads)."""
    out = image.copy() if copy else image
    h, w = out.shape[:2]
    for label in labels:
        _draw(out, _look(label, h, w))
    return out


def draw_labels_yuv420(frame: av.VideoFrame, labels: list[Label]) -> av.VideoFrame:
    """Draw on a yuv420p frame's own planes what ``draw_labels`` draws on a picture.

    Each label is drawn in RGB on a copy of the few pixels around it, and only the pixels it
    changed go back (chroma where any of its four pixels changed): the rest of the frame is
    never converted, so the annotated video keeps the source's colours untouched around the
    boxes and no full-size RGB picture is made. The frame must be even-sized and writable.
    """
    h, w = frame.height, frame.width
    y, u, v = (plane_view(p) for p in frame.planes[:3])
    for label in labels:
        look = _look(label, h, w)
        pad = look.thick + 3
        xs = (look.box[0], look.box[2], look.tag[0], look.tag[2])
        ys = (look.box[1], look.box[3], look.tag[1], look.tag[3])
        x0, x1 = max(0, min(xs) - pad) & ~1, min(w, max(xs) + pad + 1)
        y0, y1 = max(0, min(ys) - pad) & ~1, min(h, max(ys) + pad + 1)
        x1, y1 = min(w, x1 + x1 % 2), min(h, y1 + y1 % 2)
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        rh, rw = y1 - y0, x1 - x0
        ry, ru, rv = (
            y[y0:y1, x0:x1],
            u[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2],
            v[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2],
        )
        i420 = np.concatenate([ry.ravel(), ru.ravel(), rv.ravel()]).reshape(rh * 3 // 2, rw)
        before = cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420)
        after = before.copy()
        _draw(after, look, x0, y0)
        changed = (after != before).any(axis=2)
        back = cv2.cvtColor(after, cv2.COLOR_RGB2YUV_I420).ravel()
        quarter = rh * rw // 4
        ry[changed] = back[: rh * rw].reshape(rh, rw)[changed]
        blocks = changed.reshape(rh // 2, 2, rw // 2, 2).any(axis=(1, 3))
        ru[blocks] = back[rh * rw : rh * rw + quarter].reshape(rh // 2, rw // 2)[blocks]
        rv[blocks] = back[rh * rw + quarter :].reshape(rh // 2, rw // 2)[blocks]
    return frame


def save_image(image: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, 92] if path.suffix.lower() in (".jpg", ".jpeg") else []
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params):
        raise OSError(f"could not write {path}")
    return path


class AnnotatedVideoWriter:
    """H.264 MP4 writer; pass the source path to carry its audio across.

    With ``queue_depth`` above 0, frames are converted and encoded in a background thread (x264
    and PyAV release the GIL), at most that many waiting: ``write`` then keeps a reference to the
    picture it was given, which must not change afterwards. An encoding error is raised, as
    itself, by the next ``write`` or by ``close``; the thread never outlives ``close`` or the
    ``with`` block.
    """

    def __init__(
        self,
        path: Path,
        width: int,
        height: int,
        fps: float,
        audio_from: Path | None = None,
        crf: int = X264_CRF,
        preset: str = X264_PRESET,
        x264_params: str = X264_PARAMS,
        queue_depth: int = 0,
    ):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.width, self.height = width - width % 2, height - height % 2
        rate = Fraction(fps).limit_denominator(1001) if fps > 0 else Fraction(25)
        self._out = av.open(str(self.path), "w", format="mp4", options={"movflags": "+faststart"})
        self._video = self._out.add_stream("libx264", rate=rate)
        self._video.width, self._video.height = self.width, self.height
        self._video.pix_fmt = "yuv420p"
        options = {"crf": str(crf), "preset": preset}
        if x264_params:
            options["x264-params"] = x264_params
        self._video.options = options
        self._video.codec_context.time_base = 1 / rate
        self._frames = 0
        self._audio_in = self._audio_out = self._resampler = None
        self._pending: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._abandon = False
        try:
            if audio_from is not None:
                self._open_audio(Path(audio_from))
        except BaseException:
            self._out.close()
            self.path.unlink(missing_ok=True)
            raise
        if queue_depth > 0:
            self._pending = queue.Queue(maxsize=queue_depth)
            self._thread = threading.Thread(target=self._encode_queued, name="unmask-encode", daemon=True)
            self._thread.start()

    def _open_audio(self, source: Path) -> None:
        src = av.open(str(source), metadata_errors="ignore")
        if not src.streams.audio:
            src.close()
            return
        in_stream = src.streams.audio[0]
        self._audio_in = (src, in_stream)
        if in_stream.codec_context.name == "aac":
            self._audio_out = self._out.add_stream_from_template(in_stream)
        else:
            rate = in_stream.codec_context.sample_rate or 44100
            self._audio_out = self._out.add_stream("aac", rate=rate)
            self._resampler = av.AudioResampler(format="fltp", layout="stereo", rate=rate)

    def write(self, image: np.ndarray | av.VideoFrame) -> None:
        """Add one frame: an RGB picture (cropped to the even size), or a yuv420p ``VideoFrame``
        of exactly the writer's size, which is encoded as it is."""
        if self._thread is None:
            self._encode(image)
            return
        if self._failure is not None:
            raise self._failure
        self._pending.put(image)

    def _encode(self, image: np.ndarray | av.VideoFrame) -> None:
        if isinstance(image, av.VideoFrame):
            if (image.format.name, image.width, image.height) != ("yuv420p", self.width, self.height):
                raise ValueError(
                    f"expected a {self.width}x{self.height} yuv420p frame, "
                    f"got {image.width}x{image.height} {image.format.name}"
                )
            frame = image
        else:
            if image.shape[1] != self.width or image.shape[0] != self.height:
                image = image[: self.height, : self.width]
            # OpenCV's BT.601 limited-range conversion: what swscale would do, in a tenth of the time
            yuv = cv2.cvtColor(image, cv2.COLOR_RGB2YUV_I420)
            frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts = self._frames
        frame.time_base = self._video.codec_context.time_base
        self._frames += 1
        for packet in self._video.encode(frame):
            self._out.mux(packet)

    def _encode_queued(self) -> None:
        while True:
            image = self._pending.get()
            if image is None:
                return
            if self._failure is not None or self._abandon:
                continue  # keep taking frames so that a writer never blocks
            try:
                self._encode(image)
            except BaseException as exc:  # raised by the next write() or close()
                self._failure = exc

    def _stop_thread(self) -> None:
        if self._thread is not None:
            self._pending.put(None)
            self._thread.join()
            self._thread = None

    def _copy_audio(self) -> None:
        src, in_stream = self._audio_in
        try:
            if self._resampler is None:
                for packet in src.demux(in_stream):
                    if packet.dts is None:
                        continue
                    packet.stream = self._audio_out
                    self._out.mux(packet)
            else:
                for frame in src.decode(in_stream):
                    for resampled in self._resampler.resample(frame):
                        for packet in self._audio_out.encode(resampled):
                            self._out.mux(packet)
                for packet in self._audio_out.encode(None):
                    self._out.mux(packet)
        except av.error.FFmpegError:
            pass  # a damaged audio track must not cost the user the annotated video
        finally:
            src.close()

    def close(self) -> None:
        """Flush the encoder, add the audio and finish the file (removed if anything failed)."""
        self._stop_thread()
        try:
            if self._failure is not None:
                raise self._failure
            for packet in self._video.encode():
                self._out.mux(packet)
            if self._audio_in is not None:
                self._copy_audio()
            self._out.close()
        except BaseException:
            with contextlib.suppress(Exception):
                self._discard()
            raise

    def _discard(self) -> None:
        """Stop without finishing: the thread drops what is queued, the file is removed."""
        self._abandon = True
        self._stop_thread()
        try:
            if self._audio_in is not None:
                self._audio_in[0].close()
                self._audio_in = None
            self._out.close()
        finally:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> AnnotatedVideoWriter:
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
        else:
            self._discard()


def heatmap_overlay(crop: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The crop with its class activation map laid over it (red where the model saw fakery)."""
    h, w = crop.shape[:2]
    heat = cv2.resize(np.asarray(heatmap, dtype=np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    colored = cv2.applyColorMap(np.clip(heat * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    colored = cv2.cvtColor(colored, cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(crop, 1 - alpha, colored, alpha, 0)
