"""Forms of the upload and link pages (Flask-WTF: every post carries a CSRF token)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import StringField
from wtforms.validators import DataRequired, Length


class UploadForm(FlaskForm):
    file = FileField("Photo or video", validators=[FileRequired("choose a photo or video first")])


class LinkForm(FlaskForm):
    url = StringField(
        "Video link",
        validators=[DataRequired("paste a link first"), Length(max=2000, message="that link is too long")],
    )
