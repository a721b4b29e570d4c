"""The Celery entry point: ``celery -A celery_app worker`` (as ``wsgi.py`` is gunicorn's).

Shaped like Flask's Celery example (``make_celery.py``): build the Flask app, which attaches its
Celery app (``worker.celery_init_app``), and expose that. Workers import this module; nothing in
``webapp`` or ``worker`` imports it.
"""

from webapp import create_app

flask_app = create_app()
app = flask_app.extensions["celery"]
