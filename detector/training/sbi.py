"""Self-blended images (Shiohara and Yamasaki, CVPR 2022): fakes made from one real face.

Two differently processed copies of the same face are blended inside a deformed, blurred face
mask. The result carries only generic forgery traces (a blending boundary, a colour and
sharpness mismatch, a slight misalignment), so a model trained on it learns those traces rather
than one generator's fingerprint, which is what lets it generalise to unseen face swaps.
"""

from __future__ import annotations

import cv2
import numpy as np

from .augment import color_jitter


def hull_mask(shape: tuple[int, int], landmarks: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """Convex hull of the face landmarks, or a centred ellipse where none were found."""
    h, w = shape
    mask = np.zeros((h, w), dtype=np.float32)
    if landmarks is not None and np.isfinite(landmarks).all():
        hull = cv2.convexHull(landmarks.astype(np.int32))
        cv2.fillConvexPoly(mask, hull, 1.0)
    else:
        mask = face_ellipse(shape, rng.uniform(0.28, 0.34), rng.uniform(0.33, 0.4))
    return mask


def face_ellipse(shape: tuple[int, int], rx: float = 0.31, ry: float = 0.365) -> np.ndarray:
    """Where the face is in a crop without landmarks: the crop is centred on the face box with a
    margin of 0.2 a side, so the face spans about 70 % of it; ``rx`` and ``ry`` are the ellipse's
    half-axes as fractions of the side."""
    h, w = shape
    mask = np.zeros((h, w), dtype=np.float32)
    cv2.ellipse(mask, (w // 2, int(h * 0.52)), (int(w * rx), int(h * ry)), 0, 0, 360, 1.0, -1)
    return mask


def deform_mask(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random elastic warp, grow or shrink, blur and blend ratio, as in the SBI recipe."""
    h, w = mask.shape
    # low-frequency elastic deformation
    grid = rng.normal(0, 1, (2, 5, 5)).astype(np.float32) * rng.uniform(2, 8)
    dx = cv2.resize(grid[0], (w, h), interpolation=cv2.INTER_CUBIC)
    dy = cv2.resize(grid[1], (w, h), interpolation=cv2.INTER_CUBIC)
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    mask = cv2.remap(mask, xs + dx, ys + dy, cv2.INTER_LINEAR)
    k = int(rng.integers(1, 16))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    mask = cv2.erode(mask, kernel) if rng.random() < 0.5 else cv2.dilate(mask, kernel)
    sigma = rng.uniform(2, 12)
    mask = cv2.GaussianBlur(mask, (0, 0), sigma)
    mask = mask / max(float(mask.max()), 1e-6)
    ratio = rng.choice([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])
    return np.clip(mask * ratio, 0, 1)


def _source_transform(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = color_jitter(image, rng, strength=0.15)
    if rng.random() < 0.5:  # hue shift
        hsv = cv2.cvtColor(out, cv2.COLOR_RGB2HSV).astype(np.int16)
        hsv[..., 0] = (hsv[..., 0] + int(rng.integers(-6, 7))) % 180
        out = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
    if rng.random() < 0.5:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.5, 1.5))
    else:
        blur = cv2.GaussianBlur(out, (0, 0), 1.0)
        out = cv2.addWeighted(out, 1.5, blur, -0.5, 0)
    h, w = out.shape[:2]
    s = rng.uniform(0.94, 1.06)
    sx, sy = rng.uniform(0.96, 1.04) * s, s
    tx, ty = rng.uniform(-0.03, 0.03, 2) * (w, h)
    m = np.array([[sx, 0, (1 - sx) * w / 2 + tx], [0, sy, (1 - sy) * h / 2 + ty]], np.float32)
    return cv2.warpAffine(out, m, (w, h), borderMode=cv2.BORDER_REFLECT)


def self_blend(image: np.ndarray, landmarks: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """One self-blended fake from a real uint8 RGB crop and its 468 face-mesh points."""
    source = _source_transform(image, rng)
    target = image
    if rng.random() < 0.5:
        source, target = target, source
    mask = deform_mask(hull_mask(image.shape[:2], landmarks, rng), rng)[..., None]
    blended = source.astype(np.float32) * mask + target.astype(np.float32) * (1 - mask)
    return np.clip(blended, 0, 255).astype(np.uint8)
