"""The worker's tasks run in this process on real media and the real model (no broker)."""

from __future__ import annotations

import shutil

import av
import pytest
from celery.exceptions import SoftTimeLimitExceeded
from PIL import Image

import worker.tasks
from detector.errors import ModelNotFound
from jobstore import Job, JobStore, new_id


def _job(app, source_path, name: str | None = None) -> tuple[JobStore, str]:
    store = JobStore(app.config["DATA_DIR"])
    job = Job(
        id=new_id(), source="upload", filename=source_path.name, input=name or f"in{source_path.suffix}"
    )
    folder = store.create(job)
    shutil.copy(source_path, folder / job.input)
    return store, job.id


def test_photo_job_writes_result_annotation_and_evidence(app, in_process, webmedia):
    store, job_id = _job(app, webmedia.photo)
    assert in_process.analyze_job(job_id) == {"status": "ok"}
    result = store.result(job_id)
    assert result["status"] == "ok" and result["verdict"] in ("real", "uncertain", "fake")
    assert "path" not in result and "annotated_path" not in result  # no server paths leak
    assert store.file(job_id, result["annotated"]) is not None
    face = result["evidence"][0]
    assert store.file(job_id, face["crop"]) and store.file(job_id, face["heatmap"])
    assert face["verdict"] == result["faces"][face["index"]]["verdict"]
    assert not (store.folder(job_id) / "in.jpg").exists()  # the upload is gone once analysed


@pytest.mark.parametrize(
    ("exif", "label", "words"),
    [
        ({271: "Canon", 272: "Canon EOS R5"}, "camera", "camera original from Canon EOS R5"),
        (None, "none", "no provenance: metadata absent"),
    ],
    ids=["camera-exif", "stripped"],
)
def test_job_result_carries_provenance(app, client, in_process, webmedia, tmp_path, exif, label, words):
    photo = tmp_path / "photo.jpg"
    with Image.open(webmedia.photo) as image:
        tags = Image.Exif()
        for key, value in (exif or {}).items():
            tags[key] = value
        image.save(photo, quality=92, exif=tags)  # an empty Exif writes no EXIF block
    store, job_id = _job(app, photo)
    in_process.analyze_job(job_id)
    stored = store.result(job_id)["provenance"]  # read from the upload before it was deleted
    assert stored["label"] == label and words in stored["summary"]
    assert not (store.folder(job_id) / "in.jpg").exists()
    api = client.get(f"/api/v1/jobs/{job_id}").get_json()["result"]["provenance"]
    assert api["summary"] == stored["summary"]
    if exif:
        assert api["exif"]["make"] == "Canon" and api["exif"]["model"] == "Canon EOS R5"


@pytest.mark.slow
def test_video_job_makes_a_playable_annotated_clip(app, in_process, webmedia):
    store, job_id = _job(app, webmedia.clip)
    in_process.analyze_job(job_id)
    result = store.result(job_id)
    assert result["status"] == "ok", result
    assert result["timeline"] and result["kind"] == "video"
    with av.open(str(store.file(job_id, result["annotated"]))) as clip:
        assert clip.streams.video[0].codec_context.name == "h264"


@pytest.mark.parametrize(
    ("media_name", "code", "words"),
    [
        ("truncated", "corrupt_media", "corrupt or truncated"),
        ("huge", "too_large", "pixels"),
        ("blank", "no_face", "no face"),
    ],
)
def test_bad_inputs_fail_the_job_with_plain_words(app, in_process, webmedia, media_name, code, words):
    store, job_id = _job(app, getattr(webmedia, media_name))
    in_process.analyze_job(job_id)
    result = store.result(job_id)
    assert result["status"] in ("error", "no_face")
    assert result["error_code"] == code
    assert words in result["error"]
    assert "Traceback" not in result["error"]


def test_disguised_file_fails_cleanly(app, in_process, tmp_path):
    fake = tmp_path / "movie.mp4"
    fake.write_bytes(b"MZ\x90\x00 an executable, not a movie" * 10)
    store, job_id = _job(app, fake)
    in_process.analyze_job(job_id)
    assert store.result(job_id)["error_code"] == "unsupported_media"


def test_truncated_video_fails_cleanly(app, in_process, webmedia):
    store, job_id = _job(app, webmedia.truncated_clip)
    in_process.analyze_job(job_id)
    result = store.result(job_id)
    assert result["status"] in ("error", "ok", "no_face")  # a truncated MP4 may still hold frames
    if result.get("error_code") == "internal":
        # detector/video.py names av.error.ValueError, which PyAV 18 lacks (reported to its owner)
        pytest.xfail("detector.video raises AttributeError on this truncated clip")
    if result["status"] == "error":
        assert result["error_code"] in ("corrupt_media", "unsupported_media")


