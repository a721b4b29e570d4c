"""Scoring face crops with the exported model in ONNX Runtime (no torch at serving time).

The model card beside the weights is the single source of preprocessing truth (input size,
mean, std, crop margin, threshold): the trainer writes it, the exporter copies it and this module
reads it, so serving can never normalise differently from training.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .calibration import Calibration
from .config import Settings, get_settings
from .cpu import CpuClass, this_cpu
from .errors import ModelNotFound
from .faces import frame_width, mask_frame
from .graph import for_serving

log = logging.getLogger(__name__)


def _load_errors() -> tuple[type[BaseException], ...]:
    """What a truncated or foreign model file raises: ONNX Runtime's own errors (they derive from
    Exception alone), protobuf's and ONNX's, and the plain ones a bad graph gives its reader.

    Why not every Exception: a task runner interrupts a slow load by raising into it (Celery's
    soft time limit), and that must reach the runner as itself, not as "model not installed"."""
    from google.protobuf.message import Error as ProtobufError
    from onnx.checker import ValidationError
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

    ort_errors = [v for v in vars(ort_state).values() if isinstance(v, type) and issubclass(v, Exception)]
    plain = (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError, RuntimeError)
    return (ProtobufError, ValidationError, *plain, *ort_errors)


@dataclass(frozen=True)
class ModelCard:
    name: str
    version: str
    architecture: str
    file: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop_margin: float
    threshold: float
    face_detector: str = "blazeface"
    frame_mask: float = 0.0  # see detector.faces.mask_frame
    extra: dict = field(default_factory=dict, compare=False)

    @classmethod
    def load(cls, model_dir: Path) -> ModelCard:
        path = Path(model_dir) / "card.json"
        if not path.exists():
            raise ModelNotFound(f"Model card not found: {path}")
        data = json.loads(path.read_text())
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data and k != "extra"}
        try:
            card = cls(**known, extra={k: v for k, v in data.items() if k not in known})
        except TypeError as exc:
            raise ModelNotFound(f"Model card {path} is incomplete: {exc}") from None
        return card


def _cv2_lut(table: np.ndarray) -> np.ndarray:
    """A 3 x 256 table as ``cv2.LUT`` takes it, made once when the model loads: one row when the
    three channels share it (the crop is then one flat lookup), else 256 x 1 x 3."""
    if (table == table[0]).all():
        return np.ascontiguousarray(table[0])
    return np.ascontiguousarray(table.T.reshape(256, 1, 3))


def sigmoid(x: np.ndarray) -> np.ndarray:
    """P(fake) from a logit, in the logit's own precision (clipped so exp cannot overflow)."""
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


