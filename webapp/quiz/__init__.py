from flask import Flask

from .pool import import_command
from .views import bp


def init_app(app: Flask) -> None:
    app.cli.add_command(import_command)


__all__ = ["bp", "init_app"]
