"""Readers that turn a dataset's own layout into one list of labelled samples.

Each reader knows one layout on disk and nothing about faces or models, so a user who owns
FaceForensics++ or Celeb-DF can point ``prepare`` at it and train with no code change.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..media import IMAGE_SUFFIXES, VIDEO_SUFFIXES


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int  # 1 fake, 0 real
    source: str  # the set it came from (dfdc, gan, ffpp, ...)
    group: str  # never split between train and test
    generator: str  # "real" or how the fake was made (per-method reporting)
    split: str = ""  # fixed by the dataset where it defines one (Celeb-DF's test list)


def _label(value: str) -> int:
    value = value.strip().lower()
    if value in ("fake", "1", "manipulated", "synthesis"):
        return 1
    if value in ("real", "0", "original", "pristine"):
        return 0
    raise ValueError(f"unknown label {value!r}: expected real or fake")


def read_labels_csv(root: Path, source: str | None = None) -> list[Sample]:
    """A folder with ``labels.csv`` (file, label, group, generator[, source]) as in shared/data."""
    root = Path(root)
    name = source or root.name
    out = []
    with (root / "labels.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            label = _label(row["label"])
            out.append(
                Sample(
                    path=root / row["file"],
                    label=label,
                    source=name,
                    group=f"{name}:{row.get('group') or row['file']}",
                    generator=row.get("generator") or ("fake" if label else "real"),
                )
            )
    return out


def read_label_folders(root: Path, source: str | None = None) -> list[Sample]:
    """``real/`` and ``fake/`` folders of images or videos; each file is its own group."""
    root = Path(root)
    name = source or root.name
    out = []
    for label_name in ("real", "fake"):
        folder = root / label_name
        for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
            if path.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES:
                label = _label(label_name)
                rel = path.relative_to(root).as_posix()
                out.append(Sample(path, label, name, f"{name}:{rel}", label_name))
    return out


def _videos(folder: Path) -> Iterator[Path]:
    if folder.is_dir():
        yield from (p for p in sorted(folder.rglob("*")) if p.suffix.lower() in VIDEO_SUFFIXES)


def read_faceforensics(root: Path, compression: str = "c23") -> list[Sample]:
    """FaceForensics++: originals and each manipulation method, grouped by source video.

    ``manipulated_sequences/<Method>/<c>/videos/<target>_<source>.mp4`` is made from original
    ``<target>``, so both fall in the group of the target id and never straddle a split.
    """
    root = Path(root)
    out = []
    for path in _videos(root / "original_sequences" / "youtube" / compression / "videos"):
        out.append(Sample(path, 0, "ffpp", f"ffpp:{path.stem}", "real"))
    manipulated = root / "manipulated_sequences"
    for method_dir in sorted(p for p in manipulated.iterdir() if p.is_dir()) if manipulated.is_dir() else []:
        for path in _videos(method_dir / compression / "videos"):
            target = path.stem.split("_")[0]
            out.append(Sample(path, 1, "ffpp", f"ffpp:{target}", method_dir.name))
    return out


def read_celebdf(root: Path) -> list[Sample]:
    """Celeb-DF v2: the official test list fixes the test split; the rest is for training."""
    root = Path(root)
    test_list = root / "List_of_testing_videos.txt"
    testing = set()
    if test_list.exists():
        for line in test_list.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                testing.add(parts[1])
    out = []
    for folder, label in (("Celeb-real", 0), ("YouTube-real", 0), ("Celeb-synthesis", 1)):
        for path in _videos(root / folder):
            rel = path.relative_to(root).as_posix()
            # ids look like id0_0001 (real) and id0_id1_0001 (fake): the identity is the group
            person = path.stem.split("_")[0]
            split = "test" if rel in testing else "train"
            generator = "celebdf" if label else "real"
            out.append(Sample(path, label, "celebdf", f"celebdf:{person}", generator, split))
    return out


def detect_layout(root: Path) -> str:
    root = Path(root)
    if (root / "labels.csv").exists():
        return "labels_csv"
    if (root / "original_sequences").is_dir() or (root / "manipulated_sequences").is_dir():
        return "faceforensics"
    if (root / "Celeb-synthesis").is_dir() or (root / "List_of_testing_videos.txt").exists():
        return "celebdf"
    if (root / "real").is_dir() or (root / "fake").is_dir():
        return "label_folders"
    raise ValueError(
        f"{root}: unknown dataset layout (expected labels.csv, real/ and fake/ folders, "
        "FaceForensics++ or Celeb-DF v2)"
    )


READERS = {
    "labels_csv": read_labels_csv,
    "label_folders": read_label_folders,
    "faceforensics": read_faceforensics,
    "celebdf": read_celebdf,
}


def read_dataset(root: Path) -> list[Sample]:
    return READERS[detect_layout(root)](Path(root))


def assign_split(group: str, test: float = 0.2, val: float = 0.1) -> str:
    """Deterministic split from the group's hash, so reruns and machines agree."""
    digest = int(hashlib.sha1(group.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    if digest < test:
        return "test"
    if digest < test + val:
        return "val"
    return "train"
