"""Faults: a full or unwritable disk, jobs the broker lost, workers killed, Redis restarted, limits.

The fast tests use the Flask test client, the worker's task in process and a real Redis (its own
database, 11, which no test worker reads). The slow ones run the scenarios of ``make faults``
(``benchmarks/faults.py``): a private ``redis-server`` and real ``celery worker`` processes.
"""

from __future__ import annotations

import pytest

from webapp import create_app
from webapp.serve import cookie_warning

# -- cookies -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "secure"),
    [({}, True), ({"DEBUG": True}, False), ({"SECURE_COOKIES": "0"}, False), ({"SECURE_COOKIES": "1"}, True)],
    ids=["default", "debug", "opted-out", "opted-in"],
)
def test_the_session_cookie_is_secure_outside_debug(tmp_path, config, secure):
    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path), **config})
    cookie = app.test_client().get("/api/v1/csrf").headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert ("Secure" in cookie) is secure


def test_the_launcher_warns_when_secure_cookies_meet_plain_http_elsewhere():
    assert cookie_warning("127.0.0.1", {}) is None and cookie_warning("localhost", {}) is None
    assert "UNMASK_SECURE_COOKIES=0" in cookie_warning("0.0.0.0", {})
    assert cookie_warning("0.0.0.0", {"UNMASK_SECURE_COOKIES": "0"}) is None
