"""``make load`` in small: a few API clients against the launcher's gunicorn, workers and Redis."""

from __future__ import annotations

import re

import pytest

from benchmarks import load

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_a_small_load_run_loses_no_job(capsys):
    code = load.main(["--clients", "5", "--jobs", "2", "--timeout", "120", "--video-seconds", "1"])
    out = capsys.readouterr().out
    assert code == 0, out  # no accepted job lost or stuck
    assert "lost or stuck: 0 accepted jobs without a final state" in out, out
    sent, accepted, done = map(int, re.search(r"(\d+) sent, (\d+) accepted, (\d+) done", out).groups())
    assert sent == 10 and accepted >= 8 and done == accepted, out  # a refusal is counted, never silent
    assert "requests/s" in out and "p95" in out
