from __future__ import annotations

import random
from pathlib import Path

from conftest import csrf_token
from PIL import Image

import testmedia
import webapp.quiz.views as views
from webapp import create_app
from webapp.quiz.pool import QUIZ_SIDE, forget_pool, quiz_picture, scan_pool

SHARED_FACES = testmedia.SHARED / "faces" / "dfdc"


def test_empty_pool_explains_how_to_fill_it(client):
    page = client.get("/quiz/")
    assert b"quiz import" in page.data and b"real/" in page.data
    response = client.post("/quiz/round", headers={"X-CSRFToken": csrf_token(client)})
    assert response.status_code == 409


def test_import_command_fills_the_pool_with_anonymous_names(app, runner):
    result = runner.invoke(args=["quiz", "import", str(SHARED_FACES), "--limit", "3"])
    assert result.exit_code == 0, result.output
    assert "imported 3 real and 3 fake" in result.output
    pool = Path(app.config["QUIZ_DIR"])
    names = [p.name for p in (pool / "dfdc" / "real").iterdir()] + [
        p.name for p in (pool / "dfdc" / "fake").iterdir()
    ]
    assert len(names) == 6 and not any("real" in n or "fake" in n for n in names)


def test_a_round_pairs_one_data_set_through_one_crop_size_and_quality(tmp_path):
    """The look of a picture (its source's size, crop, compression) must not give the answer."""
    faces = SHARED_FACES.parent
    pool = scan_pool(faces)
    rng = random.Random(1)
    for _ in range(20):
        real, fake = pool.pick_pair(rng)
        assert real.parent.parent == fake.parent.parent, (real, fake)  # one data set
    small = quiz_picture(sorted((faces / "stargan" / "real").iterdir())[0], tmp_path / "a.jpg")
    large = quiz_picture(sorted((faces / "dfdc" / "fake").iterdir())[0], tmp_path / "b.jpg")
    with Image.open(small) as a, Image.open(large) as b:
        assert a.size == b.size == (QUIZ_SIDE, QUIZ_SIDE)
        assert a.quantization == b.quantization  # the same JPEG quality


def test_a_round_hides_the_answer_and_scores_player_and_model(app, client, runner, queued, monkeypatch):
    runner.invoke(args=["quiz", "import", str(SHARED_FACES), "--limit", "2"])
    forget_pool()

    monkeypatch.setattr(
        views, "_model_scores", lambda task_id: ({"a": 0.2, "b": 0.9}, {"a": "real", "b": "fake"})
    )
    token = csrf_token(client)
    round_ = client.post("/quiz/round", headers={"X-CSRFToken": token}).get_json()
    assert queued and queued[-1][0] == "score_images"
    urls = round_["images"]
    assert set(urls) == {"a", "b"}
    for url in urls.values():
        image = client.get(url)
        assert image.status_code == 200 and image.data[:3] == b"\xff\xd8\xff"
        assert "real" not in url and "fake" not in url
    answer = client.post(
        "/quiz/answer", data={"round": round_["round"], "pick": "a"}, headers={"X-CSRFToken": token}
    ).get_json()
    assert answer["model_pick"] == "a"
    assert answer["correct"] == (answer["real"] == "a")
    assert answer["score"] == {
        "player": int(answer["correct"]),
        "model": int(answer["real"] == "a"),
        "rounds": 1,
    }
    again = client.post(
        "/quiz/answer", data={"round": round_["round"], "pick": "a"}, headers={"X-CSRFToken": token}
    )
    assert again.status_code == 404  # one answer per round


def test_shared_data_layout_works_as_a_pool_directly(tmp_path):
    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path), "QUIZ_DIR": str(SHARED_FACES)})
    page = app.test_client().get("/quiz/")
    assert b'id="quiz"' in page.data
