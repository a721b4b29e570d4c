"""The webcam's frame post: one small JPEG or PNG per request, CSRF token in a header."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired


class FrameForm(FlaskForm):
    frame = FileField("frame", validators=[FileRequired("no frame in the request")])
