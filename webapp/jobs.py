"""Jobs on disk: one folder per job under ``<DATA_DIR>/jobs/<id>/``, shared by web and workers.

The folder holds ``job.json`` (what was asked), the input under a random name, and once the
worker is done ``result.json`` plus the annotated media and evidence images. Keeping the outcome on
disk (not only in the Celery result backend) lets any web process on any machine that mounts the
same folder answer for a job, and lets retention be one ``rmtree`` per expired folder.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")
_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,120}$")

# Extensions for what the content really is, whatever the client called it.
EXTENSIONS = {
    "jpeg": ".jpg",
    "png": ".png",
    "gif": ".gif",
    "webp": ".webp",
    "bmp": ".bmp",
    "tiff": ".tif",
    "mp4": ".mp4",
    "matroska": ".mkv",
    "avi": ".avi",
}


def new_id() -> str:
    """128 random bits, URL-safe: a job id nobody can guess or enumerate."""
    return secrets.token_urlsafe(16)


def valid_id(job_id: str) -> bool:
    return bool(_ID.match(job_id or ""))


def valid_filename(name: str) -> bool:
    return bool(_FILE.match(name or "")) and ".." not in name


@dataclass
class Job:
    id: str
    source: str  # "upload" or "url"
    created: float = field(default_factory=time.time)
    filename: str | None = None  # the client's name, for display only
    url: str | None = None
    input: str | None = None  # file name inside the job folder
    kind: str | None = None  # "image" or "video" when known before analysis
    attempts: int = 0  # deliveries to a worker; above 1 only after a worker died mid-job


class JobStore:
    """Reads and writes job folders; every path it returns is inside ``root``."""

    def __init__(self, data_dir: str | Path) -> None:
        self.root = Path(data_dir) / "jobs"

    def folder(self, job_id: str) -> Path:
        if not valid_id(job_id):
            raise KeyError(job_id)
        return self.root / job_id

    def create(self, job: Job) -> Path:
        folder = self.folder(job.id)
        folder.mkdir(parents=True, exist_ok=False)
        self._write(folder / "job.json", asdict(job))
        return folder

    def load(self, job_id: str) -> Job | None:
        try:
            data = json.loads((self.folder(job_id) / "job.json").read_text())
        except (KeyError, FileNotFoundError, json.JSONDecodeError):
            return None
        return Job(**{k: v for k, v in data.items() if k in Job.__dataclass_fields__})

    def save(self, job: Job) -> None:
        self._write(self.folder(job.id) / "job.json", asdict(job))

    def result(self, job_id: str) -> dict | None:
        try:
            return json.loads((self.folder(job_id) / "result.json").read_text())
        except (KeyError, FileNotFoundError, json.JSONDecodeError):
            return None

    def write_result(self, job_id: str, result: dict) -> None:
        self._write(self.folder(job_id) / "result.json", result)

    def file(self, job_id: str, name: str) -> Path | None:
        """A result file of a job, or None: never a path outside the job's folder."""
        if not valid_filename(name):
            return None
        try:
            path = self.folder(job_id) / name
        except KeyError:
            return None
        return path if path.is_file() else None

    def delete(self, job_id: str) -> None:
        shutil.rmtree(self.folder(job_id), ignore_errors=True)

    def expire(self, max_age_seconds: float, now: float | None = None) -> int:
        """Delete job folders older than the retention; returns how many went."""
        now = time.time() if now is None else now
        removed = 0
        if not self.root.is_dir():
            return 0
        for folder in self.root.iterdir():
            if not folder.is_dir() or not valid_id(folder.name):
                continue
            try:
                age = now - folder.stat().st_mtime
                job = self.load(folder.name)
                if job is not None:
                    age = now - job.created
            except OSError:
                continue
            if age > max_age_seconds:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        return removed

    @staticmethod
    def _write(path: Path, data: dict) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, path)


def expire_files(folder: Path, max_age_seconds: float, now: float | None = None) -> int:
    """Delete plain files older than the retention in one folder (webcam frames, quiz rounds)."""
    now = time.time() if now is None else now
    removed = 0
    if not folder.is_dir():
        return 0
    for path in folder.iterdir():
        try:
            if path.is_file() and now - path.stat().st_mtime > max_age_seconds:
                path.unlink()
                removed += 1
        except OSError:
            continue
    return removed
