"""Retention: what the data folder keeps, and for how long. One routine for the worker's schedule
(``worker.tasks.cleanup``) and the operator's ``flask cleanup``.
"""

from __future__ import annotations

import time
from pathlib import Path

from .store import JobStore

# Folders of the data folder besides ``jobs/``: webcam frames waiting for the realtime worker, and
# quiz rounds (the pictures' origins, kept on the server until the round is answered).
FRAMES = "frames"
QUIZ_ROUNDS = "quiz-rounds"
# A webcam frame is judged within seconds; one left behind goes after ten minutes at most.
FRAME_MAX_AGE = 600.0


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


def expire_data(data_dir: str | Path, retention_hours: float, now: float | None = None) -> dict[str, int]:
    """Delete jobs, webcam frames and quiz rounds older than the retention; how many of each went."""
    data = Path(data_dir)
    age = float(retention_hours) * 3600
    return {
        "jobs": JobStore(data).expire(age, now),
        "frames": expire_files(data / FRAMES, min(age, FRAME_MAX_AGE), now),
        "rounds": expire_files(data / QUIZ_ROUNDS, age, now),
    }
