"""Training augmentations on uint8 RGB crops, applied to every class alike.

Sources differ in compression, scale and colour (FFHQ is pristine, some fakes were cut from
figures): randomising all of these for real and fake alike stops the model from learning the
file instead of the face. Video codecs get their own step: a frame of a small H.264 stream
carries block and chroma traces a JPEG does not, and 0.4.0, trained without them, reads them as
forgery (test crops at 360p through x264 CRF 35: 10 % of the reals called fake against 0.6 %,
``evaluate``'s ``shared_360p_crf35``). Pure numpy/OpenCV and PyAV (no torchvision on this stack).
"""

from __future__ import annotations

import av
import cv2
import numpy as np


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        return image
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1].copy()


def h264(image: np.ndarray, crf: int) -> np.ndarray:
    """The crop as one intra frame of an x264 stream at ``crf`` (4:2:0, one thread so that a
    data-loader worker stays on its core), decoded back; an odd edge keeps its last row/column."""
    h, w = image.shape[:2]
    eh, ew = h - h % 2, w - w % 2
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = ew, eh, "yuv420p"
    encoder.options = {"crf": str(int(crf)), "preset": "veryfast", "tune": "zerolatency", "threads": "1"}
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[:eh, :ew]), format="rgb24")
    packets = [*encoder.encode(frame.reformat(format="yuv420p")), *encoder.encode(None)]
    decoder = av.CodecContext.create("h264", "r")
    frames = [f for p in [*packets, None] for f in decoder.decode(p)]
    if not frames:
        return image
    out = image.copy()
    out[:eh, :ew] = frames[0].to_ndarray(format="rgb24")
    return out


def rescale(
    image: np.ndarray, factor: float, crf: int | None = None, rng: np.random.Generator | None = None
) -> np.ndarray:
    """The image shrunk by ``factor`` (as a smaller frame shows the face), through one x264 frame
    at ``crf`` where given (as a shared video re-encodes the shrunk frame), and brought back to
    size, linearly, or with ``rng`` half the time cubically."""
    h, w = image.shape[:2]
    small = cv2.resize(
        image, (max(8, round(w * factor)), max(8, round(h * factor))), interpolation=cv2.INTER_AREA
    )
    if crf is not None:
        small = h264(small, crf)
    interp = cv2.INTER_CUBIC if rng is not None and rng.random() < 0.5 else cv2.INTER_LINEAR
    return cv2.resize(small, (w, h), interpolation=interp)


def color_jitter(image: np.ndarray, rng: np.random.Generator, strength: float = 0.2) -> np.ndarray:
    img = image.astype(np.float32)
    img = img * rng.uniform(1 - strength, 1 + strength)  # brightness
    mean = img.mean()
    img = (img - mean) * rng.uniform(1 - strength, 1 + strength) + mean  # contrast
    grey = img.mean(axis=2, keepdims=True)
    img = (img - grey) * rng.uniform(1 - strength, 1 + strength) + grey  # saturation
    return np.clip(img, 0, 255).astype(np.uint8)


def shift_scale(image: np.ndarray, rng: np.random.Generator, scale=(0.9, 1.1), shift=0.05) -> np.ndarray:
    h, w = image.shape[:2]
    s = rng.uniform(*scale)
    tx, ty = rng.uniform(-shift, shift, size=2) * (w, h)
    m = np.array([[s, 0, (1 - s) * w / 2 + tx], [0, s, (1 - s) * h / 2 + ty]], dtype=np.float32)
    return cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The training transform: geometry, colour, resolution, blur, noise, then H.264 (CRF
    23..40, at 0.3 to 1 of the size) and JPEG 30..100, in the order a frame of a shared video
    saved as a picture meets them."""
    img = image
    if rng.random() < 0.5:
        img = img[:, ::-1]
    if rng.random() < 0.5:
        img = shift_scale(img, rng)
    if rng.random() < 0.8:
        img = color_jitter(img, rng)
    if rng.random() < 0.3:
        img = rescale(img, rng.uniform(0.35, 0.9), rng=rng)
    if rng.random() < 0.15:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 1.5))
    if rng.random() < 0.15:
        noise = rng.normal(0, rng.uniform(2, 8), img.shape)
        img = np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    if rng.random() < 0.25:  # a video frame, often from a smaller video than the crop
        img = rescale(img, rng.uniform(0.3, 1.0), int(rng.integers(23, 41)), rng)
    if rng.random() < 0.9:
        img = jpeg(img, int(rng.integers(30, 101)))
    return np.ascontiguousarray(img)
