"""The hostile corpus (scripts/make_hostile_corpus.py): each file ends as a failed job with a
plain message, never an internal error, a traceback or a server path; the worker goes on.

The corpus is generated per session into a temporary folder (never committed). Every file runs
through the real task function in this process (fast, deterministic); a few also go through a
real ``celery worker`` process (slow).
"""

from __future__ import annotations

import io
import re
import shutil

import pytest
from conftest import csrf_token, wait_for_job

from jobstore import Job, JobStore, new_id
from scripts.make_hostile_corpus import make_corpus

# file -> the error codes it may end with (no_face: the frames decode but hold no face)
EXPECTED = {
    "bomb-30000x30000.png": {"too_large"},
    "corrupt.jpg": {"corrupt_media"},
    "corrupt.mp4": {"corrupt_media", "no_face"},
    "corrupt.png": {"corrupt_media"},
    "corrupt.webm": {"corrupt_media", "no_face"},
    "empty.mp4": {"corrupt_media", "unsupported_media"},
    "framerate-absurd.mp4": {"no_face", "too_long", "too_large", "corrupt_media"},
    "frames-100000-at-2x2.mkv": {"too_long", "too_large"},
    "header-only.mp4": {"corrupt_media"},
    "html-named.mp4": {"unsupported_media"},
    "rotation-absurd.mp4": {"no_face", "corrupt_media"},
    "truncated.jpg": {"corrupt_media"},
    "truncated.mp4": {"corrupt_media", "no_face"},
    "truncated.png": {"corrupt_media"},
    "truncated.webm": {"corrupt_media", "no_face"},
    "zip-named.mp4": {"unsupported_media"},
}
_PATH = re.compile(r"(?:^|[\s'\"(=:])(/[A-Za-z_.]|[A-Za-z]:\\)")  # an absolute path in a message


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("hostile")
    return {path.name: path for path in make_corpus(folder)}


def test_the_corpus_has_every_case(corpus):
    assert set(corpus) == set(EXPECTED)


def _assert_plain_failure(result: dict, name: str, data_dir: str) -> None:
    assert result["status"] in ("error", "no_face"), (name, result)
    assert result["error_code"] in EXPECTED[name], (name, result["error_code"], result["error"])
    message = result["error"]
    assert message and "Traceback" not in message and "Error:" not in message, (name, message)
    assert data_dir not in message and not _PATH.search(message), (name, message)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_hostile_file_fails_its_job_in_plain_words(app, in_process, corpus, name):
    store = JobStore(app.config["DATA_DIR"])
    job = Job(id=new_id(), source="upload", filename=name, input=f"in{corpus[name].suffix}")
    folder = store.create(job)
    shutil.copy(corpus[name], folder / job.input)
    assert in_process.analyze_job(job.id)["status"] in ("error", "no_face")
    result = store.result(job.id)
    _assert_plain_failure(result, name, app.config["DATA_DIR"])
    assert not (folder / job.input).exists()  # the input is gone once analysed
    media = sorted(p.name for p in folder.iterdir() if p.suffix in (".mp4", ".jpg", ".png"))
    if result["status"] == "error":
        assert media == []  # nothing half-written is left to be served
    else:  # no face: the annotated copy is complete and the only file kept
        assert media == [result["annotated"]]


@pytest.mark.parametrize(
    "filename", ["../../etc/passwd.jpg", "..\\..\\win.ini.jpg", "pässwörd ☃ 😀.jpg", "a\x00b\x1b[31m.jpg"]
)
def test_hostile_file_names_are_kept_for_display_only(client, app, queued, webmedia, filename):
    response = client.post(
        "/",
        data={"file": (io.BytesIO(webmedia.photo.read_bytes()), filename)},
        headers={"X-CSRFToken": csrf_token(client), "Accept": "application/json"},
    )
    assert response.status_code == 202
    job = JobStore(app.config["DATA_DIR"]).load(response.get_json()["id"])
    assert "/" not in job.filename and "\\" not in job.filename and ".." not in job.filename.split("/")
    assert all(ch.isprintable() for ch in job.filename)
    assert re.fullmatch(r"[0-9a-f]{16}\.jpg", job.input)  # stored under a random name
    page = client.get(f"/jobs/{job.id}").get_data(as_text=True)
    assert "<script" not in page.split("</head>", 1)[1].split("<script", 1)[0]  # escaped, no markup


@pytest.mark.parametrize("name", ["html-named.mp4", "zip-named.mp4", "empty.mp4"])
def test_disguised_uploads_are_refused_at_the_door(client, queued, corpus, name):
    response = client.post(
        "/",
        data={"file": (io.BytesIO(corpus[name].read_bytes()), name)},
        headers={"X-CSRFToken": csrf_token(client), "Accept": "application/json"},
    )
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "unsupported_media"
    assert queued == []


@pytest.mark.slow
@pytest.mark.integration
def test_hostile_files_through_a_real_worker(service_app, corpus):
    """Failed jobs with plain messages, and the same worker then analyses a good photo."""
    live = service_app.test_client()
    for name in ("bomb-30000x30000.png", "truncated.mp4", "frames-100000-at-2x2.mkv", "corrupt.jpg"):
        response = live.post(
            "/api/v1/analyze",
            data={"file": (io.BytesIO(corpus[name].read_bytes()), name)},
            headers={"X-CSRFToken": csrf_token(live)},
        )
        assert response.status_code == 202, (name, response.get_json())
        status = wait_for_job(live, response.get_json()["id"], timeout=180)
        if status["state"] == "done":  # frames that decode but hold no face: a result
            assert status["result"]["status"] == "no_face" and "no_face" in EXPECTED[name], (name, status)
            continue
        assert status["state"] == "failed", (name, status)
        assert status["error"]["code"] in EXPECTED[name], (name, status["error"])
        message = status["error"]["message"]
        assert "Traceback" not in message and not _PATH.search(message), (name, message)
