"""Worker entry module: ``celery -A worker.app worker``. Builds the Flask app, exposes Celery."""

from webapp import create_app

flask_app = create_app()
celery_app = flask_app.extensions["celery"]
