from __future__ import annotations

import time

from jobstore import Job, JobStore, expire_files, new_id, valid_id


def test_ids_are_random_and_url_safe():
    ids = {new_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(valid_id(i) and len(i) == 22 for i in ids)
    assert not valid_id("../../etc/passwd")
    assert not valid_id("")


def test_store_round_trip_and_files_stay_inside(tmp_path):
    store = JobStore(tmp_path)
    job = Job(id=new_id(), source="upload", filename="me.jpg", input="abc.jpg")
    folder = store.create(job)
    assert store.load(job.id) == job
    (folder / "face-0.jpg").write_bytes(b"x")
    assert store.file(job.id, "face-0.jpg") == folder / "face-0.jpg"
    assert store.file(job.id, "../job.json") is None
    assert store.file(job.id, "missing.jpg") is None
    assert store.load("not-an-id") is None
    store.write_result(job.id, {"status": "ok"})
    assert store.result(job.id) == {"status": "ok"}


def test_expire_removes_only_old_jobs(tmp_path):
    store = JobStore(tmp_path)
    old = Job(id=new_id(), source="upload", created=time.time() - 7200)
    fresh = Job(id=new_id(), source="upload")
    store.create(old)
    store.create(fresh)
    assert store.expire(3600) == 1
    assert store.load(old.id) is None
    assert store.load(fresh.id) is not None


def test_expire_files(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    assert expire_files(tmp_path, 60, now=time.time() + 120) == 1
    assert not (tmp_path / "a.jpg").exists()
