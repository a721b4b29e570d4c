"""Against the real parts: Redis, a ``celery worker`` process, the real model; no eager mode."""

from __future__ import annotations

import io

import av
import pytest
from conftest import csrf_token, wait_for_job

import testmedia

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture
def live(service_app):
    return service_app.test_client()


def _post_file(client, path, name=None):
    return client.post(
        "/api/v1/analyze",
        data={"file": (io.BytesIO(path.read_bytes()), name or path.name)},
        headers={"X-CSRFToken": csrf_token(client)},
    )


def test_photo_through_a_real_worker(live, webmedia):
    response = _post_file(live, webmedia.photo)
    assert response.status_code == 202
    status = wait_for_job(live, response.get_json()["id"])
    assert status["state"] == "done", status
    result = status["result"]
    assert result["verdict"] in ("real", "uncertain", "fake")
    assert live.get(result["annotated_url"]).status_code == 200
    assert live.get(result["evidence"][0]["heatmap_url"]).status_code == 200


def test_video_reports_progress_and_gives_playable_annotation(live, webmedia, tmp_path):
    response = _post_file(live, webmedia.clip)
    status = wait_for_job(live, response.get_json()["id"])
    assert status["state"] == "done", status
    stages = {stage for state, stage in status["seen"]}
    assert stages & {"frames", "faces", "scoring", "encoding", "queued", "starting"}
    video = live.get(status["result"]["annotated_url"], headers={"Range": "bytes=0-99"})
    assert video.status_code == 206  # seekable in a browser
    full = tmp_path / "a.mp4"
    full.write_bytes(live.get(status["result"]["annotated_url"]).data)
    with av.open(str(full)) as clip:
        assert clip.streams.video[0].codec_context.name == "h264"
    assert status["result"]["timeline"]


def test_link_is_downloaded_by_the_worker(live, file_server):
    response = live.post(
        "/api/v1/analyze", data={"url": f"{file_server}/clip.mp4"}, headers={"X-CSRFToken": csrf_token(live)}
    )
    assert response.status_code == 202
    status = wait_for_job(live, response.get_json()["id"])
    assert status["state"] == "done", status
    assert any(stage == "download" for _, stage in status["seen"]) or status["result"]["kind"] == "video"


def test_bad_inputs_fail_clearly_and_the_worker_survives(live, webmedia, file_server, celery_worker_proc):
    cases = [
        (_post_file(live, webmedia.truncated), "corrupt"),
        (_post_file(live, webmedia.huge), "pixels"),
        (
            live.post(
                "/api/v1/analyze",
                data={"url": f"{file_server}/missing.mp4"},
                headers={"X-CSRFToken": csrf_token(live)},
            ),
            "404",
        ),
    ]
    for response, words in cases:
        status = wait_for_job(live, response.get_json()["id"])
        assert status["state"] == "failed"
        assert words in status["error"]["message"], status["error"]
    # no face is a result, not a failure
    status = wait_for_job(live, _post_file(live, webmedia.blank).get_json()["id"])
    assert status["state"] == "done" and status["error"] is None
    assert status["result"]["status"] == "no_face" and "no face" in status["result"]["message"]
    assert celery_worker_proc.poll() is None
    status = wait_for_job(live, _post_file(live, webmedia.photo).get_json()["id"])
    assert status["state"] == "done"


def test_webcam_frame_round_trip(live, webmedia):
    response = live.post(
        "/webcam/frame",
        data={"frame": (io.BytesIO(webmedia.photo.read_bytes()), "frame.jpg")},
        headers={"X-CSRFToken": csrf_token(live)},
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["faces"]


def test_quiz_answer_carries_the_models_scores(service_app, live):
    runner = service_app.test_cli_runner()
    faces = testmedia.SHARED / "faces" / "dfdc"
    assert runner.invoke(args=["quiz", "import", str(faces), "--limit", "2"]).exit_code == 0
    token = csrf_token(live)
    round_ = live.post("/quiz/round", headers={"X-CSRFToken": token}).get_json()
    answer = live.post(
        "/quiz/answer", data={"round": round_["round"], "pick": "b"}, headers={"X-CSRFToken": token}
    ).get_json()
    assert answer["scores"]["a"] is not None and answer["scores"]["b"] is not None
    assert answer["model_pick"] in ("a", "b")
    # and what the model would say of each picture alone, by the library's rule
    assert set(answer["verdicts"].values()) <= {"real", "uncertain", "fake"}
