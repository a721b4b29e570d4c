"""``make load`` in small: a few API clients against the launcher's gunicorn, workers and Redis."""

from __future__ import annotations

import pytest

from benchmarks import load

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_a_small_load_run_loses_no_job(capsys):
    assert load.main(["--clients", "5", "--jobs", "2", "--timeout", "120", "--video-seconds", "1"]) == 0
    out = capsys.readouterr().out
    assert "10 sent, 10 accepted, 10 done, 0 failed" in out
    assert "lost or stuck: 0 accepted jobs without a final state" in out
    assert "requests/s" in out and "p95" in out
