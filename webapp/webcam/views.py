"""Live check from the camera: the page, and a low-latency endpoint for single frames.

Where the browser can, the page analyses frames on the device itself (static/js/webcam-device.js:
MediaPipe's BlazeFace and the same INT8 ONNX model in onnxruntime-web, fetched from ``model/``), so
no frame leaves it; the page's policy then also allows compiling WebAssembly. Otherwise the browser
sends a downscaled JPEG a few times a second (one request in flight at a time). The view stores it
under a random name and hands it to the ``realtime`` queue, which a separate worker serves, so a
long video job never delays the live picture; it waits a few seconds at most for the boxes. The
running verdict is smoothed in the browser over the last frames.
"""

from __future__ import annotations

import dataclasses
import secrets
from pathlib import Path

from celery.exceptions import TimeoutError as CeleryTimeout
from flask import Blueprint, abort, current_app, jsonify, make_response, render_template, send_from_directory
from kombu.exceptions import OperationalError

from detector.calibration import Calibration
from detector.classifier import ModelCard
from detector.config import get_settings
from detector.errors import ModelNotFound
from detector.media import sniff
from jobstore import FRAMES
from worker.live import detection_rules

from ..errors import CSP, error_response
from ..submit import celery_lock, task
from .forms import FrameForm

bp = Blueprint("webcam", __name__, url_prefix="/webcam")

# Every other page keeps the strict policy; this one may also compile WebAssembly (no eval).
WEBCAM_CSP = CSP.replace("script-src 'self'", "script-src 'self' 'wasm-unsafe-eval'", 1)


def _model_dir() -> Path:
    """The model the workers use (``UNMASK_MODEL_DIR``), or ``MODEL_DIR`` from the app's config."""
    return Path(current_app.config.get("MODEL_DIR") or get_settings().model_dir)


@bp.get("/")
def page():
    response = make_response(render_template("webcam.html", form=FrameForm()))
    response.headers["Content-Security-Policy"] = WEBCAM_CSP
    return response


@bp.get("/model/<name>")
def model_file(name: str):
    """The shipped model for on-device inference, read-only: ``card.json`` (the card's
    preprocessing fields, without its training notes) and the ONNX file the card names."""
    folder = _model_dir()
    try:
        card = ModelCard.load(folder)
    except ModelNotFound:
        abort(404)
    if name == "card.json":
        fields = {k: v for k, v in dataclasses.asdict(card).items() if k != "extra"}
        # the card's thresholds are on the calibrated P(fake) = sigmoid(logit / temperature + bias)
        fields["calibration"] = Calibration.from_card(card).to_json()
        if "thresholds" in card.extra:  # two thresholds: "uncertain" between them
            fields["thresholds"] = card.extra["thresholds"]
        # The server's detection rules, so the browser keeps and judges the same faces.
        fields["detection"] = detection_rules(get_settings())
        response = jsonify(fields)
        response.cache_control.max_age = 300
    elif name == card.file:
        response = send_from_directory(folder, name, mimetype="application/octet-stream", max_age=3600)
    else:
        abort(404)
    response.headers["Cross-Origin-Resource-Policy"] = "same-origin"
    return response


@bp.post("/frame")
def frame():
    form = FrameForm()
    if not form.validate_on_submit():
        return error_response(400, "invalid", "; ".join(m for ms in form.errors.values() for m in ms))
    data = form.frame.data.read(int(current_app.config["MAX_FRAME_KB"]) * 1024 + 1)
    if len(data) > int(current_app.config["MAX_FRAME_KB"]) * 1024:
        return error_response(413, "too_large", "the frame is too large; send a smaller picture")
    media = sniff(data[:64])
    if media is None or media.format not in ("jpeg", "png", "webp"):
        return error_response(400, "unsupported_media", "a frame must be a JPEG, PNG or WebP picture")
    folder = Path(current_app.config["DATA_DIR"]) / FRAMES
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{secrets.token_hex(12)}.{media.format}"
    path.write_bytes(data)

    timeout = float(current_app.config["FRAME_TIMEOUT"])
    try:
        with celery_lock:
            pending = task("detect_frame").apply_async(args=[str(path)], expires=timeout)
            result = pending.get(timeout=timeout, propagate=False)
            pending.forget()
    except CeleryTimeout:
        return error_response(503, "busy", "the detector is busy; the next frame will try again")
    except (OperationalError, OSError, RuntimeError):
        path.unlink(missing_ok=True)
        return error_response(503, "queue_unavailable", "the job queue is not reachable right now")
    if not isinstance(result, dict):
        return error_response(500, "internal", "internal error while analysing the frame")
    if "error" in result:
        return error_response(422, result.get("error_code", "error"), result["error"])
    return jsonify(result)