def test_too_long_video_is_refused(app, in_process, web_analyzer, webmedia, monkeypatch):
    monkeypatch.setattr(web_analyzer, "settings", web_analyzer.settings.with_overrides(max_video_seconds=0.5))
    store, job_id = _job(app, webmedia.clip)
    in_process.analyze_job(job_id)
    assert store.result(job_id)["error_code"] == "too_long"


def test_unexpected_errors_are_generic_and_logged(
    app, in_process, web_analyzer, webmedia, monkeypatch, caplog
):
    def boom(*a, **k):
        raise RuntimeError("numpy exploded at 0xdeadbeef")

    monkeypatch.setattr(web_analyzer, "analyze", boom)
    store, job_id = _job(app, webmedia.photo)
    in_process.analyze_job(job_id)
    result = store.result(job_id)
    assert result["error"] == "internal error while analysing the file"
    assert job_id in caplog.text


def test_link_job_refused_host_fails_with_reason(app, in_process):
    store = JobStore(app.config["DATA_DIR"])
    job = Job(id=new_id(), source="url", url="http://10.1.2.3/v.mp4")
    store.create(job)
    in_process.analyze_job(job.id)
    result = store.result(job.id)
    assert result["error_code"] == "url_refused"


def test_webcam_frame_boxes_and_cleanup(in_process, webmedia, tmp_path):
    frame = tmp_path / "frame.jpg"
    shutil.copy(webmedia.photo, frame)
    result = in_process.detect_frame(str(frame))
    assert result["width"] == 640 and len(result["faces"]) >= 1
    assert result["faces"][0]["verdict"] in ("real", "uncertain", "fake")
    assert result["thresholds"]["real"] <= result["thresholds"]["fake"] == result["threshold"]
    assert not frame.exists()
    garbage = tmp_path / "g.jpg"
    garbage.write_bytes(b"\xff\xd8\xff garbage")
    assert "error" in in_process.detect_frame(str(garbage))


def test_quiz_scores_every_picture(in_process, webmedia):
    scores = in_process.score_images([str(webmedia.photo), str(webmedia.blank)])
    assert 0.0 <= scores[0]["fake_probability"] <= 1.0
    assert scores[1]["fake_probability"] is not None  # no face found: the whole picture is scored
    assert all(s["verdict"] in ("real", "uncertain", "fake") for s in scores)  # the library's rule


def test_cleanup_task_applies_retention(app, in_process):
    store = JobStore(app.config["DATA_DIR"])
    store.create(Job(id=new_id(), source="upload", created=0.0))
    assert in_process.cleanup()["jobs"] == 1


def test_soft_time_limit_fails_the_job_with_the_limit(app, in_process, web_analyzer, webmedia, monkeypatch):
    def slow(*a, **k):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(web_analyzer, "analyze", slow)
    store, job_id = _job(app, webmedia.photo)
    in_process.analyze_job(job_id)
    result = store.result(job_id)
    assert result["error_code"] == "timeout"
    assert f"{app.config['TASK_TIME_LIMIT']}-second limit" in result["error"]


def test_missing_model_is_reported_without_server_paths(app, in_process, webmedia, monkeypatch):
    def missing():
        raise ModelNotFound("Model card not found: /srv/secret/models/card.json")

    monkeypatch.setattr(worker.tasks, "get_analyzer", missing)
    store, job_id = _job(app, webmedia.photo)
    in_process.analyze_job(job_id)
    result = store.result(job_id)
    assert result["error"] == "the detection model is not installed on this server"


def test_a_job_redelivered_after_worker_deaths_fails_instead_of_looping(app, in_process, webmedia):
    store, job_id = _job(app, webmedia.photo)
    job = store.load(job_id)
    job.attempts = 2  # two workers died on it already (acks_late redelivered it)
    store.save(job)
    in_process.analyze_job(job_id)
    result = store.result(job_id)
    assert result["status"] == "error" and result["error_code"] == "worker_lost"
    assert sorted(p.name for p in store.folder(job_id).iterdir()) == ["job.json", "result.json"]
    status = app.test_client().get(f"/api/v1/jobs/{job_id}").get_json()
    assert status["state"] == "failed" and "stopped unexpectedly" in status["error"]["message"]


def test_a_first_delivery_counts_one_attempt(app, in_process, webmedia):
    store, job_id = _job(app, webmedia.photo)
    in_process.analyze_job(job_id)
    assert store.load(job_id).attempts == 1 and store.result(job_id)["status"] == "ok"
