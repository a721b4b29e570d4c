"""The quiz's posts: start a round, and answer one (both carry the CSRF token)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import HiddenField
from wtforms.validators import AnyOf, DataRequired


class RoundForm(FlaskForm):
    pass


class AnswerForm(FlaskForm):
    round = HiddenField(validators=[DataRequired("the round is missing")])
    pick = HiddenField(validators=[DataRequired("pick a face"), AnyOf(["a", "b"], message="pick a or b")])
