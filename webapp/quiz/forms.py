"""The quiz's posts: start a round, and answer one (both carry the CSRF token)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import HiddenField, RadioField
from wtforms.validators import DataRequired


class RoundForm(FlaskForm):
    pass


class AnswerForm(FlaskForm):
    round = HiddenField(validators=[DataRequired("the round is missing")])
    pick = RadioField(choices=[("a", "left"), ("b", "right")], validators=[DataRequired("pick a face")])
