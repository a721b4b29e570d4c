"""Unmask's web app: pages and API in Flask, heavy work in Celery workers.

``create_app`` follows Flask's tutorial factory: safe defaults, then the environment
(``UNMASK_*``, ``REDIS_URL``), then the test mapping; nothing is configured at import time.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from detector.config import REPO_ROOT
from worker import celery_init_app

from . import analyze, api, commands, errors, limits, quiz, storage, webcam
from .config import config_from_env, finish_config
from .extensions import csrf


def create_app(test_config: Mapping[str, object] | None = None) -> Flask:
    """Build the app. ``test_config`` replaces environment values (tests, embedding)."""
    app = Flask(
        __name__,
        template_folder=str(REPO_ROOT / "templates"),
        static_folder=str(REPO_ROOT / "static"),
    )
    app.config.from_mapping(config_from_env())
    if test_config is not None:
        app.config.from_mapping(test_config)
    finish_config(app.config)
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)  # tokens live as long as the session
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SECURE"] = app.config["SECURE_COOKIES"]  # on unless debug (config.py)
    if int(app.config["PROXY_HOPS"]) > 0:
        hops = int(app.config["PROXY_HOPS"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    Path(app.config["DATA_DIR"]).mkdir(parents=True, exist_ok=True)
    if not app.debug and not app.testing:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    csrf.init_app(app)
    limits.init_app(app)
    storage.init_app(app)
    celery_init_app(app)
    errors.init_app(app)
    app.register_blueprint(analyze.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(webcam.bp)
    app.register_blueprint(quiz.bp)
    quiz.init_app(app)
    commands.init_app(app)
    return app
