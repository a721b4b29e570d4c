"""Back-pressure and per-client rate limits, counted in Redis so every web process agrees.

- ``UNMASK_MAX_QUEUE``: when more analysis jobs than this wait in the broker's ``analysis`` list,
  new uploads and links get 503 with ``Retry-After`` instead of piling up (0: no limit).
- ``UNMASK_RATE_LIMIT_UPLOADS`` / ``UNMASK_RATE_LIMIT_WEBCAM``: requests per client address per
  ``UNMASK_RATE_LIMIT_WINDOW`` seconds (a fixed window); over it, 429 with ``Retry-After``
  (0: no limit). The client address is ``request.remote_addr``, which ``UNMASK_PROXY_HOPS``
  makes the real one behind a reverse proxy.

The checks run before the request body is read. When Redis cannot be reached they let the
request through (the enqueue then answers 503 on its own) and log a warning.
"""

from __future__ import annotations

import logging
import time

import redis
from flask import Flask, current_app, request

from .errors import refuse
from .storage import ANALYSIS_ENDPOINTS, STORING_ENDPOINTS

log = logging.getLogger(__name__)

ANALYSIS_QUEUE = "analysis"
QUEUE_RETRY_AFTER = 30  # seconds a client is asked to wait when the queue is full


def _redis() -> redis.Redis:
    client = current_app.extensions.get("unmask_limits_redis")
    if client is None:
        client = redis.Redis.from_url(
            current_app.config["REDIS_URL"], socket_connect_timeout=2, socket_timeout=2
        )
        current_app.extensions["unmask_limits_redis"] = client
    return client


def queue_depth() -> int:
    """Analysis jobs waiting in the broker (Celery's Redis transport keeps them in a list)."""
    return int(_redis().llen(ANALYSIS_QUEUE))


def hit(name: str, client: str, limit: int, window: int) -> int:
    """Count one request; return 0 when within ``limit``, else the seconds until the window ends."""
    now = time.time()
    slot = int(now // window)
    key = f"unmask:rate:{name}:{client}:{slot}"
    pipe = _redis().pipeline()
    pipe.incr(key)
    pipe.expire(key, window + 1)
    count = pipe.execute()[0]
    if count <= limit:
        return 0
    return max(1, int((slot + 1) * window - now) + 1)


def check_request():
    """``before_request``: refuse a limited POST over its client's rate or a full queue."""
    if request.method != "POST" or request.endpoint not in STORING_ENDPOINTS:
        return None
    config = current_app.config
    name = STORING_ENDPOINTS[request.endpoint]
    limit = int(config[name])
    try:
        if limit > 0:
            window = max(1, int(config["RATE_LIMIT_WINDOW"]))
            wait = hit(name.rsplit("_", 1)[-1].lower(), request.remote_addr or "unknown", limit, window)
            if wait:
                log.info("rate limit %s: %s over %d per %d s", name, request.remote_addr, limit, window)
                return refuse(
                    429,
                    "rate_limited",
                    f"too many requests from your address; try again in {wait} seconds",
                    wait,
                )
        most = int(config["MAX_QUEUE"])
        if most > 0 and request.endpoint in ANALYSIS_ENDPOINTS:
            depth = queue_depth()
            if depth >= most:
                log.warning("back-pressure: %d jobs queued (limit %d); upload refused", depth, most)
                return refuse(
                    503,
                    "queue_full",
                    "the server is busy with other analyses; please try again in a minute",
                    QUEUE_RETRY_AFTER,
                )
    except redis.exceptions.RedisError as exc:
        log.warning("limits not checked, Redis unavailable: %s", exc)
    return None


def init_app(app: Flask) -> None:
    app.before_request(check_request)
