"""One ``Analyzer`` per worker process, created on first use.

Loading MediaPipe and the ONNX model takes a second or two, so a worker process pays it once,
not per task. Celery's prefork pool forks children from a parent that never loaded anything;
each child loads its own copy (native libraries do not survive a fork reliably).
"""

from __future__ import annotations

import logging
import threading

import numpy as np

from detector.analyze import Analyzer
from detector.faces import crop_face

log = logging.getLogger(__name__)

_analyzer: Analyzer | None = None
_lock = threading.Lock()


def get_analyzer() -> Analyzer:
    """The process's analyzer, with evidence (face crops and heatmaps) kept for the result page."""
    global _analyzer
    if _analyzer is None:
        with _lock:
            if _analyzer is None:
                _analyzer = Analyzer(keep_evidence=True)
                log.info("analyzer ready: model %s", _analyzer.predictor.card.version)
    return _analyzer


def score_whole_image(image: np.ndarray) -> float:
    """Score a picture that is itself a face crop but where the detector finds no face.

    Quiz pool images are tight crops; the detector misses some of them, and the quiz still
    needs the model's opinion. The missing library entry point is wrapped here (see report).
    """
    analyzer = get_analyzer()
    h, w = image.shape[:2]
    crop = crop_face(image, (0, 0, w, h), 0.0, analyzer.predictor.input_size)
    return float(analyzer.predictor.predict([crop])[0])
