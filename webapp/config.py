"""The web app's settings, read from ``UNMASK_*`` environment variables (and ``REDIS_URL``).

Every value has a default that is safe for a laptop, except the secret key: outside testing,
debug or an explicit local run (the launcher sets ``UNMASK_LOCAL=1``) a missing
``UNMASK_SECRET_KEY`` stops the app, so a public deployment never signs sessions with a
well-known key. Detection limits (``UNMASK_MAX_VIDEO_SECONDS`` ...) stay in ``detector.config``
so that the CLI and the worker enforce the same numbers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from detector.config import REPO_ROOT

DEFAULT_HOSTS = (
    "youtube.com,www.youtube.com,m.youtube.com,youtu.be,vimeo.com,player.vimeo.com,dailymotion.com"
)

# name -> default; the type of the default decides how the environment string is read.
DEFAULTS: dict[str, object] = {
    "SECRET_KEY": "",
    "DATA_DIR": str(REPO_ROOT / "var"),
    "QUIZ_DIR": "",  # empty: <DATA_DIR>/quiz
    "MAX_UPLOAD_MB": 200,
    "MAX_DOWNLOAD_MB": 200,
    "MAX_FRAME_KB": 2048,
    "RETENTION_HOURS": 24.0,
    "ALLOWED_URL_HOSTS": DEFAULT_HOSTS,
    "TASK_TIME_LIMIT": 900,
    "FRAME_TIMEOUT": 5.0,
    "QUIZ_TIMEOUT": 15.0,
    "LOCAL": False,
    "API_KEYS": "",
    "PROXY_HOPS": 0,  # reverse proxies in front (nginx, a load balancer) whose X-Forwarded-* to trust
    # Session cookie only over HTTPS. "auto": on, except in debug mode. Browsers accept such
    # cookies from http://127.0.0.1 and http://localhost, so the local launcher keeps working;
    # set 0 to serve plain HTTP to other machines (a LAN test without TLS).
    "SECURE_COOKIES": "auto",
    "MIN_FREE_MB": 100.0,  # uploads are refused (503 storage_full) when the data folder has less free
    # A job with no result, no message in the broker and no worker on it this long after it was
    # queued (and past the hard time limit since a worker took it) is failed as "lost".
    "STALE_JOB_MINUTES": 30.0,
    # Back-pressure and rate limits (webapp/limits.py); 0 switches one off.
    "MAX_QUEUE": 100,  # analysis jobs waiting; past it uploads and links get 503 + Retry-After
    "RATE_LIMIT_UPLOADS": 30,  # uploads and links per client address per window
    "RATE_LIMIT_WEBCAM": 900,  # webcam frames per client address per window
    "RATE_LIMIT_WINDOW": 60,  # seconds
}


class ConfigError(RuntimeError):
    """The environment asks for something the app cannot run with."""


def _coerce(name: str, default: object, raw: str) -> object:
    try:
        if isinstance(default, bool):
            return raw.strip().lower() in ("1", "true", "yes", "on")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except ValueError:
        raise ConfigError(f"UNMASK_{name}={raw!r} is not a valid {type(default).__name__}") from None
    return raw


def config_from_env(environ: Mapping[str, str] | None = None) -> dict[str, object]:
    """The app's configuration: defaults overlaid with ``UNMASK_<NAME>`` variables."""
    env = os.environ if environ is None else environ
    values = dict(DEFAULTS)
    for name, default in DEFAULTS.items():
        raw = env.get(f"UNMASK_{name}")
        if raw is not None and raw != "":
            values[name] = _coerce(name, default, raw)
    values["REDIS_URL"] = env.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    return values


def finish_config(config: dict) -> None:
    """Derive the values Flask and Celery read from the ones people set."""
    config["DATA_DIR"] = str(Path(config["DATA_DIR"]).expanduser().resolve())
    if not config.get("QUIZ_DIR"):
        config["QUIZ_DIR"] = str(Path(config["DATA_DIR"]) / "quiz")
    config["MAX_CONTENT_LENGTH"] = int(config["MAX_UPLOAD_MB"]) * 1024 * 1024 + 64 * 1024
    hosts = config["ALLOWED_URL_HOSTS"]
    if isinstance(hosts, str):
        hosts = [h.strip().lower() for h in hosts.split(",") if h.strip()]
    config["ALLOWED_URL_HOSTS"] = list(hosts)
    keys = config.get("API_KEYS") or ""
    config["API_KEYS"] = [k.strip() for k in keys.split(",") if k.strip()] if isinstance(keys, str) else keys
    secure = config.get("SECURE_COOKIES", "auto")
    if isinstance(secure, str):
        word = secure.strip().lower()
        secure = not config.get("DEBUG") if word in ("", "auto") else word in ("1", "true", "yes", "on")
    config["SECURE_COOKIES"] = bool(secure)
    soft = int(config["TASK_TIME_LIMIT"])
    redis_url = config["REDIS_URL"]
    celery = {
        "broker_url": redis_url,
        "result_backend": redis_url,
        "task_ignore_result": False,
        "task_track_started": True,
        "task_soft_time_limit": soft,
        "task_time_limit": soft + 30,
        "worker_prefetch_multiplier": 1,
        # A job is acknowledged when it ends, so a worker killed mid-job (OOM, SIGKILL, a
        # deploy) hands it back to the queue; the task gives up after MAX_ATTEMPTS deliveries.
        # The broker's visibility timeout (below) stays above the hard time limit.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "result_expires": int(float(config["RETENTION_HOURS"]) * 3600) or 3600,
        "task_routes": {
            "worker.tasks.analyze_job": {"queue": "analysis"},
            "worker.tasks.cleanup": {"queue": "analysis"},
            "worker.tasks.detect_frame": {"queue": "realtime"},
            "worker.tasks.score_images": {"queue": "realtime"},
        },
        "task_default_queue": "analysis",
        "beat_schedule": {
            "cleanup": {"task": "worker.tasks.cleanup", "schedule": 900.0},
        },
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {"visibility_timeout": soft + 120, "socket_connect_timeout": 3},
        # Fail fast (503 to the user) when Redis is down, instead of retrying for a minute.
        "broker_connection_timeout": 3,
        "redis_socket_connect_timeout": 3,
        "result_backend_transport_options": {"retry_policy": {"timeout": 3.0, "max_retries": 1}},
    }
    celery.update(config.get("CELERY") or {})
    config["CELERY"] = celery
    if not config.get("SECRET_KEY"):
        if config.get("TESTING") or config.get("DEBUG") or config.get("LOCAL"):
            config["SECRET_KEY"] = os.urandom(32).hex()
        else:
            raise ConfigError(
                "UNMASK_SECRET_KEY is not set. Set it to a long random string "
                "(python -c 'import secrets; print(secrets.token_hex(32))'), or start the app "
                "with `python -m webapp.serve`, which makes a local one."
            )
