"""Retention: deleting what the data folder has kept for longer than it should."""

from __future__ import annotations

import time
from pathlib import Path


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
