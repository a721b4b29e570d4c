"""``python -m detector scan``, run as a user runs it: a subprocess on a folder of real files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from detector.config import REPO_ROOT

FILES = ["broken.jpg", "clip.mp4", "face.jpg", "gradient.png", "notes.mp4"]
EXPECTED_STATUS = {
    "broken.jpg": "error",
    "clip.mp4": "ok",
    "face.jpg": "ok",
    "gradient.png": "no_face",
    "notes.mp4": "error",
}


def _scan(*args: str, model_dir: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "UNMASK_MODEL_DIR": str(model_dir), "UNMASK_SAMPLE_FRAMES": "6", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "detector", "scan", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture(scope="module")
def folder(tmp_path_factory, media, make_clip, face_image) -> Path:
    root = tmp_path_factory.mktemp("scan")
    shutil.copy(media.face_photo_path(0), root / "face.jpg")
    make_clip(root / "clip.mp4", [face_image(1)], seconds=1.0)
    media.save_image(media.gradient(), root / "gradient.png")
    media.truncate(shutil.copy(media.face_photo_path(2), root / "broken.jpg"), 0.4)
    with zipfile.ZipFile(root / "notes.mp4", "w") as zf:
        zf.writestr("notes.txt", "not a video")
    (root / "readme.txt").write_text("not media: the scan skips it")
    return root


@pytest.fixture(scope="module")
def json_scan(folder, tmp_path_factory, model_dir):
    annotated = tmp_path_factory.mktemp("annotated")
    proc = _scan(str(folder), "--json", "--annotate", str(annotated), model_dir=model_dir)
    lines = proc.stdout.splitlines()
    rows = {Path(row["path"]).name: row for row in map(json.loads, lines)}
    return proc, lines, rows, annotated


def test_json_prints_one_line_per_file(json_scan):
    proc, lines, rows, _ = json_scan
    assert len(lines) == len(FILES), proc.stdout + proc.stderr
    assert sorted(rows) == FILES
    assert {name: row["status"] for name, row in rows.items()} == EXPECTED_STATUS


def test_json_rows_keep_the_contract(json_scan):
    _, _, rows, _ = json_scan
    for name, row in rows.items():
        assert {"path", "kind", "status", "verdict", "fake_probability", "faces"} <= row.keys()
        if row["status"] == "ok":
            assert row["verdict"] in ("real", "uncertain", "fake") and 0 <= row["fake_probability"] <= 1
            assert all({"box", "fake_probability", "verdict"} <= face.keys() for face in row["faces"])
        if name.endswith(".mp4") and row["status"] != "error":
            assert row["kind"] == "video" and row["frames_analyzed"] == 6
    assert rows["gradient.png"]["message"] == "no face was found"


@pytest.mark.parametrize(
    ("name", "code"), [("broken.jpg", "corrupt_media"), ("notes.mp4", "unsupported_media")]
)
def test_bad_file_is_an_error_row_in_plain_words(json_scan, name, code):
    proc, _, rows, _ = json_scan
    row = rows[name]
    assert row["error_code"] == code
    assert row["error"] and "Traceback" not in row["error"] and 'File "' not in row["error"]
    assert "Traceback" not in proc.stdout and "Traceback" not in proc.stderr
    assert proc.returncode == 1


def test_annotate_writes_annotated_copies(json_scan):
    _, _, rows, annotated = json_scan
    written = sorted(p.name for p in annotated.iterdir())
    assert written == ["clip.annotated.mp4", "face.annotated.jpg", "gradient.annotated.jpg"]
    for name in ("clip.mp4", "face.jpg", "gradient.png"):
        path = Path(rows[name]["annotated_path"])
        assert path.parent == annotated and path.stat().st_size > 1000


def test_table_with_haar_exits_zero_when_all_succeed(folder, model_dir):
    proc = _scan(
        str(folder / "face.jpg"), str(folder / "clip.mp4"), "--face-detector", "haar", model_dir=model_dir
    )
    assert proc.returncode == 0, proc.stderr
    header, *rows = proc.stdout.splitlines()
    assert header.split()[:2] == ["VERDICT", "P(FAKE)"] and "PATH" in header
    assert len(rows) == 2
    for row, name, kind in zip(rows, ("face.jpg", "clip.mp4"), ("image", "video"), strict=True):
        verdict, score, row_kind = row.split()[:3]
        assert verdict in ("REAL", "UNCERTAIN", "FAKE") and 0 <= float(score) <= 1 and row_kind == kind
        assert str(folder / name) in row
    assert "1 face(s)" in rows[0] and "6 frames, 1 person(s)" in rows[1]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{empty}"], "no image or video files found"),
        (["{empty}", "--model", "{empty}"], "Model card not found"),
    ],
    ids=["no-files", "no-model"],
)
def test_usage_errors_exit_two(tmp_path, model_dir, args, message):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = _scan(*(a.format(empty=empty) for a in args), model_dir=model_dir)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("error: ") and message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_truncated_video_is_a_corrupt_media_row(tmp_path, make_clip, face_image, media, model_dir):
    clip = media.truncate(make_clip(tmp_path / "cut.mp4", [face_image(0)], seconds=1.0), 0.5)
    proc = _scan(str(clip), "--json", model_dir=model_dir)
    row = json.loads(proc.stdout)
    assert proc.returncode == 1
    assert row["status"] == "error" and row["error_code"] == "corrupt_media", row


@pytest.mark.parametrize(
    ("how", "thresholds", "verdict"),
    [
        ("option", "0,0", "FAKE"),
        ("option", "1,1", "REAL"),
        ("option", "0,1", "UNCERTAIN"),
        ("env", "0,1", "UNCERTAIN"),
    ],
)
def test_thresholds_replace_the_cards(folder, model_dir, how, thresholds, verdict):
    """Every score is at or above 0 (fake), under 1 (real), and between 0 and 1 (uncertain)."""
    photo = str(folder / "face.jpg")
    if how == "option":
        proc = _scan(photo, "--json", "--thresholds", thresholds, model_dir=model_dir)
    else:
        proc = _scan(photo, "--json", model_dir=model_dir, env={"UNMASK_THRESHOLDS": thresholds})
    assert proc.returncode == 0, proc.stderr
    row = json.loads(proc.stdout)
    assert row["verdict"] == verdict.lower() and row["faces"][0]["verdict"] == verdict.lower()
    real, fake = map(float, thresholds.split(","))
    assert row["thresholds"] == {"real": real, "fake": fake} and row["threshold"] == fake


def test_table_says_uncertain(folder, model_dir):
    proc = _scan(str(folder / "face.jpg"), "--thresholds", "0,1", model_dir=model_dir)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1].split()[0] == "UNCERTAIN"


@pytest.mark.parametrize(("how", "value"), [("option", "0.9,0.1"), ("option", "half"), ("env", "0.9,0.1")])
def test_bad_thresholds_are_usage_errors(folder, model_dir, how, value):
    photo = str(folder / "face.jpg")
    if how == "option":
        proc = _scan(photo, "--thresholds", value, model_dir=model_dir)
    else:
        proc = _scan(photo, model_dir=model_dir, env={"UNMASK_THRESHOLDS": value})
    assert proc.returncode == 2 and proc.stdout == ""
    assert "thresholds" in proc.stderr.lower() and "Traceback" not in proc.stderr
