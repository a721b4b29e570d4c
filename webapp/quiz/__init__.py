from flask import Flask

from .views import bp


def init_app(app: Flask) -> None:
    from .pool import import_command

    app.cli.add_command(import_command)


__all__ = ["bp", "init_app"]
