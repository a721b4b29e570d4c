"""The data folder shared by the web app and the workers: job folders, storage checks, retention.

Below both ``webapp`` and ``worker`` (each imports it; it imports neither, nor Flask or Celery),
so that the web process and the workers read and write jobs the same way without importing each
other. Importing it loads nothing but the standard library.
"""

from .retention import FRAMES, QUIZ_ROUNDS, expire_data, expire_files
from .store import (
    EXTENSIONS,
    Job,
    JobStore,
    StorageUnavailable,
    check_storage,
    free_bytes,
    new_id,
    valid_filename,
    valid_id,
)

__all__ = [
    "EXTENSIONS",
    "FRAMES",
    "QUIZ_ROUNDS",
    "Job",
    "JobStore",
    "StorageUnavailable",
    "check_storage",
    "expire_data",
    "expire_files",
    "free_bytes",
    "new_id",
    "valid_filename",
    "valid_id",
]
