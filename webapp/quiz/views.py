""" "Which face is real?": two faces, one real and one fake; the player picks, the model too.

A round lives in ``<DATA_DIR>/quiz-rounds/<id>.json`` on the server, so the pictures' origins
never reach the browser (the session cookie is signed, not secret). The model's scores are
computed by a worker while the player looks; the answer waits for them a few seconds at most.
The running score (player versus model) is kept in the session.
"""

from __future__ import annotations

import json
import random
import secrets
import time
from pathlib import Path

from celery.exceptions import TimeoutError as CeleryTimeout
from flask import Blueprint, abort, current_app, jsonify, render_template, send_file, session, url_for
from kombu.exceptions import OperationalError

from jobstore import QUIZ_ROUNDS

from ..errors import error_response
from ..submit import celery_lock, task
from .forms import AnswerForm, RoundForm
from .pool import load_pool, quiz_picture

bp = Blueprint("quiz", __name__, url_prefix="/quiz")


def _rounds() -> Path:
    folder = Path(current_app.config["DATA_DIR"]) / QUIZ_ROUNDS
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _load_round(round_id: str) -> dict | None:
    if not round_id or not round_id.isalnum() or len(round_id) > 64:
        return None
    try:
        return json.loads((_rounds() / f"{round_id}.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _score() -> dict:
    return dict(session.get("quiz_score") or {"player": 0, "model": 0, "rounds": 0})


@bp.get("/")
def page():
    pool = load_pool(current_app.config["QUIZ_DIR"])
    return render_template(
        "quiz.html",
        pool=pool,
        quiz_dir=current_app.config["QUIZ_DIR"],
        round_form=RoundForm(),
        answer_form=AnswerForm(),
        score=_score(),
    )


@bp.post("/round")
def new_round():
    form = RoundForm()
    if not form.validate_on_submit():
        return error_response(400, "invalid", "the request was not valid; reload the page")
    pool = load_pool(current_app.config["QUIZ_DIR"])
    if not pool.playable:
        return error_response(
            409, "empty_pool", "the quiz has no pictures yet; see the quiz page for how to add them"
        )
    real, fake = pool.pick_pair()
    real_side = random.choice("ab")
    originals = {"a": real, "b": fake} if real_side == "a" else {"a": fake, "b": real}
    round_id = secrets.token_hex(16)
    # The pictures the player sees, and the model scores: the same crop, size and JPEG quality.
    pictures = {
        side: str(quiz_picture(path, _rounds() / f"{round_id}-{side}.jpg"))
        for side, path in originals.items()
    }
    task_id = None
    try:
        timeout = float(current_app.config["QUIZ_TIMEOUT"])
        task_id = _send_scoring(pictures, timeout)
    except (OperationalError, OSError, RuntimeError):
        pass  # the round still works; the answer will say the model's scores are missing
    record = {
        "pictures": pictures,
        "originals": {side: str(path) for side, path in originals.items()},
        "real": real_side,
        "task": task_id,
        "created": time.time(),
    }
    (_rounds() / f"{round_id}.json").write_text(json.dumps(record))
    return jsonify(
        round=round_id,
        images={side: url_for("quiz.image", round_id=round_id, side=side) for side in "ab"},
    )


@bp.get("/image/<round_id>/<side>")
def image(round_id: str, side: str):
    record = _load_round(round_id)
    if record is None or side not in ("a", "b"):
        abort(404)
    return send_file(record["pictures"][side], max_age=0)


@bp.post("/answer")
def answer():
    form = AnswerForm()
    if not form.validate_on_submit():
        return error_response(400, "invalid", "; ".join(m for ms in form.errors.values() for m in ms))
    record = _load_round(form.round.data)
    if record is None:
        return error_response(404, "no_round", "that round is over or unknown; start a new one")
    (_rounds() / f"{form.round.data}.json").unlink(missing_ok=True)  # one answer per round
    scores, verdicts = _model_scores(record.get("task"))
    real = record["real"]
    correct = form.pick.data == real
    model_pick = None
    if scores["a"] is not None and scores["b"] is not None:
        model_pick = "a" if scores["a"] < scores["b"] else "b"  # the less fake-looking one is real
    score = _score()
    score["rounds"] += 1
    score["player"] += int(correct)
    score["model"] += int(model_pick == real)
    session["quiz_score"] = score
    return jsonify(
        correct=correct,
        real=real,
        pick=form.pick.data,
        scores=scores,
        verdicts=verdicts,
        model_pick=model_pick,
        model_correct=None if model_pick is None else model_pick == real,
        score=score,
    )


def _send_scoring(pictures: dict, timeout: float) -> str:
    with celery_lock:
        return task("score_images").apply_async(args=[[pictures["a"], pictures["b"]]], expires=timeout * 4).id


def _model_scores(task_id: str | None) -> tuple[dict, dict]:
    """Each side's fake probability and its verdict by the library's photo rule (real, uncertain
    or fake), as the worker scored them; None for both where it has not."""
    empty = {"a": None, "b": None}, {"a": None, "b": None}
    if not task_id:
        return empty
    pending = current_app.extensions["celery"].AsyncResult(task_id)
    try:
        with celery_lock:
            result = pending.get(timeout=float(current_app.config["QUIZ_TIMEOUT"]), propagate=False)
            pending.forget()
    except (CeleryTimeout, OperationalError, OSError, RuntimeError):
        return empty
    if not isinstance(result, list) or len(result) != 2:
        return empty
    sides = dict(zip(("a", "b"), result, strict=True))
    return (
        {s: r.get("fake_probability") for s, r in sides.items()},
        {s: r.get("verdict") for s, r in sides.items()},
    )
