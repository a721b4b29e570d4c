"""Run every dataset through the product's own face detector and crop, into a cache of crops.

Training and serving must frame faces identically, or the model learns a source's framing
instead of real vs fake; so this uses ``detector.faces`` with the margin and size of the card.
Output (under ``--out``): ``<source>.npy`` crops, ``<source>_landmarks.npy`` (468-point face
mesh on real crops, for self-blended images), ``manifest.csv`` and a per-source report.

    python -m detector.training.prepare ../shared/data/faces/* --out .cache/crops
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing as mp_
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from ..config import REPO_ROOT
from ..faces import create_detector, crop_face
from ..media import load_image
from .data import DEFAULT_CACHE
from .datasets import Sample, assign_split, read_dataset

DEFAULT_SPLIT_FILE = REPO_ROOT / "splits" / "faces.csv"
CROP_MARGIN = 0.2
CROP_SIZE = 224
FRAMES_PER_VIDEO = 8

_worker: dict = {}


def _init(detector: str, landmarks: bool) -> None:
    import mediapipe as mp

    _worker["detector"] = create_detector(detector)
    if landmarks:
        _worker["mesh"] = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=1, refine_landmarks=False
        )


def face_mesh(mesh, crop: np.ndarray) -> np.ndarray | None:
    result = mesh.process(crop)
    if not result.multi_face_landmarks:
        return None
    h, w = crop.shape[:2]
    pts = result.multi_face_landmarks[0].landmark
    return np.array([(p.x * w, p.y * h) for p in pts], dtype=np.float32)


def _frames(sample: Sample) -> list[np.ndarray]:
    if sample.path.suffix.lower() in {".mp4", ".mov", ".avi", ".webm", ".mkv", ".m4v"}:
        from ..video import sample_frames

        return [frame.image for frame in sample_frames(sample.path, FRAMES_PER_VIDEO)]
    return [load_image(sample.path)]


def _process(args: tuple[int, Sample, float, int]) -> list[dict]:
    index, sample, margin, size = args
    rows = []
    try:
        frames = _frames(sample)
    except Exception as exc:  # a bad file in a dataset is reported, not fatal
        return [{"index": index, "error": str(exc)}]
    for frame_no, image in enumerate(frames):
        faces = _worker["detector"].detect(image)
        row = {"index": index, "frame": frame_no, "found": bool(faces)}
        if faces:
            face = faces[0]
            crop = crop_face(image, face.box, margin, size)
            row.update(crop=crop, confidence=face.confidence, face_size=face.size)
            if "mesh" in _worker and sample.label == 0:
                row["landmarks"] = face_mesh(_worker["mesh"], crop)
        rows.append(row)
    return rows


def load_split_file(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    with path.open(newline="") as fh:
        return {row["group"]: row["split"] for row in csv.DictReader(fh)}


def write_split_file(path: Path, splits: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["group", "split"])
        for group in sorted(splits):
            writer.writerow([group, splits[group]])


def prepare(
    roots: list[Path],
    out: Path,
    detector: str = "blazeface",
    margin: float = CROP_MARGIN,
    size: int = CROP_SIZE,
    split_file: Path = DEFAULT_SPLIT_FILE,
    workers: int = 2,
    landmarks: bool = True,
    limit: int | None = None,
) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    splits = load_split_file(split_file)
    manifest_rows: list[dict] = []
    report: dict = {"detector": detector, "margin": margin, "size": size, "sources": {}}
    for root in roots:
        samples = read_dataset(root)
        if limit:
            samples = samples[:limit]
        if not samples:
            continue
        source = samples[0].source
        started = time.time()
        crops, marks, kept = [], [], []
        found = Counter()
        total = Counter()
        errors = 0
        jobs = [(i, s, margin, size) for i, s in enumerate(samples)]
        with mp_.get_context("spawn").Pool(workers, _init, (detector, landmarks)) as pool:
            for rows in pool.imap(_process, jobs, chunksize=16):
                for row in rows:
                    sample = samples[row["index"]]
                    key = "fake" if sample.label else "real"
                    if "error" in row:
                        errors += 1
                        continue
                    total[key] += 1
                    if not row["found"]:
                        continue
                    found[key] += 1
                    split = sample.split or splits.get(sample.group) or assign_split(sample.group)
                    splits.setdefault(sample.group, split)
                    crops.append(row["crop"])
                    lm = row.get("landmarks")
                    marks.append(lm if lm is not None else np.full((468, 2), np.nan, np.float32))
                    kept.append((sample, row, split))
        np.save(out / f"{source}.npy", np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8))
        if landmarks:
            np.save(out / f"{source}_landmarks.npy", np.stack(marks).astype(np.float16))
        for i, (sample, row, split) in enumerate(kept):
            manifest_rows.append(
                {
                    "source": source,
                    "row": i,
                    "file": str(sample.path),
                    "frame": row["frame"],
                    "label": sample.label,
                    "group": sample.group,
                    "generator": sample.generator,
                    "split": split,
                    "confidence": round(row["confidence"], 4),
                }
            )
        report["sources"][source] = {
            "found": dict(found),
            "total": dict(total),
            "unreadable": errors,
            "found_rate": {k: round(found[k] / total[k], 4) for k in total},
            "seconds": round(time.time() - started, 1),
        }
        print(source, json.dumps(report["sources"][source]), file=sys.stderr, flush=True)
    with (out / "manifest.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(manifest_rows[0]) if manifest_rows else ["source"])
        writer.writeheader()
        writer.writerows(manifest_rows)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    write_split_file(split_file, splits)
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("roots", nargs="+", type=Path, help="dataset folders (any supported layout)")
    ap.add_argument("--out", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--detector", default="blazeface", choices=["blazeface", "haar"])
    ap.add_argument("--margin", type=float, default=CROP_MARGIN)
    ap.add_argument("--size", type=int, default=CROP_SIZE)
    ap.add_argument("--split-file", type=Path, default=DEFAULT_SPLIT_FILE)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-landmarks", action="store_true")
    ap.add_argument("--limit", type=int, default=None, help="first N samples per source (smoke runs)")
    args = ap.parse_args(argv)
    prepare(
        args.roots,
        args.out,
        args.detector,
        args.margin,
        args.size,
        args.split_file,
        args.workers,
        not args.no_landmarks,
        args.limit,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
