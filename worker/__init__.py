"""Unmask's background workers: Celery on Redis, configured from the Flask app.

Shaped like Flask's Celery example: ``celery_init_app`` builds the Celery app from
``app.config["CELERY"]`` with a task base class that runs every task inside the Flask app
context, so tasks read the same configuration as the views. Start a worker with

    celery -A celery_app worker -Q analysis,realtime

``celery_app.py`` (at the top of the project) is that entry module. Importing this package loads
no model: each worker process makes its ``Analyzer`` on first use (``worker/analysis.py``).
"""

from __future__ import annotations

from celery import Celery, Task
from flask import Flask

from . import tasks  # noqa: F401  (registers the tasks; nothing heavy loads at import)
from .sweep import sweep_step


def celery_init_app(app: Flask) -> Celery:
    """Attach a Celery app to ``app`` (``app.extensions["celery"]``) and return it."""

    class FlaskTask(Task):
        def __call__(self, *args: object, **kwargs: object) -> object:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.config_from_object(app.config["CELERY"])
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    # Every worker fails jobs whose message the broker lost (worker/sweep.py).
    celery_app.steps["worker"].add(sweep_step(app))
    return celery_app
