"""The quiz's picture pool: a folder with ``real/`` and ``fake/`` (at any depth), and its importer.

A round pairs a real and a fake picture of the same data set, and both are shown through the
same square crop, size and JPEG quality (``quiz_picture``), so only the faces differ.

Any image whose path has a folder named ``real`` or ``fake`` counts, so the pool can be a folder
filled by ``flask --app webapp.manage quiz import`` or a data set laid out like ``../shared/data/faces``
(``<set>/real``, ``<set>/fake``) used as it is. The listing is cached per process for a minute.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext
from PIL import Image, ImageOps

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
_CACHE_SECONDS = 60.0
# Every quiz picture is shown as this: a centred square, this many pixels, this JPEG quality, no
# metadata. A 128 px StarGAN face beside a 224 px DFDC crop (or quality 75 beside 95) gives the
# answer away by its look, not its face.
QUIZ_SIDE = 224
QUIZ_JPEG_QUALITY = 90


def source_of(path: Path, root: Path) -> str:
    """The data set a picture comes from: the folder that holds its ``real/`` or ``fake/``
    folder (``faces/stargan/fake/x.jpg`` -> ``stargan``), or the pool's own name."""
    parts = path.relative_to(root).parts[:-1]
    for i in range(len(parts) - 1, -1, -1):
        if parts[i].lower() in ("real", "fake"):
            return parts[i - 1] if i > 0 else root.name
    return root.name


@dataclass(frozen=True)
class Pool:
    root: Path
    real: tuple[Path, ...]
    fake: tuple[Path, ...]

    @property
    def playable(self) -> bool:
        return bool(self.real) and bool(self.fake)

    def pick_pair(self, rng: random.Random | None = None) -> tuple[Path, Path]:
        """A real and a fake picture from the same data set, so that the camera, the crop and
        the compression of their source cannot tell them apart (any pair where no set has both)."""
        rng = rng or random.Random()
        by_source: dict[str, tuple[list[Path], list[Path]]] = {}
        for index, paths in ((0, self.real), (1, self.fake)):
            for path in paths:
                by_source.setdefault(source_of(path, self.root), ([], []))[index].append(path)
        both = sorted(name for name, (real, fake) in by_source.items() if real and fake)
        if both:
            real, fake = by_source[rng.choice(both)]
            return rng.choice(real), rng.choice(fake)
        return rng.choice(self.real), rng.choice(self.fake)


def quiz_picture(source: Path, dest: Path) -> Path:
    """``source`` as every quiz picture is shown: the centred square at ``QUIZ_SIDE`` pixels,
    JPEG at ``QUIZ_JPEG_QUALITY``, without metadata."""
    with Image.open(source) as img:
        upright = (ImageOps.exif_transpose(img) or img).convert("RGB")
        square = ImageOps.fit(upright, (QUIZ_SIDE, QUIZ_SIDE), Image.Resampling.LANCZOS)
        square.save(dest, "JPEG", quality=QUIZ_JPEG_QUALITY)
    return dest


_cache: dict[str, tuple[float, Pool]] = {}
_lock = threading.Lock()


def _label(path: Path, root: Path) -> str | None:
    for part in reversed(path.relative_to(root).parts[:-1]):
        if part.lower() in ("real", "fake"):
            return part.lower()
    return None


def scan_pool(root: Path) -> Pool:
    real, fake = [], []
    if root.is_dir():
        for path in sorted(root.rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                label = _label(path, root)
                if label == "real":
                    real.append(path)
                elif label == "fake":
                    fake.append(path)
    return Pool(root, tuple(real), tuple(fake))


def load_pool(root: str | Path) -> Pool:
    root = Path(root).resolve()
    key = str(root)
    with _lock:
        hit = _cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < _CACHE_SECONDS:
            return hit[1]
    pool = scan_pool(root)
    with _lock:
        _cache[key] = (time.monotonic(), pool)
    return pool


def forget_pool() -> None:
    with _lock:
        _cache.clear()


def _is_image(path: Path) -> bool:
    try:
        with Image.open(path) as img:
            img.verify()
        return True
    except Exception:
        return False


def import_images(sources: list[Path], dest: Path, limit: int, seed: int = 0) -> dict[str, int]:
    """Copy up to ``limit`` real and ``limit`` fake pictures from ``sources`` into ``dest``.

    Files get content-hash names (no hint of their origin), and anything that does not decode as
    an image is skipped.
    """
    rng = random.Random(seed)
    counts = {"real": 0, "fake": 0, "skipped": 0}
    found: dict[str, list[tuple[str, Path]]] = {"real": [], "fake": []}
    for source in sources:
        pool = scan_pool(Path(source).resolve())
        found["real"] += [(source_of(p, pool.root), p) for p in pool.real]
        found["fake"] += [(source_of(p, pool.root), p) for p in pool.fake]
    for label, paths in found.items():
        rng.shuffle(paths)
        for origin, path in paths:
            if counts[label] >= limit:
                break
            if not _is_image(path):
                counts["skipped"] += 1
                continue
            # <data set>/<label>/: rounds pair a real and a fake of one data set (Pool.pick_pair)
            target = dest / origin / label
            target.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:20]
            shutil.copyfile(path, target / f"{digest}{path.suffix.lower()}")
            counts[label] += 1
    forget_pool()
    return counts


@click.group("quiz")
def import_command() -> None:
    """The quiz's picture pool."""


@import_command.command("import")
@click.argument(
    "sources", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path)
)
@click.option("--limit", default=200, show_default=True, help="At most this many real and this many fake.")
@click.option("--seed", default=0, show_default=True, help="Which random sample to take.")
@with_appcontext
def import_cmd(sources: tuple[Path, ...], limit: int, seed: int) -> None:
    """Copy pictures from folders with real/ and fake/ sub-folders into the quiz pool."""
    dest = Path(current_app.config["QUIZ_DIR"])
    counts = import_images(list(sources), dest, limit, seed)
    click.echo(
        f"imported {counts['real']} real and {counts['fake']} fake pictures into {dest}"
        + (f" ({counts['skipped']} unreadable files skipped)" if counts["skipped"] else "")
    )
