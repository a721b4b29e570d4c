"""``flask`` commands for operators: retention by hand."""

from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from jobstore import expire_data


@click.command("cleanup")
@with_appcontext
def cleanup_command() -> None:
    """Delete jobs, webcam frames and quiz rounds older than UNMASK_RETENTION_HOURS."""
    removed = expire_data(current_app.config["DATA_DIR"], float(current_app.config["RETENTION_HOURS"]))
    click.echo(f"removed {removed['jobs']} jobs, {removed['frames']} frames, {removed['rounds']} quiz rounds")


def init_app(app: Flask) -> None:
    app.cli.add_command(cleanup_command)
