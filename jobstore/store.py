"""Jobs on disk: one folder per job under ``<DATA_DIR>/jobs/<id>/``, shared by web and workers.

The folder holds ``job.json`` (what was asked), the input under a random name, and once the
worker is done ``result.json`` plus the annotated media and evidence images. Keeping the outcome on
disk (not only in the Celery result backend) lets any web process on any machine that mounts the
same folder answer for a job, and lets retention be one ``rmtree`` per expired folder.

Every file is written whole or not at all (a temporary name, then a rename), and ``result.json``
is written last, so a reader never sees half a result. ``check_storage`` says in plain words
when the data folder is short of space or cannot be written (``webapp/storage.py`` asks it at the
door, the worker before it analyses).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

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
    "avif": ".avif",
    "heif": ".heic",
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
    started: float | None = None  # when a worker last took the job


# errno values that mean "the data folder cannot take this write", not a bug of ours.
_FULL = {errno.ENOSPC, errno.EDQUOT}
_UNWRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR}


class StorageUnavailable(OSError):
    """The data folder is full (``code`` ``storage_full``) or cannot be written (``storage_unavailable``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(errno.ENOSPC if code == "storage_full" else errno.EROFS, message)
        self.code = code
        self.message = message

    @classmethod
    def from_os_error(cls, exc: OSError) -> StorageUnavailable | None:
        """The plain-words version of a failed write, or None when ``exc`` is not about storage."""
        if isinstance(exc, cls):
            return exc
        if exc.errno in _FULL:
            return cls("storage_full", "the server has run out of storage space; please try again later")
        if exc.errno in _UNWRITABLE:
            return cls(
                "storage_unavailable", "the server cannot store files right now; please try again later"
            )
        return None


def free_bytes(path: str | Path) -> int:
    """Bytes free for unprivileged writers on the file system that holds ``path``."""
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def check_storage(data_dir: str | Path, min_free_bytes: int, incoming: int = 0) -> None:
    """Raise ``StorageUnavailable`` unless ``incoming`` bytes fit and leave ``min_free_bytes`` free."""
    try:
        stats = os.statvfs(data_dir)
    except OSError as exc:
        raise StorageUnavailable.from_os_error(exc) or StorageUnavailable(
            "storage_unavailable", "the server cannot store files right now; please try again later"
        ) from exc
    if stats.f_flag & os.ST_RDONLY:
        raise StorageUnavailable(
            "storage_unavailable", "the server cannot store files right now; please try again later"
        )
    if min_free_bytes > 0 and stats.f_bavail * stats.f_frsize - incoming < min_free_bytes:
        log.error(
            "storage: %d MB free in %s, below the %d MB minimum",
            stats.f_bavail * stats.f_frsize // 2**20,
            data_dir,
            min_free_bytes // 2**20,
        )
        raise StorageUnavailable(
            "storage_full", "the server has run out of storage space; please try again later"
        )


class JobStore:
    """Reads and writes job folders; every path it returns is inside ``root``."""

    def __init__(self, data_dir: str | Path) -> None:
        self.root = Path(data_dir) / "jobs"

    def folder(self, job_id: str) -> Path:
        if not valid_id(job_id):
            raise KeyError(job_id)
        return self.root / job_id

    def create(self, job: Job) -> Path:
        """Make the job's folder and ``job.json``; ``StorageUnavailable`` when the disk refuses."""
        folder = self.folder(job.id)
        try:
            folder.mkdir(parents=True, exist_ok=False)
            self._write(folder / "job.json", asdict(job))
        except FileExistsError:
            raise
        except OSError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            storage = StorageUnavailable.from_os_error(exc)
            if storage is None:
                raise
            log.error("job %s: cannot create its folder: %s", job.id, exc)
            raise storage from exc
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

    def write_result(self, job_id: str, result: dict, replace: bool = True) -> bool:
        """Write the job's outcome whole; with ``replace=False`` keep an outcome already there.

        Returns whether this call's result is the one on disk.
        """
        return self._write(self.folder(job_id) / "result.json", result, replace=replace)

    def fail(self, job_id: str, code: str, message: str, replace: bool = False) -> bool:
        """Mark a job failed with a reason and delete its input and partial outputs."""
        written = self.write_result(
            job_id, {"status": "error", "error_code": code, "error": message, "job_id": job_id}, replace
        )
        if written:
            self.clear_outputs(job_id)
        return written

    def clear_outputs(self, job_id: str) -> None:
        """Delete everything in the job's folder except ``job.json`` and ``result.json``."""
        folder = self.folder(job_id)
        if not folder.is_dir():
            return
        for leftover in folder.iterdir():
            if leftover.name in ("job.json", "result.json"):
                continue
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)

    def unfinished(self) -> Iterator[Job]:
        """Jobs that have no ``result.json`` yet (queued, running, or lost)."""
        if not self.root.is_dir():
            return
        for folder in self.root.iterdir():
            if not valid_id(folder.name) or (folder / "result.json").exists():
                continue
            job = self.load(folder.name)
            if job is not None:
                yield job

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
    def _write(path: Path, data: dict, replace: bool = True) -> bool:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            tmp.write_text(json.dumps(data, indent=1))
            if replace:
                os.replace(tmp, path)
                return True
            try:
                os.link(tmp, path)  # atomic, and never over an outcome someone else wrote
            except FileExistsError:
                return False
            except OSError:  # a file system without hard links: check, then rename
                if path.exists():
                    return False
                os.replace(tmp, path)
            return True
        finally:
            tmp.unlink(missing_ok=True)