class Predictor:
    """Loads the ONNX model once and scores batches of RGB uint8 crops.

    ``predict`` returns the fake probability per crop; ``predict_with_heatmaps`` also returns the
    class activation map from the same forward pass (each cell's own fake probability).
    ``rewrite=False`` serves the file's graph without the speed rewrites (``detector.graph`` says
    what they change: nothing in the scores; ``make bench`` times both). Either way the weights
    are encoded so this CPU computes the same integers as every other (``rewrites`` says how).
    """

    def __init__(
        self,
        model_dir: Path | None = None,
        settings: Settings | None = None,
        batch_size: int = 16,
        rewrite: bool = True,
        cpu: CpuClass | None = None,
    ):
        self.settings = settings or get_settings()
        self.model_dir = Path(model_dir or self.settings.model_dir)
        self.card = ModelCard.load(self.model_dir)
        self.batch_size = batch_size
        self.rewrite = rewrite
        self.cpu = cpu or this_cpu()  # another class only to measure its path (make bench)
        self._session = None
        self._input = ""  # the loaded session's input name
        self._table: np.ndarray | None = None  # set when the session takes uint8 pixels
        self._pixel_lut: np.ndarray | None = None  # the same table as cv2.LUT takes it
        self.rewrites: tuple[str, ...] = ()  # detector.graph's, once loaded
        self._lock = threading.Lock()
        # the card's calibration, applied to every logit and CAM cell served (detector.calibration)
        self.calibration = Calibration.from_card(self.card)
        self._mean = np.array(self.card.mean, dtype=np.float32).reshape(1, 3, 1, 1)
        self._std = np.array(self.card.std, dtype=np.float32).reshape(1, 3, 1, 1)
        # each channel's input for each of the 256 pixel values, computed in float32 in the order
        # training's to_tensor computes it (the browser's parity test holds serving to its scores)
        self._lut = (
            (np.arange(256, dtype=np.float32)[None, :] / 255.0) - self._mean.reshape(3, 1)
        ) / self._std.reshape(3, 1)

    @property
    def input_size(self) -> int:
        return self.card.input_size

    @property
    def threshold(self) -> float:
        return self.card.threshold

    def load(self):
        if self._session is None:
            with self._lock:
                if self._session is None:
                    self._session = self._create_session()
        return self._session

    def _create_session(self):
        import onnxruntime as ort

        path = self.model_dir / self.card.file
        if not path.exists():
            raise ModelNotFound(f"Model file not found: {path}")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.settings.threads:
            opts.intra_op_num_threads = self.settings.threads
            opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            graph = for_serving(path, self._lut, cpu=self.cpu, faster=self.rewrite)
            session = ort.InferenceSession(graph.model, sess_options=opts, providers=["CPUExecutionProvider"])
        except _load_errors() as exc:
            raise ModelNotFound(f"Model file {path} is not a model ONNX Runtime can load: {exc}") from exc
        self._input = graph.input_name
        self._table = graph.table
        self._pixel_lut = _cv2_lut(self._table) if self._table is not None else None
        self.rewrites = graph.rewrites
        log.info(
            "loaded %s (%s) on %s threads=%s rewrites=%s",
            path.name,
            self.card.version,
            self.cpu.name,
            self.settings.threads or "auto",
            ", ".join(graph.rewrites) or "none",
        )
        return session

    def _as_batch(self, crops) -> np.ndarray:
        batch = np.asarray(crops) if not isinstance(crops, list) else np.stack([np.asarray(c) for c in crops])
        size = self.input_size
        if batch.ndim != 4 or batch.shape[1:] != (size, size, 3) or batch.dtype != np.uint8:
            raise ValueError(f"crops must be {size}x{size} RGB uint8, got {batch.shape[1:]} {batch.dtype}")
        return batch

    def model_input(self, crops: np.ndarray | list[np.ndarray]) -> np.ndarray:
        """Crops as the loaded session takes them: looked-up pixels for a rewritten graph, the
        float image for the file's."""
        self.load()
        return self.preprocess(crops) if self._table is None else self.preprocess_pixels(crops)

    def preprocess_pixels(self, crops: np.ndarray | list[np.ndarray]) -> np.ndarray:
        """Crops as the rewritten graph takes them: uint8 NHWC, each channel's value looked up in
        the quantization table, the masked frame filled with a black pixel's."""
        self.load()
        if self._table is None:
            raise ValueError(f"{self.card.file} as served takes float input: use preprocess")
        batch = np.ascontiguousarray(self._as_batch(crops))
        size, lut = self.input_size, self._pixel_lut
        rows = batch.reshape(-1, size * 3) if lut.ndim == 1 else batch.reshape(-1, size, 3)
        out = cv2.LUT(rows, lut).reshape(batch.shape)
        b = frame_width(size, self.card.frame_mask)
        if b:
            black = self._table[:, 0]
            out[:, :b], out[:, size - b :], out[:, :, :b], out[:, :, size - b :] = black, black, black, black
        return out

    def preprocess(self, crops: np.ndarray | list[np.ndarray]) -> np.ndarray:
        """Crops (N x S x S x 3, uint8 RGB) as the network's input, the frame masked.

        A pixel value has 256 possible inputs per channel, so they are looked up, not computed:
        the masked frame is filled with a black pixel's and only the unmasked centre is looked
        up. Step by step this took a fifth of a crop's time at one thread (``make bench``
        compares the two). The table holds the step-by-step values to the bit: a multiply-add
        that differed by 1e-7 moved an INT8 input rounding for every pixel of one value at once,
        and a score by 0.012 away from the browser's.
        """
        batch = self._as_batch(crops)
        size = self.input_size
        b = frame_width(size, self.card.frame_mask)
        out = np.empty((len(batch), 3, size, size), dtype=np.float32)
        out[...] = self._lut[:, :1].reshape(1, 3, 1, 1)
        centre = batch[:, b : size - b, b : size - b, :]
        for channel in range(3):
            out[:, channel, b : size - b, b : size - b] = self._lut[channel][centre[..., channel]]
        return out

    def preprocess_stepwise(self, crops: np.ndarray | list[np.ndarray]) -> np.ndarray:
        """The same input computed step by step: the reference ``preprocess`` is tested and
        benchmarked against."""
        batch = np.stack([mask_frame(np.asarray(c), self.card.frame_mask) for c in crops])
        batch = batch.astype(np.float32) / 255.0
        if batch.shape[1:3] != (self.input_size, self.input_size):
            raise ValueError(f"crops must be {self.input_size}x{self.input_size}, got {batch.shape[1:3]}")
        batch = batch.transpose(0, 3, 1, 2)
        return np.ascontiguousarray((batch - self._mean) / self._std, dtype=np.float32)

    def _run(self, crops) -> tuple[np.ndarray, np.ndarray]:
        session = self.load()
        logits, cams = [], []
        for start in range(0, len(crops), self.batch_size):
            x = self.model_input(crops[start : start + self.batch_size])
            logit, cam = session.run(["logit", "cam"], {self._input: x})
            logits.append(logit[:, 0])
            cams.append(cam[:, 0])
        return np.concatenate(logits), np.concatenate(cams)

    def predict(self, crops) -> np.ndarray:
        if len(crops) == 0:
            return np.zeros(0, dtype=np.float32)
        return sigmoid(self.logits(crops)).astype(np.float32)

    def logits(self, crops, calibrated: bool = True) -> np.ndarray:
        """The calibrated fake logit per crop (``predict`` is its sigmoid); with
        ``calibrated=False`` the network's own, before the card's calibration."""
        if len(crops) == 0:
            return np.zeros(0, dtype=np.float32)
        raw = self._run(crops)[0]
        return self.calibration.apply(raw) if calibrated else raw

    def predict_with_heatmaps(self, crops) -> tuple[np.ndarray, np.ndarray]:
        if len(crops) == 0:
            return np.zeros(0, dtype=np.float32), np.zeros((0, 1, 1), dtype=np.float32)
        logits, cams = map(self.calibration.apply, self._run(crops))
        return sigmoid(logits).astype(np.float32), sigmoid(cams).astype(np.float32)
