"""The training crops as JPEG, small enough to travel to a machine that trains faster (a GPU).

    python -m detector.training.pack .gpu/crops              # here: train split, JPEG q90, parts
    python -m detector.training.pack --unpack .gpu/crops     # there: rebuild .cache/crops

The prepared cache holds raw 224 px crops (about 150 KB each, gigabytes for the nine sources),
and a GPU machine is lent with a few tens of megabytes of luggage and no copy of the data. The
training split alone, JPEG-encoded at high quality, fits; validation and test stay here, where
every model is exported, quantized and evaluated as it serves. Training already re-encodes every
crop at a random JPEG quality for every class alike (``augment``), so one high-quality encode
more changes what the model sees less than its own augmentation does.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
from pathlib import Path

import cv2
import numpy as np

from .data import DEFAULT_CACHE, read_manifest

LANDMARK_BYTES = 700  # a real crop's landmarks, compressed, counted against its part


def pack(cache: Path, out: Path, splits: set[str], quality: int, part_mb: float) -> list[int]:
    """Write the crops of ``splits`` in parts of at most ``part_mb`` (one travels per call):
    ``part-K/<source>.jpg.bin`` (JPEG bytes end to end) with their offsets and the landmarks
    of the same rows. Parts hold each source's rows in order, so joining them in part order
    rebuilds the source's array; the manifest (in ``part-0``) numbers rows in that array."""
    rows = [r for r in read_manifest(cache) if r["split"] in splits]
    by_source: dict[str, list[dict]] = {}
    for r in rows:
        by_source.setdefault(r["source"], []).append(r)
    parts: list[dict[str, list[tuple[dict, bytes]]]] = [{}]
    used = 0
    packed_rows = []
    for source, source_rows in by_source.items():
        crops = np.load(cache / f"{source}.npy", mmap_mode="r")
        for new, r in enumerate(source_rows):
            ok, buf = cv2.imencode(
                ".jpg",
                cv2.cvtColor(np.asarray(crops[r["row"]]), cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_JPEG_QUALITY, quality],
            )
            if not ok:
                raise RuntimeError(f"could not encode {source} row {r['row']}")
            if used + len(buf) > part_mb * 2**20:
                parts.append({})
                used = 0
            parts[-1].setdefault(source, []).append((r, buf.tobytes()))
            used += len(buf) + LANDMARK_BYTES
            packed_rows.append({**r, "row": new})
    sizes = []
    for k, part in enumerate(parts):
        folder = out / f"part-{k}"
        folder.mkdir(parents=True, exist_ok=True)
        for source, items in part.items():
            blobs = [b for _, b in items]
            (folder / f"{source}.jpg.bin").write_bytes(b"".join(blobs))
            np.save(folder / f"{source}.offsets.npy", np.cumsum([0] + [len(b) for b in blobs]))
            marks = cache / f"{source}_landmarks.npy"
            if marks.exists():  # only self-blending reads them, and it blends real faces alone
                kept = np.load(marks, mmap_mode="r")[[r["row"] for r, _ in items]]
                kept[[r["label"] != 0 for r, _ in items]] = 0
                np.savez_compressed(folder / f"{source}_landmarks.npz", marks=kept)
        sizes.append(sum(f.stat().st_size for f in folder.iterdir()))
    with (out / "part-0" / "manifest.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(packed_rows[0]))
        writer.writeheader()
        writer.writerows(packed_rows)
    (out / "part-0" / "pack.json").write_text(
        json.dumps(
            {"quality": quality, "splits": sorted(splits), "parts": len(parts), "rows": len(packed_rows)}
        )
    )
    return sizes


def unpack(packed: Path, cache: Path) -> int:
    """Decode every part into a crop cache the training code reads as it reads a prepared one;
    refuses a pack with a part missing (a call that never arrived) rather than train on less."""
    info = json.loads((packed / "part-0" / "pack.json").read_text())
    folders = [packed / f"part-{k}" for k in range(info["parts"])]
    missing = [f.name for f in folders if not f.is_dir()]
    if missing:
        raise SystemExit(f"{packed} lacks {', '.join(missing)} of {info['parts']} parts")
    cache.mkdir(parents=True, exist_ok=True)
    sources = sorted({p.name.removesuffix(".jpg.bin") for f in folders for p in f.glob("*.jpg.bin")})
    count = 0
    for source in sources:
        crops, marks = [], []
        for folder in folders:
            if not (folder / f"{source}.jpg.bin").exists():
                continue
            blob = (folder / f"{source}.jpg.bin").read_bytes()
            offsets = np.load(folder / f"{source}.offsets.npy")
            crops += [
                cv2.cvtColor(
                    cv2.imdecode(np.frombuffer(blob[a:b], np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB
                )
                for a, b in itertools.pairwise(offsets)
            ]
            if (folder / f"{source}_landmarks.npz").exists():
                marks.append(np.load(folder / f"{source}_landmarks.npz")["marks"])
        np.save(cache / f"{source}.npy", np.stack(crops))
        if marks:
            np.save(cache / f"{source}_landmarks.npy", np.concatenate(marks))
        count += len(crops)
    if count != info["rows"]:
        raise SystemExit(f"{packed} holds {count} crops, its manifest {info['rows']}")
    (cache / "manifest.csv").write_bytes((packed / "part-0" / "manifest.csv").read_bytes())
    return count


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("packed", help="the pack's folder")
    ap.add_argument(
        "--cache", default=str(DEFAULT_CACHE), help="the prepared crops (read, or rebuilt by --unpack)"
    )
    ap.add_argument("--unpack", action="store_true", help="rebuild the crop cache from the pack")
    ap.add_argument("--splits", default="train")
    ap.add_argument("--quality", type=int, default=90)
    ap.add_argument("--part-mb", type=float, default=40, help="at most this much per part")
    args = ap.parse_args(argv)
    if args.unpack:
        print(f"{unpack(Path(args.packed), Path(args.cache))} crops unpacked into {args.cache}")
    else:
        sizes = pack(
            Path(args.cache), Path(args.packed), set(args.splits.split(",")), args.quality, args.part_mb
        )
        print(json.dumps([f"part-{k}: {v / 2**20:.1f} MiB" for k, v in enumerate(sizes)]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
