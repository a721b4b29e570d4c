"""The storage check at the door: an upload, link or webcam frame is refused with 503 and a plain
message when the data folder has less than ``UNMASK_MIN_FREE_MB`` free or cannot be written, and
a write that fails for lack of space is answered the same way (``jobstore.check_storage``).
"""

from __future__ import annotations

import logging

from flask import Flask, Response, current_app, request

from jobstore import StorageUnavailable, check_storage

from .errors import error_response, refuse

log = logging.getLogger(__name__)

# The requests that store something in the data folder, each with the rate limit (a config name)
# that counts it: the free-space check below and the limits (webapp/limits.py) read this one list.
STORING_ENDPOINTS = {
    "analyze.index": "RATE_LIMIT_UPLOADS",  # an upload from the page
    "analyze.link": "RATE_LIMIT_UPLOADS",  # a link from the page
    "api.analyze": "RATE_LIMIT_UPLOADS",  # an upload or a link through the API
    "webcam.frame": "RATE_LIMIT_WEBCAM",  # one webcam frame for the realtime worker
}
# Those that queue an analysis job, which back-pressure counts (webcam frames are not queued there).
ANALYSIS_ENDPOINTS = frozenset(STORING_ENDPOINTS) - {"webcam.frame"}
STORAGE_RETRY_AFTER = 60  # seconds a client is asked to wait when the disk is full


def _refuse(exc: StorageUnavailable) -> Response:
    return refuse(503, exc.code, exc.message, STORAGE_RETRY_AFTER)


def check_free_space():
    """``before_request``: refuse a storing POST when the data folder is short of space."""
    if request.method != "POST" or request.endpoint not in STORING_ENDPOINTS:
        return None
    config = current_app.config
    try:
        check_storage(
            config["DATA_DIR"], int(float(config["MIN_FREE_MB"]) * 2**20), request.content_length or 0
        )
    except StorageUnavailable as exc:
        return _refuse(exc)
    return None


def storage_error(exc: OSError):
    """``errorhandler(OSError)``: a failed write of a storing request, in plain words."""
    storage = StorageUnavailable.from_os_error(exc)
    if storage is None or request.endpoint not in STORING_ENDPOINTS:
        log.error("unhandled error on %s %s", request.method, request.path, exc_info=exc)
        return error_response(500, "internal", "internal error; the problem has been logged")
    log.error("storage error on %s %s: %s", request.method, request.path, exc)
    return _refuse(storage)


def init_app(app: Flask) -> None:
    """Refuse storing requests at the door when the disk is short, and answer a failed write plainly."""
    app.before_request(check_free_space)
    app.register_error_handler(OSError, storage_error)
