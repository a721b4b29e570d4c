"""``flask`` commands for operators: retention by hand."""

from __future__ import annotations

from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from jobstore import JobStore, expire_files


@click.command("cleanup")
@with_appcontext
def cleanup_command() -> None:
    """Delete jobs, webcam frames and quiz rounds older than UNMASK_RETENTION_HOURS."""
    data = Path(current_app.config["DATA_DIR"])
    age = float(current_app.config["RETENTION_HOURS"]) * 3600
    jobs = JobStore(data).expire(age)
    frames = expire_files(data / "frames", min(age, 600))
    rounds = expire_files(data / "quiz-rounds", age)
    click.echo(f"removed {jobs} jobs, {frames} frames, {rounds} quiz rounds")


def init_app(app: Flask) -> None:
    app.cli.add_command(cleanup_command)
